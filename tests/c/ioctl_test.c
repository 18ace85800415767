/*
 * Exercises the collection ioctls of client/include/vexfs.h from C, the way any C program would.
 *
 *   ioctl_test populate COLLECTION_DIR PLAIN_DIR   create, insert, search, range, delete, stats, sync, bad input
 *   ioctl_test verify COLLECTION_DIR               after a remount or kill -9: what populate synced is there
 *
 * Prints "ioctl_test: ok" and exits 0 on success; on failure prints what failed and exits 1.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "vexfs.h"

/* The layouts and command numbers format/src/ioctl.rs mirrors. */
_Static_assert(sizeof(struct vexfs_ioc_create) == 320, "create");
_Static_assert(sizeof(struct vexfs_ioc_insert) == 16328, "insert");
_Static_assert(sizeof(struct vexfs_ioc_search) == 16320, "search");
_Static_assert(sizeof(struct vexfs_ioc_delete) == 16320, "delete");
_Static_assert(sizeof(struct vexfs_ioc_stats) == 456, "stats");
_Static_assert(sizeof(struct vexfs_ioc_text_search) == 16320, "text search");
_Static_assert(sizeof(struct vexfs_text_hit) == 48, "text hit");
_Static_assert(VEXFS_IOC_SEARCH_TEXT == 0xffc05608u, "text search command");

#define DIM 8
#define N_IDS 100      /* ids 0..99, vector i = (i, i, ..., i) */
#define N_ASSIGNED 50  /* assigned ids, vectors (1000 + j, ...) */

static int failures;

#define CHECK(cond, ...)                                                  \
	do {                                                              \
		if (!(cond)) {                                            \
			fprintf(stderr, "ioctl_test: line %d: ", __LINE__); \
			fprintf(stderr, __VA_ARGS__);                     \
			fprintf(stderr, "\n");                            \
			failures++;                                       \
		}                                                         \
	} while (0)

static struct vexfs_ioc_insert ins;
static struct vexfs_ioc_search srch;
static struct vexfs_ioc_delete del;
static struct vexfs_ioc_stats st;

static void fill(float *v, float value)
{
	for (int d = 0; d < DIM; d++)
		v[d] = value;
}

/* k-NN (or range) for one query whose components all equal `value`; returns the result count, or
 * -1 with errno set. */
static int search1(int fd, unsigned long cmd, float value, uint32_t k, float radius, const char *filter,
		   struct vexfs_result **results)
{
	memset(&srch, 0, sizeof srch);
	srch.dim = DIM;
	srch.nq = 1;
	srch.k = k;
	srch.radius = radius;
	size_t flen = filter ? strlen(filter) : 0;
	srch.filter_len = (uint32_t)flen;
	memcpy(srch.payload, filter ? filter : "", flen);
	size_t at = (flen + 7) / 8 * 8;
	fill((float *)(srch.payload + at), value);
	if (ioctl(fd, cmd, &srch) != 0)
		return -1; /* errno set; the caller checks */
	uint32_t count;
	memcpy(&count, srch.payload, 4);
	*results = (struct vexfs_result *)(srch.payload + 8);
	return (int)count;
}

static int stats(int fd)
{
	memset(&st, 0, sizeof st);
	if (ioctl(fd, VEXFS_IOC_STATS, &st) != 0) {
		CHECK(0, "VEXFS_IOC_STATS: %s", strerror(errno));
		return -1;
	}
	return 0;
}

