#include "core/util.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/err.h"

static void oom(size_t n)
{
	fprintf(stderr, "rbee-hive: out of memory allocating %zu bytes\n", n);
	abort();
}

void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);
	if (!p)
		oom(n);
	return p;
}

void *xcalloc(size_t n, size_t size)
{
	void *p = calloc(n ? n : 1, size ? size : 1);
	if (!p)
		oom(n * size);
	return p;
}

void *xrealloc(void *p, size_t n)
{
	void *q = realloc(p, n ? n : 1);
	if (!q)
		oom(n);
	return q;
}

char *xstrdup(const char *s)
{
	char *p = strdup(s);
	if (!p)
		oom(strlen(s));
	return p;
}

char *xstrndup(const char *s, size_t n)
{
	char *p = strndup(s, n);
	if (!p)
		oom(n);
	return p;
}

char *xasprintf(const char *fmt, ...)
{
	char *s = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&s, fmt, ap);
	va_end(ap);
	if (n < 0)
		oom(0);
	return s;
}

int64_t now_ms(void)
{
	return now_us() / 1000;
}

int64_t now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

int64_t wall_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

void deadline_after_ms(struct timespec *ts, long ms)
{
	if (ms < 0)
		ms = 0;
	clock_gettime(CLOCK_MONOTONIC, ts);
	ts->tv_sec += ms / 1000;
	ts->tv_nsec += (ms % 1000) * 1000000L;
	if (ts->tv_nsec >= 1000000000L) {
		ts->tv_sec++;
		ts->tv_nsec -= 1000000000L;
	}
}

void cond_init_monotonic(pthread_cond_t *cv)
{
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &ca);
	pthread_condattr_destroy(&ca);
}

int is_hex_lower(const char *s, size_t n)
{
	if (!s || strlen(s) != n)
		return 0;
	for (size_t i = 0; i < n; i++) {
		char c = s[i];
		if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
			return 0;
	}
	return 1;
}

void hex_encode(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] = "0123456789abcdef";
	for (size_t i = 0; i < n; i++) {
		out[2 * i] = digits[in[i] >> 4];
		out[2 * i + 1] = digits[in[i] & 15];
	}
	out[2 * n] = '\0';
}

int fmt_buf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= size)
		return ERR_TOO_LARGE;
	return 0;
}

void fmt_size(char *buf, size_t size, uint64_t bytes)
{
	static const char *const units[] = {"B", "kB", "MB", "GB", "TB", "PB", "EB"};
	size_t u = 0;
	double v = (double)bytes;

	if (bytes < 1000) {
		snprintf(buf, size, "%llu B", (unsigned long long)bytes);
		return;
	}
	while (v >= 1000.0 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1000.0;
		u++;
	}
	/* Rounding can carry 999.95 up to "1000": show it in the next unit instead. */
	if (v >= 999.5 && u + 1 < sizeof(units) / sizeof(units[0])) {
		v /= 1000.0;
		u++;
	}
	if (v < 9.995)
		snprintf(buf, size, "%.2f %s", v, units[u]);
	else if (v < 99.95)
		snprintf(buf, size, "%.1f %s", v, units[u]);
	else
		snprintf(buf, size, "%.0f %s", v, units[u]);
}

static size_t utf8_seq_len(unsigned char c)
{
	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf)
		return 2;
	if ((c & 0xf0) == 0xe0)
		return 3;
	if (c >= 0xf0 && c <= 0xf4)
		return 4;
	return 0;
}

size_t utf8_valid_len(const unsigned char *s, size_t n)
{
	size_t len = n ? utf8_seq_len(s[0]) : 0;
	if (len == 0 || len > n)
		return 0;
	unsigned cp = len == 1 ? s[0] : s[0] & (0x7fu >> len);
	for (size_t k = 1; k < len; k++) {
		if ((s[k] & 0xc0) != 0x80)
			return 0;
		cp = cp << 6 | (s[k] & 0x3fu);
	}
	if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
	    (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
		return 0;
	return len;
}

int same_file_at(int dir_fd, const char *name, int fd)
{
	struct stat a, b;
	return fstatat(dir_fd, name, &a, AT_SYMLINK_NOFOLLOW) == 0 && fstat(fd, &b) == 0 &&
	       a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

int rename_open_file_at(int dir_fd, const char *from, const char *to, int fd, const char *what,
			struct err *e)
{
	if (!same_file_at(dir_fd, from, fd))
		return err_set(
		    e, ERR_CONFLICT,
		    "%s was replaced by another file while it was written; not publishing it",
		    what);
	if (renameat(dir_fd, from, dir_fd, to) < 0)
		return err_set(e, errno == ENOENT ? ERR_CONFLICT : ERR_IO, "rename %s to %s: %s",
			       what, to, strerror(errno));
	if (!same_file_at(dir_fd, to, fd)) {
		unlinkat(dir_fd, to, 0);
		return err_set(e, ERR_CONFLICT,
			       "%s was replaced by another file while it was renamed to %s; not "
			       "publishing it",
			       what, to);
	}
	if (fsync(dir_fd) < 0)
		return err_set(e, ERR_IO, "fsync the folder of %s: %s", what, strerror(errno));
	return 0;
}

static char boot_id_buf[BOOT_ID_LEN];
static pthread_once_t boot_id_once = PTHREAD_ONCE_INIT;

static void boot_id_read(void)
{
	int fd = open("/proc/sys/kernel/random/boot_id", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return;
	char buf[BOOT_ID_LEN];
	ssize_t n = read(fd, buf, sizeof buf - 1);
	close(fd);
	if (n <= 0)
		return;
	/* A UUID: hex digits and dashes, up to the newline; anything else is not trusted. */
	size_t len = 0;
	while (len < (size_t)n && (isxdigit((unsigned char)buf[len]) || buf[len] == '-'))
		len++;
	if (len < 32 || (len < (size_t)n && buf[len] != '\n'))
		return;
	memcpy(boot_id_buf, buf, len);
	boot_id_buf[len] = '\0';
}

const char *boot_id(void)
{
	pthread_once(&boot_id_once, boot_id_read);
	return boot_id_buf;
}
