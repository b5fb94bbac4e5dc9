#include "core/token.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/util.h"

static int token_space(char c)
{
	return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

int token_check(const char *t, const char *where, struct err *e)
{
	size_t n = strlen(t);
	if (n == 0)
		return err_set(e, ERR_INVALID, "%s: the token is empty", where);
	if (n > CAP_TOKEN_LEN)
		return err_set(e, ERR_TOO_LARGE, "%s: the token is over %d bytes", where,
			       CAP_TOKEN_LEN);
	for (size_t i = 0; i < n; i++)
		if (t[i] < 0x21 || t[i] > 0x7e)
			return err_set(e, ERR_INVALID,
				       "%s: the token has a space, control or non-ASCII character",
				       where);
	return 0;
}

/* Up to size - 1 bytes of fd into buf, NUL-terminated; the count, or -1 (errno). */
static ssize_t token_read_all(int fd, char *buf, size_t size)
{
	size_t len = 0;
	while (len < size - 1) {
		ssize_t n = read(fd, buf + len, size - 1 - len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return -1;
		if (n == 0)
			break;
		len += (size_t)n;
	}
	buf[len] = '\0';
	return (ssize_t)len;
}

int secret_file_read(const char *path, const char *what, int missing_ok, size_t max, char **out,
		     size_t *len_out, struct err *e)
{
	*out = NULL;
	*len_out = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0 && errno == ENOENT && missing_ok)
		return 0;
	if (fd < 0)
		return err_set(e, ERR_IO, "%s '%s': %s", what, path, strerror(errno));
	struct stat st;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return err_set(e, ERR_IO, "%s '%s': not a regular file", what, path);
	}
	/* One byte more than the cap tells an oversized file from a full one. */
	char *buf = xmalloc(max + 2);
	ssize_t got = token_read_all(fd, buf, max + 2);
	int saved = errno;
	close(fd);
	if (got < 0 || (size_t)got > max) {
		explicit_bzero(buf, max + 2);
		free(buf);
		if (got < 0)
			return err_set(e, ERR_IO, "%s '%s': %s", what, path, strerror(saved));
		return err_set(e, ERR_TOO_LARGE, "%s '%s': over %zu bytes", what, path, max);
	}
	*out = buf;
	*len_out = (size_t)got;
	return 0;
}

int token_read_file(const char *path, int missing_ok, char **out, struct err *e)
{
	char *buf = NULL;
	size_t len = 0;
	*out = NULL;
	int rc = secret_file_read(path, "token file", missing_ok, CAP_TOKEN_FILE, &buf, &len, e);
	if (rc || !buf)
		return rc;
	size_t start = 0;
	while (start < len && token_space(buf[start]))
		start++;
	while (len > start && token_space(buf[len - 1]))
		len--;
	buf[len] = '\0';
	/* The message has room for less; a longer path is cut there anyway. */
	char where[ERR_MSG_MAX];
	snprintf(where, sizeof(where), "token file '%s'", path);
	/* An embedded NUL would cut the token short without a word: refuse it too. */
	rc = memchr(buf + start, '\0', len - start)
		 ? err_set(e, ERR_INVALID, "%s: the token has a NUL byte", where)
		 : token_check(buf + start, where, e);
	if (rc == 0)
		*out = xstrndup(buf + start, len - start);
	explicit_bzero(buf, CAP_TOKEN_FILE + 2);
	free(buf);
	return rc;
}
