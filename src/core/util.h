/*
 * util: small helpers every module uses. Small allocations abort the process
 * on failure (as tmux's xmalloc does): an out-of-memory daemon cannot recover
 * cleanly, and NULL checks after every strdup hide real errors. Large or
 * size-from-input allocations must check caps first and use plain malloc.
 */
#ifndef RBEE_CORE_UTIL_H
#define RBEE_CORE_UTIL_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xstrndup(const char *s, size_t n);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Milliseconds on the monotonic clock (for intervals). */
int64_t now_ms(void);
/* Microseconds on the monotonic clock (for intervals shorter than a few ms). */
int64_t now_us(void);
/* Milliseconds since the epoch (for timestamps that are stored or shown). */
int64_t wall_ms(void);
/* Sleeps ms milliseconds (restarts on EINTR). */
void sleep_ms(long ms);

/*
 * The absolute deadline ms milliseconds from now on CLOCK_MONOTONIC, for
 * pthread_cond_timedwait (a negative ms counts as 0). The condition variable
 * waited on must use the same clock: create it with cond_init_monotonic (or
 * pthread_condattr_setclock(CLOCK_MONOTONIC)); a default one measures the
 * deadline on CLOCK_REALTIME, where it is decades in the past and every wait
 * returns at once. Not for pthread_mutex_timedlock, which takes CLOCK_REALTIME.
 */
void deadline_after_ms(struct timespec *ts, long ms);
/* pthread_cond_init with CLOCK_MONOTONIC, so timed waits ignore wall-clock jumps. */
void cond_init_monotonic(pthread_cond_t *cv);

/* 1 if s is exactly n lowercase hex digits. */
int is_hex_lower(const char *s, size_t n);
/* Writes 2*n lowercase hex digits and a NUL into out. */
void hex_encode(const unsigned char *in, size_t n, char *out);

/*
 * Length (1..4) of the valid UTF-8 sequence at s[0..n), or 0 when it is
 * broken, overlong, a surrogate, past U+10FFFF or cut short by n.
 */
size_t utf8_valid_len(const unsigned char *s, size_t n);

/* snprintf that reports truncation: 0, or ERR_TOO_LARGE if it did not fit. */
int fmt_buf(char *buf, size_t size, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

struct err;

/* 1 when name in the folder dir_fd is the file fd is open on (not one put in its place). */
int same_file_at(int dir_fd, const char *name, int fd);

/*
 * Renames from to to in the folder dir_fd when from is still the file fd is
 * open on, then syncs the folder. The rename that publishes a file written
 * through a descriptor: a file another user of a shared folder put under
 * from is never renamed as ours (ERR_CONFLICT, names left alone), and when
 * one was swapped in between the check and the rename, to is removed again
 * (ERR_CONFLICT). ERR_IO otherwise. what names the file in messages.
 */
int rename_open_file_at(int dir_fd, const char *from, const char *to, int fd, const char *what,
			struct err *e);

/* A buffer of this size holds any boot id. */
#define BOOT_ID_LEN 40
/*
 * The id of the running system's boot (/proc/sys/kernel/random/boot_id),
 * read once; "" when it cannot be read. Bytes written to a file but not
 * yet synced survive the crash of a process, not a restart of the system:
 * state that counts on them is valid only under the same boot id, and
 * never under "".
 */
const char *boot_id(void);

/* A buffer of this size holds any output of fmt_size(). */
#define FMT_SIZE_LEN 32
/*
 * A size for people, three significant digits in decimal units: "0 B",
 * "999 B", "1.23 kB", "12.3 MB", "123 GB" (the CLI, the narration and the
 * error messages all show sizes this way).
 */
void fmt_size(char *buf, size_t size, uint64_t bytes);

#endif
