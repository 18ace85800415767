/*
 * vexfs.h: the VexFS collection ioctls, for C and any language with ioctl(2).
 *
 * Every ioctl is issued on a file descriptor of a collection directory, opened with
 * open(path, O_RDONLY | O_DIRECTORY). VexFS is a FUSE file system, and FUSE passes only
 * "restricted" ioctls: the kernel copies exactly the size encoded in the command number in and
 * out, at most 16383 bytes, and follows no pointers. So every request is one fixed-size struct
 * whose variable part (ids, vectors, queries, results) lives inline in `payload`. Requests that
 * do not fit travel through the collection's special files instead (see docs/COLLECTIONS.md:
 * `.vexfs-insert` for large insert batches, `.vexfs-query/` for queries with many results).
 *
 * All integers and floats are the machine's native little-endian types. Reserved fields must be
 * zero. On failure ioctl returns -1 with errno: EINVAL (bad input; nothing was stored), ENOTTY
 * (not a collection), ENOSPC, EIO. The daemon logs the exact reason.
 */
#ifndef VEXFS_H
#define VEXFS_H

#include <linux/ioctl.h>
#include <stdint.h>

#define VEXFS_IOC_MAGIC 0x56 /* 'V' */

/* Bytes of inline payload in the insert, search and delete requests. */
#define VEXFS_IOC_PAYLOAD 16256

/* Metrics (struct vexfs_ioc_create.metric, struct vexfs_ioc_stats.metric). Every metric reports a
 * distance, smaller is closer: l2 = Euclidean distance, cosine = 1 - cos, dot = -(a.b),
 * manhattan = sum |a - b|. */
#define VEXFS_METRIC_L2 1
#define VEXFS_METRIC_COSINE 2
#define VEXFS_METRIC_DOT 3
#define VEXFS_METRIC_MANHATTAN 4

/* Element types. */
#define VEXFS_ELEM_F32 1

/* struct vexfs_ioc_create.flags: a text collection (documents written into it are embedded). */
#define VEXFS_CREATE_TEXT 1u

/* Makes the empty directory a collection. */
struct vexfs_ioc_create {
	uint32_t dim;            /* 1..65536; text collections: 0 for the embedder's */
	uint32_t metric;         /* VEXFS_METRIC_* */
	uint32_t shards;         /* 0: one per daemon worker */
	uint32_t flags;          /* VEXFS_CREATE_* */
	uint32_t chunk_bytes;    /* text collections: 0 for the default */
	uint32_t chunk_overlap;  /* text collections: 0 for the default */
	uint64_t reserved[5];
	char embedder[256];      /* text collections: NUL-terminated, "" for the default */
};

/* struct vexfs_ioc_insert.flags */
#define VEXFS_INSERT_IDS 1u  /* payload starts with count uint64_t ids */
#define VEXFS_INSERT_SYNC 2u /* durable before the ioctl returns */

/* Inserts `count` vectors: payload = [uint64_t ids[count] if VEXFS_INSERT_IDS] then
 * float vectors[count * dim]. Without ids the daemon assigns consecutive ids starting at
 * first_id. A vector whose id exists replaces it. */
struct vexfs_ioc_insert {
	uint32_t dim;            /* must equal the collection's */
	uint32_t count;
	uint32_t flags;          /* VEXFS_INSERT_* */
	uint32_t reserved0;
	uint64_t first_id;       /* out: the first assigned id (VEXFS_INSERT_IDS not set) */
	uint64_t reserved[6];
	unsigned char payload[VEXFS_IOC_PAYLOAD];
};

/* One result. */
struct vexfs_result {
	uint64_t id;
	float distance;
	uint32_t reserved;
};

/* k-NN (VEXFS_IOC_KNN) and range (VEXFS_IOC_RANGE) search for `nq` queries.
 * In:  payload = filter expression (filter_len bytes, no NUL needed, padded with zeros to a
 *      multiple of 8; filter_len 0 for none) then float queries[nq * dim].
 * Out: payload = uint32_t counts[nq] (padded to a multiple of 8 bytes), then
 *      struct vexfs_result results[nq * k]: query i's results are results[i*k .. i*k+counts[i]],
 *      nearest first. For VEXFS_IOC_RANGE, k is the most results returned per query and
 *      `radius` the largest distance returned.
 * Both the input and the output must fit in VEXFS_IOC_PAYLOAD bytes (EINVAL otherwise). */