static int populate(const char *dir, const char *plain)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	CHECK(fd >= 0, "open %s: %s", dir, strerror(errno));
	if (fd < 0)
		return 1;

	struct vexfs_ioc_create create;
	memset(&create, 0, sizeof create);
	/* Bad parameters: EINVAL, and the directory stays a plain one (the create below works). */
	create.dim = DIM;
	create.metric = 99;
	errno = 0;
	CHECK(ioctl(fd, VEXFS_IOC_CREATE, &create) == -1 && errno == EINVAL, "unknown metric: errno %d", errno);
	create.dim = 0;
	create.metric = VEXFS_METRIC_L2;
	errno = 0;
	CHECK(ioctl(fd, VEXFS_IOC_CREATE, &create) == -1 && errno == EINVAL, "dimension 0: errno %d", errno);
	create.dim = DIM;
	CHECK(ioctl(fd, VEXFS_IOC_CREATE, &create) == 0, "VEXFS_IOC_CREATE: %s", strerror(errno));
	errno = 0;
	CHECK(ioctl(fd, VEXFS_IOC_CREATE, &create) == -1 && errno == EEXIST, "second create: errno %d", errno);

	/* Caller's ids, in two batches. */
	for (int batch = 0; batch < 2; batch++) {
		memset(&ins, 0, sizeof ins);
		ins.dim = DIM;
		ins.count = N_IDS / 2;
		ins.flags = VEXFS_INSERT_IDS;
		uint64_t *ids = (uint64_t *)ins.payload;
		float *vec = (float *)(ins.payload + ins.count * 8);
		for (uint32_t i = 0; i < ins.count; i++) {
			uint64_t id = batch * (N_IDS / 2) + i;
			ids[i] = id;
			fill(vec + i * DIM, (float)id);
		}
		CHECK(ioctl(fd, VEXFS_IOC_INSERT, &ins) == 0, "insert with ids: %s", strerror(errno));
	}
	/* Assigned ids: consecutive, above the largest id stored. */
	memset(&ins, 0, sizeof ins);
	ins.dim = DIM;
	ins.count = N_ASSIGNED;
	ins.flags = VEXFS_INSERT_SYNC;
	for (uint32_t j = 0; j < N_ASSIGNED; j++)
		fill((float *)ins.payload + j * DIM, 1000.0f + (float)j);
	CHECK(ioctl(fd, VEXFS_IOC_INSERT, &ins) == 0, "insert without ids: %s", strerror(errno));
	CHECK(ins.first_id == N_IDS, "first assigned id %llu, expected %d", (unsigned long long)ins.first_id, N_IDS);

	/* k-NN: nearest to (10.2, ...) are 10, 11, 9. */
	struct vexfs_result *r;
	int n = search1(fd, VEXFS_IOC_KNN, 10.2f, 3, 0, NULL, &r);
	CHECK(n == 3, "knn returned %d results", n);
	if (n == 3) {
		CHECK(r[0].id == 10 && r[1].id == 11 && r[2].id == 9, "knn ids %llu %llu %llu",
		      (unsigned long long)r[0].id, (unsigned long long)r[1].id, (unsigned long long)r[2].id);
		float expect = sqrtf(DIM * 0.2f * 0.2f);
		CHECK(fabsf(r[0].distance - expect) < 1e-4f, "distance %f, expected %f", r[0].distance, expect);
	}
	/* With a filter that every vector passes. */
	n = search1(fd, VEXFS_IOC_KNN, 1003.0f, 1, 0, "not exists colour", &r);
	CHECK(n == 1 && r[0].id == N_IDS + 3, "filtered knn: %d results, id %llu", n,
	      n > 0 ? (unsigned long long)r[0].id : 0ULL);
	/* Range: within 3.0 of (10, ...) are 10 (distance 0), 9 and 11 (sqrt(8) = 2.83). */
	n = search1(fd, VEXFS_IOC_RANGE, 10.0f, 100, 3.0f, NULL, &r);
	CHECK(n == 3, "range returned %d results, expected 3 (9, 10, 11)", n);
	if (n == 3)
		CHECK(r[0].id == 10 && r[0].distance == 0.0f, "range first id %llu distance %f",
		      (unsigned long long)r[0].id, r[0].distance);

	/* Delete id 10. */
	memset(&del, 0, sizeof del);
	del.count = 2;
	del.ids[0] = 10;
	del.ids[1] = 123456; /* absent */
	del.flags = VEXFS_INSERT_SYNC;
	CHECK(ioctl(fd, VEXFS_IOC_DELETE, &del) == 0, "delete: %s", strerror(errno));
	CHECK(del.deleted == 1, "deleted %llu, expected 1", (unsigned long long)del.deleted);
	n = search1(fd, VEXFS_IOC_KNN, 10.0f, 1, 0, NULL, &r);
	CHECK(n == 1 && r[0].id != 10, "deleted id 10 still found");

	if (stats(fd) == 0) {
		CHECK(st.vectors == N_IDS + N_ASSIGNED - 1, "stats: %llu vectors", (unsigned long long)st.vectors);
		CHECK(st.dim == DIM && st.metric == VEXFS_METRIC_L2 && st.elem == VEXFS_ELEM_F32, "stats: parameters");
		CHECK(st.searches >= 4, "stats: %llu searches", (unsigned long long)st.searches);
		CHECK(st.simd[0] != 0, "stats: no SIMD level");
	}
	CHECK(ioctl(fd, VEXFS_IOC_SYNC) == 0, "VEXFS_IOC_SYNC: %s", strerror(errno));

	/* Bad input: each refused with EINVAL, nothing stored. */
	memset(&ins, 0, sizeof ins);
	ins.dim = DIM + 1;
	ins.count = 1;
	errno = 0;
	CHECK(ioctl(fd, VEXFS_IOC_INSERT, &ins) == -1 && errno == EINVAL, "wrong dimension: errno %d", errno);
	memset(&ins, 0, sizeof ins);
	ins.dim = DIM;
	ins.count = 1;
	fill((float *)ins.payload, NAN);
	errno = 0;
	CHECK(ioctl(fd, VEXFS_IOC_INSERT, &ins) == -1 && errno == EINVAL, "NaN: errno %d", errno);
	ins.count = 100000;
	errno = 0;
	CHECK(ioctl(fd, VEXFS_IOC_INSERT, &ins) == -1 && errno == EINVAL, "oversized batch: errno %d", errno);
	errno = 0;
	CHECK(search1(fd, VEXFS_IOC_KNN, 1.0f, 0, 0, NULL, &r) == -1 && errno == EINVAL, "k = 0: errno %d", errno);
	errno = 0;
	CHECK(search1(fd, VEXFS_IOC_KNN, 1.0f, 1, 0, "year >=", &r) == -1 && errno == EINVAL, "bad filter: errno %d",
	      errno);
	if (stats(fd) == 0)
		CHECK(st.vectors == N_IDS + N_ASSIGNED - 1, "bad input stored something: %llu vectors",
		      (unsigned long long)st.vectors);
	close(fd);

	/* A directory that is not a collection. */
	int pfd = open(plain, O_RDONLY | O_DIRECTORY);
	CHECK(pfd >= 0, "open %s: %s", plain, strerror(errno));
	errno = 0;
	CHECK(ioctl(pfd, VEXFS_IOC_STATS, &st) == -1 && errno == ENOTTY, "stats on a plain directory: errno %d", errno);
	close(pfd);
	return failures != 0;
}

