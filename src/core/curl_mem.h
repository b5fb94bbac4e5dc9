/*
 * curl_mem: the one way this process starts libcurl, with the memory
 * functions of curl_mem.c. libcurl takes its memory functions only from
 * the first curl_global_init of the process, so every user of libcurl
 * (fetch, provision, cli, the tools) calls curl_mem_init, never
 * curl_global_init, and nothing calls curl_global_cleanup: libcurl stays
 * up for the life of the process.
 */
#ifndef RBEE_CORE_CURL_MEM_H
#define RBEE_CORE_CURL_MEM_H

#include <stddef.h>

/* libcurl's receive buffer per connection of a bulk transfer (CURLOPT_BUFFERSIZE):
 * its largest (CURL_MAX_READ_SIZE), for fewer recv and pwrite calls per MiB.
 * Blocks of this size + 1, libcurl's allocation for it, come from a pool. */
#define CURL_BUFFER (512 * 1024)

/*
 * Blocks this large or larger are mappings of their own, returned when
 * freed: glibc's mmap threshold starts at this size but rises to the size
 * of the first mapped block freed, after which such blocks came from the
 * threads' heaps, where a freed one between live ones stays resident (one
 * heap grew to 6 to 11 MiB in some pulls, bench/README.md, run Q).
 * curl_mem_init pins it for the process. (libcurl's receive buffer, freed
 * and allocated again for every request, is pooled instead: as a mapping
 * per request it cost 5 to 7 % of the CPU.)
 */
#define MMAP_THRESHOLD (128 * 1024)

/* Starts libcurl once per process (any thread, any number of times) and pins MMAP_THRESHOLD. */
void curl_mem_init(void);

/* The pool's receive buffers: handed out from its slots, and by malloc
 * once all were taken; taken now; idle with their pages kept. */
struct curl_mem_stats {
	size_t taken, fallback, in_use, warm_idle;
};
void curl_mem_stats(struct curl_mem_stats *out);

#endif