struct vexfs_ioc_search {
	uint32_t dim;            /* must equal the collection's */
	uint32_t nq;             /* queries, at least 1 */
	uint32_t k;              /* 1..10000 */
	uint32_t filter_len;
	float radius;            /* VEXFS_IOC_RANGE only */
	uint32_t reserved0;
	uint64_t reserved[5];
	unsigned char payload[VEXFS_IOC_PAYLOAD];
};

/* Deletes vectors by id; `deleted` says how many existed. */
struct vexfs_ioc_delete {
	uint32_t count;          /* 1..2032 */
	uint32_t flags;          /* VEXFS_INSERT_SYNC: durable before return */
	uint64_t deleted;        /* out */
	uint64_t reserved[6];
	uint64_t ids[2032];
};

/* Parameters and counters of a collection. */
struct vexfs_ioc_stats {
	uint32_t dim;
	uint32_t metric;
	uint32_t elem;
	uint32_t shards;
	uint32_t flags;          /* VEXFS_CREATE_TEXT for text collections */
	uint32_t reserved0;
	uint64_t vectors;        /* live vectors */
	uint64_t dead_rows;      /* deleted or replaced, not yet compacted away */
	uint64_t log_bytes;      /* shard logs on the device */
	uint64_t pending_bytes;  /* acknowledged, not yet written to the logs */
	uint64_t memory_bytes;
	uint64_t inserts;        /* since the collection was opened by this daemon */
	uint64_t deletes;
	uint64_t searches;
	uint64_t queries;
	uint64_t search_micros;  /* total time answering searches */
	uint64_t docs_queued;    /* text collections: documents waiting to be embedded */
	uint64_t docs_indexed;
	uint64_t docs_skipped;   /* not UTF-8, or failed */
	uint64_t chunks;
	uint64_t reserved[4];
	char simd[32];           /* the search kernels in use, e.g. "avx2+fma" */
	char embedder[256];
};

/* The most results one VEXFS_IOC_SEARCH_TEXT returns (the query files return more). */
#define VEXFS_TEXT_K_MAX 32

/* Searches a text collection by meaning: the daemon embeds `text` with the collection's embedder
 * and returns the k nearest chunks. In: payload = text[text_len] (UTF-8), then at the next
 * multiple of 8 an optional filter[filter_len] (the expression language of docs/COLLECTIONS.md;
 * a document's user.* xattrs are its attributes, without the "user." prefix). Out: `count` hits,
 * nearest first, packed from payload[0]: each a struct vexfs_text_hit, then name_len bytes of the
 * document's name in the collection directory, then snippet_len bytes of the chunk's start (UTF-8,
 * whitespace folded), the whole padded to a multiple of 8. */
struct vexfs_ioc_text_search {
	uint32_t k;              /* 1..VEXFS_TEXT_K_MAX */
	uint32_t text_len;       /* 1..(payload) */
	uint32_t filter_len;     /* 0: no filter */
	uint32_t count;          /* out */
	uint64_t reserved[6];
	uint8_t payload[VEXFS_IOC_PAYLOAD];
};

struct vexfs_text_hit {
	uint64_t id;             /* the chunk's vector id: ino << 20 | chunk */
	uint64_t ino;            /* the document's inode number */
	uint64_t start;          /* the chunk's byte range in the document */
	uint64_t end;
	float distance;          /* the collection's metric (cosine: 1 - cos) */
	uint32_t chunk;          /* the chunk's number in the document, from 0 */
	uint16_t name_len;
	uint16_t snippet_len;
	uint32_t reserved;
};

#define VEXFS_IOC_CREATE _IOW(VEXFS_IOC_MAGIC, 1, struct vexfs_ioc_create)
#define VEXFS_IOC_INSERT _IOWR(VEXFS_IOC_MAGIC, 2, struct vexfs_ioc_insert)
#define VEXFS_IOC_KNN _IOWR(VEXFS_IOC_MAGIC, 3, struct vexfs_ioc_search)
#define VEXFS_IOC_RANGE _IOWR(VEXFS_IOC_MAGIC, 4, struct vexfs_ioc_search)
#define VEXFS_IOC_STATS _IOR(VEXFS_IOC_MAGIC, 5, struct vexfs_ioc_stats)
#define VEXFS_IOC_DELETE _IOWR(VEXFS_IOC_MAGIC, 6, struct vexfs_ioc_delete)
#define VEXFS_IOC_SYNC _IO(VEXFS_IOC_MAGIC, 7)
#define VEXFS_IOC_SEARCH_TEXT _IOWR(VEXFS_IOC_MAGIC, 8, struct vexfs_ioc_text_search)

#endif /* VEXFS_H */
