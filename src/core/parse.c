#include "core/parse.h"

#include <string.h>

#include "core/caps.h"
#include "core/err.h"

int parse_u64(const char *s, size_t len, uint64_t min, uint64_t max, uint64_t *out,
	      const char *what, struct err *e)
{
	if (!s || len == 0)
		return err_set(e, ERR_INVALID, "%s: empty number", what);
	if (len > 20)
		return err_set(e, ERR_INVALID, "%s: number too long", what);
	uint64_t v = 0;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c < '0' || c > '9')
			return err_set(e, ERR_INVALID, "%s: '%.*s' is not a decimal number", what,
				       (int)(len > 40 ? 40 : len), s);
		uint64_t d = c - '0';
		if (v > (UINT64_MAX - d) / 10)
			return err_set(e, ERR_INVALID, "%s: number out of range", what);
		v = v * 10 + d;
	}
	if (v < min || v > max)
		return err_set(e, ERR_INVALID, "%s: %llu is out of range [%llu, %llu]", what,
			       (unsigned long long)v, (unsigned long long)min,
			       (unsigned long long)max);
	*out = v;
	return 0;
}

int parse_u64_str(const char *s, uint64_t min, uint64_t max, uint64_t *out, const char *what,
		  struct err *e)
{
	return parse_u64(s, s ? strlen(s) : 0, min, max, out, what, e);
}

int parse_mode(const char *s, unsigned *out, const char *what, struct err *e)
{
	size_t len = s ? strlen(s) : 0;
	if (len < 3 || len > 4)
		return err_set(e, ERR_INVALID,
			       "%s: '%.8s' is not a file mode (3 or 4 octal digits)", what,
			       s ? s : "");
	unsigned v = 0;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '7')
			return err_set(e, ERR_INVALID, "%s: '%s' is not a file mode (octal digits)",
				       what, s);
		v = v * 8 + (unsigned)(s[i] - '0');
	}
	if (v > 0777)
		return err_set(e, ERR_INVALID, "%s: %s has bits beyond 0777", what, s);
	*out = v;
	return 0;
}

struct size_suffix {
	char c;
	unsigned shift;
};

static const struct size_suffix size_suffixes[] = {
    {'K', 10}, {'k', 10}, {'M', 20}, {'m', 20}, {'G', 30}, {'g', 30}, {'T', 40}, {'t', 40},
};

int parse_size(const char *s, uint64_t max, uint64_t *out, const char *what, struct err *e)
{
	size_t len = s ? strlen(s) : 0;
	unsigned shift = 0;
	if (len > 1) {
		for (size_t i = 0; i < sizeof(size_suffixes) / sizeof(size_suffixes[0]); i++) {
			if (s[len - 1] == size_suffixes[i].c) {
				shift = size_suffixes[i].shift;
				len--;
				break;
			}
		}
	}
	uint64_t v;
	int rc = parse_u64(s, len, 0, UINT64_MAX >> shift, &v, what, e);
	if (rc)
		return rc;
	v <<= shift;
	if (v > max)
		return err_set(e, ERR_INVALID, "%s: %s is over the maximum of %llu", what, s,
			       (unsigned long long)max);
	*out = v;
	return 0;
}

int path_check_repo(const char *p, size_t len, struct err *e)
{
	if (!p || len == 0)
		return err_set(e, ERR_INVALID, "path: empty");
	if (len > CAP_REPO_PATH_LEN)
		return err_set(e, ERR_INVALID, "path: longer than %d bytes", CAP_REPO_PATH_LEN);
	if (p[0] == '/')
		return err_set(e, ERR_INVALID, "path '%.*s': absolute paths are not allowed",
			       (int)(len > 80 ? 80 : len), p);
	int depth = 0;
	size_t start = 0;
	for (size_t i = 0; i <= len; i++) {
		unsigned char c = i < len ? (unsigned char)p[i] : '/';
		if (i < len && (c < 0x20 || c == 0x7f))
			return err_set(e, ERR_INVALID, "path: control character at byte %zu", i);
		if (c == '\\')
			return err_set(e, ERR_INVALID, "path '%.*s': backslash is not allowed",
				       (int)(len > 80 ? 80 : len), p);
		if (c != '/')
			continue;
		size_t clen = i - start;
		if (clen == 0)
			return err_set(e, ERR_INVALID, "path '%.*s': empty component",
				       (int)(len > 80 ? 80 : len), p);
		if ((clen == 1 && p[start] == '.') ||
		    (clen == 2 && p[start] == '.' && p[start + 1] == '.'))
			return err_set(e, ERR_INVALID, "path '%.*s': '.' and '..' are not allowed",
				       (int)(len > 80 ? 80 : len), p);
		if (++depth > CAP_REPO_PATH_DEPTH)
			return err_set(e, ERR_INVALID, "path: deeper than %d components",
				       CAP_REPO_PATH_DEPTH);
		start = i + 1;
	}
	return 0;
}

int name_check_hub(const char *s, size_t len, struct err *e)
{
	if (!s || len == 0)
		return err_set(e, ERR_INVALID, "empty name");
	if (len > CAP_REPO_ID_LEN)
		return err_set(e, ERR_INVALID, "name longer than %d characters", CAP_REPO_ID_LEN);
	for (size_t i = 0; i < len; i++) {
		char c = s[i];
		int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			 (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
		if (!ok)
			return err_set(e, ERR_INVALID, "name '%.*s': character '%c' is not allowed",
				       (int)(len > 80 ? 80 : len), s,
				       (c >= 0x20 && c < 0x7f) ? c : '?');
		if (c == '.' && i + 1 < len && s[i + 1] == '.')
			return err_set(e, ERR_INVALID, "name '%.*s': '..' is not allowed", (int)len,
				       s);
	}
	if (s[0] == '.' || s[0] == '-' || s[len - 1] == '.' || s[len - 1] == '-')
		return err_set(e, ERR_INVALID, "name '%.*s': must not start or end with '.' or '-'",
			       (int)len, s);
	return 0;
}

int revision_check(const char *s, size_t len, struct err *e)
{
	if (!s || len == 0)
		return err_set(e, ERR_INVALID, "revision: empty");
	if (len > CAP_REVISION_LEN)
		return err_set(e, ERR_INVALID, "revision: longer than %d characters",
			       CAP_REVISION_LEN);
	if (s[0] == '/')
		return err_set(e, ERR_INVALID, "revision '%.*s': must not start with '/'",
			       (int)(len > 80 ? 80 : len), s);
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c <= 0x20 || c >= 0x7f || c == '\\')
			return err_set(e, ERR_INVALID,
				       "revision: character at byte %zu is not allowed", i);
		if (c == '.' && i + 1 < len && s[i + 1] == '.')
			return err_set(e, ERR_INVALID, "revision '%.*s': '..' is not allowed",
				       (int)(len > 80 ? 80 : len), s);
	}
	return 0;
}
