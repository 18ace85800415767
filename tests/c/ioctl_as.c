/*
 * Issues one collection ioctl of client/include/vexfs.h as another user, the way a C program of
 * that user would, and prints the outcome.
 *
 *   ioctl_as UID GID[,GROUP...] OPEN_AS_ROOT OP DIR [DIM]
 *
 * The directory is opened first, as root when OPEN_AS_ROOT is 1 (a descriptor a privileged process
 * opened and handed on: the kernel checked nothing for this user), else after switching users.
 * Then the process switches to UID, GID and the supplementary GROUPs (none when not given) and
 * issues OP: create, insert, knn, range, delete, stats, sync or textsearch, with a small valid
 * request for a collection of dimension DIM (default 4).
 *
 * Prints "ok" or "errno NAME" (EACCES, EPERM, ...) on stdout and exits 0; exits 2 when the
 * program itself could not run (bad arguments, the user switch failed).
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vexfs.h"

static union {
	struct vexfs_ioc_create create;
	struct vexfs_ioc_insert insert;
	struct vexfs_ioc_search search;
	struct vexfs_ioc_delete del;
	struct vexfs_ioc_stats stats;
	struct vexfs_ioc_text_search text;
} req;

static const char *errno_name(int e)
{
	switch (e) {
	case EACCES: return "EACCES";
	case EPERM: return "EPERM";
	case EINVAL: return "EINVAL";
	case ENOTTY: return "ENOTTY";
	case ENOENT: return "ENOENT";
	case EEXIST: return "EEXIST";
	case ENOTEMPTY: return "ENOTEMPTY";
	case E2BIG: return "E2BIG";
	case ENOSPC: return "ENOSPC";
	case EIO: return "EIO";
	default: return "other";
	}
}

/* Switches to uid and "gid[,group...]"; exits 2 on failure. */
static void become(uid_t uid, char *gids)
{
	gid_t groups[64];
	int count = 0;
	char *gid = strtok(gids, ",");
	if (!gid) {
		fprintf(stderr, "ioctl_as: no gid\n");
		exit(2);
	}
	for (char *g = strtok(NULL, ","); g && count < 64; g = strtok(NULL, ","))
		groups[count++] = (gid_t)atoi(g);
	if (setgroups(count, groups) || setgid((gid_t)atoi(gid)) || setuid(uid)) {
		perror("ioctl_as: switching users");
		exit(2);
	}
}

static unsigned long prepare(const char *op, uint32_t dim)
{
	float *values;
	if (!strcmp(op, "create")) {
		req.create.dim = dim;
		req.create.metric = VEXFS_METRIC_L2;
		return VEXFS_IOC_CREATE;
	}
	if (!strcmp(op, "insert")) {
		req.insert.dim = dim;
		req.insert.count = 1;
		values = (float *)req.insert.payload;
		for (uint32_t d = 0; d < dim; d++)
			values[d] = 0.5f;
		return VEXFS_IOC_INSERT;
	}
	if (!strcmp(op, "knn") || !strcmp(op, "range")) {
		req.search.dim = dim;
		req.search.nq = 1;
		req.search.k = 3;
		req.search.radius = 10.0f;
		values = (float *)req.search.payload;
		for (uint32_t d = 0; d < dim; d++)
			values[d] = 0.5f;
		return !strcmp(op, "knn") ? VEXFS_IOC_KNN : VEXFS_IOC_RANGE;
	}
	if (!strcmp(op, "delete")) {
		req.del.count = 1;
		req.del.ids[0] = 0;
		return VEXFS_IOC_DELETE;
	}
	if (!strcmp(op, "stats"))
		return VEXFS_IOC_STATS;
	if (!strcmp(op, "sync"))
		return VEXFS_IOC_SYNC;
	if (!strcmp(op, "textsearch")) {
		req.text.k = 3;
		req.text.text_len = (uint32_t)strlen("password");
		memcpy(req.text.payload, "password", req.text.text_len);
		return VEXFS_IOC_SEARCH_TEXT;
	}
	fprintf(stderr, "ioctl_as: unknown op %s\n", op);
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 6) {
		fprintf(stderr, "usage: ioctl_as UID GID[,GROUP...] OPEN_AS_ROOT OP DIR [DIM]\n");
		return 2;
	}
	uid_t uid = (uid_t)atoi(argv[1]);
	int open_as_root = atoi(argv[3]);
	uint32_t dim = argc > 6 ? (uint32_t)atoi(argv[6]) : 4;
	unsigned long cmd = prepare(argv[4], dim);
	int fd = -1;
	if (open_as_root)
		fd = open(argv[5], O_RDONLY | O_DIRECTORY);
	become(uid, argv[2]);
	if (!open_as_root)
		fd = open(argv[5], O_RDONLY | O_DIRECTORY);
	if (fd < 0) {
		printf("open errno %s\n", errno_name(errno));
		return 0;
	}
	if (ioctl(fd, cmd, &req) == 0)
		printf("ok\n");
	else
		printf("errno %s\n", errno_name(errno));
	return 0;
}