static int verify(const char *dir)
{
	int fd = open(dir, O_RDONLY | O_DIRECTORY);
	CHECK(fd >= 0, "open %s: %s", dir, strerror(errno));
	if (fd < 0)
		return 1;
	if (stats(fd) == 0)
		CHECK(st.vectors == N_IDS + N_ASSIGNED - 1, "after remount: %llu vectors", (unsigned long long)st.vectors);
	struct vexfs_result *r;
	int n = search1(fd, VEXFS_IOC_KNN, 42.0f, 1, 0, NULL, &r);
	CHECK(n == 1 && r[0].id == 42 && r[0].distance == 0.0f, "after remount: nearest to 42");
	n = search1(fd, VEXFS_IOC_KNN, 10.0f, 1, 0, NULL, &r);
	CHECK(n == 1 && r[0].id != 10, "after remount: deleted id 10 is back");
	n = search1(fd, VEXFS_IOC_KNN, 1049.0f, 1, 0, NULL, &r);
	CHECK(n == 1 && r[0].id == N_IDS + 49, "after remount: assigned id %d", N_IDS + 49);
	close(fd);
	return failures != 0;
}

int main(int argc, char **argv)
{
	int rc;
	if (argc == 4 && strcmp(argv[1], "populate") == 0)
		rc = populate(argv[2], argv[3]);
	else if (argc == 3 && strcmp(argv[1], "verify") == 0)
		rc = verify(argv[2]);
	else {
		fprintf(stderr, "usage: ioctl_test populate COLLECTION_DIR PLAIN_DIR | verify COLLECTION_DIR\n");
		return 2;
	}
	if (rc == 0)
		printf("ioctl_test: ok\n");
	return rc;
}
