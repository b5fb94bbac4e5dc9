/*
 * libcurl's memory. libcurl frees each connection's receive buffer
 * (CURL_BUFFER + 1 bytes, core/curl_mem.h) at the end of every request and allocates it
 * again for the next: 68 times for a GiB in 16 MiB pieces.
 *
 *   - From glibc's heaps (glibc raises its mmap threshold to the size of
 *     the first such block freed), a freed buffer between live blocks
 *     stays resident: some pulls grew one heap to 6 to 11 MiB and the
 *     daemon's peak RSS to 26 MiB.
 *   - As mappings of their own (the threshold pinned, MMAP_THRESHOLD),
 *     every request paid a mapping and the faults of its pages: 5 to 7 %
 *     more CPU for a pull through the daemon.
 *
 * So blocks of exactly that size come from POOL_SLOTS slots of one
 * reserved mapping: a slot's pages are touched at its first use and kept
 * for the next request, which takes the most recently freed slot. At most
 * POOL_KEEP idle slots keep their pages (the others are given back with
 * MADV_DONTNEED), and beyond POOL_SLOTS taken, malloc. Everything else
 * goes to malloc, free, realloc, strdup and calloc as it would without us.
 */
#include "core/curl_mem.h"

#include <curl/curl.h>
#include <malloc.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "core/log.h"

#define POOL_BLOCK ((size_t)CURL_BUFFER + 1)
#define POOL_SLOT_SIZE ((POOL_BLOCK + 4095) & ~(size_t)4095)
#define POOL_SLOTS 64 /* CAP_XFER_CONNECTIONS of one file, or 8 files of 8 */
/* Idle slots that keep their pages: a connection finishing its request gives its buffer back just
 * before its next request takes one. */
#define POOL_KEEP 4

static struct {
	pthread_mutex_t mu;
	unsigned char *base; /* POOL_SLOTS * POOL_SLOT_SIZE, reserved; NULL: no pool */
	/* Free slots: warm (pages kept, most recent last) and cold (none). */
	int warm[POOL_SLOTS], nwarm;
	int cold[POOL_SLOTS], ncold;
	size_t taken, fallback;
} pool = {.mu = PTHREAD_MUTEX_INITIALIZER};

static int pool_owns(const void *p)
{
	uintptr_t a = (uintptr_t)p, b = (uintptr_t)pool.base;
	return pool.base && a >= b && a < b + (uintptr_t)POOL_SLOTS * POOL_SLOT_SIZE;
}

static void *pool_take(void)
{
	int slot = -1;
	pthread_mutex_lock(&pool.mu);
	if (pool.nwarm > 0)
		slot = pool.warm[--pool.nwarm];
	else if (pool.ncold > 0)
		slot = pool.cold[--pool.ncold];
	if (slot >= 0)
		pool.taken++;
	else
		pool.fallback++;
	pthread_mutex_unlock(&pool.mu);
	return slot >= 0 ? pool.base + (size_t)slot * POOL_SLOT_SIZE : malloc(POOL_BLOCK);
}

static void pool_give(void *p)
{
	int slot = (int)(((uintptr_t)p - (uintptr_t)pool.base) / POOL_SLOT_SIZE);
	pthread_mutex_lock(&pool.mu);
	int keep = pool.nwarm < POOL_KEEP;
	if (keep)
		pool.warm[pool.nwarm++] = slot;
	pthread_mutex_unlock(&pool.mu);
	if (keep)
		return;
	/* Its pages go back before another thread can take it. */
	madvise(p, POOL_SLOT_SIZE, MADV_DONTNEED);
	pthread_mutex_lock(&pool.mu);
	pool.cold[pool.ncold++] = slot;
	pthread_mutex_unlock(&pool.mu);
}

static void *mem_malloc(size_t size)
{
	return size == POOL_BLOCK && pool.base ? pool_take() : malloc(size);
}

static void mem_free(void *p)
{
	if (pool_owns(p))
		pool_give(p);
	else
		free(p);
}

static void *mem_realloc(void *p, size_t size)
{
	if (!pool_owns(p))
		return realloc(p, size);
	void *n = malloc(size);
	if (!n)
		return NULL;
	memcpy(n, p, size < POOL_BLOCK ? size : POOL_BLOCK);
	pool_give(p);
	return n;
}

static char *mem_strdup(const char *s)
{
	return strdup(s);
}

static void *mem_calloc(size_t n, size_t size)
{
	return calloc(n, size);
}

static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init_once(void)
{
	/* Reserved, not committed: a slot costs memory only once it is used. */
	void *base = mmap(NULL, (size_t)POOL_SLOTS * POOL_SLOT_SIZE, PROT_READ | PROT_WRITE,
			  MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	if (base != MAP_FAILED) {
		for (int i = 0; i < POOL_SLOTS; i++)
			pool.cold[i] = POOL_SLOTS - 1 - i;
		pool.ncold = POOL_SLOTS;
		pool.base = base;
	} else {
		log_warn("libcurl's buffer pool: no mapping; buffers come from malloc");
	}
	if (curl_global_init_mem(CURL_GLOBAL_DEFAULT, mem_malloc, mem_free, mem_realloc, mem_strdup,
				 mem_calloc) != CURLE_OK)
		log_warn("curl_global_init_mem failed");
	/* A sanitizer's allocator is not glibc's and ignores it. */
	if (mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1)
		log_debug("mallopt(M_MMAP_THRESHOLD) not taken");
}

void curl_mem_init(void)
{
	pthread_once(&once, init_once);
}

void curl_mem_stats(struct curl_mem_stats *out)
{
	pthread_mutex_lock(&pool.mu);
	out->taken = pool.taken;
	out->fallback = pool.fallback;
	out->in_use = (size_t)(POOL_SLOTS - pool.nwarm - pool.ncold);
	out->warm_idle = (size_t)pool.nwarm;
	pthread_mutex_unlock(&pool.mu);
}
