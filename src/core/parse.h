/*
 * parse: the checked parsers that input from the network, files and users
 * goes through. Each bounds what it accepts and says what was wrong.
 */
#ifndef RBEE_CORE_PARSE_H
#define RBEE_CORE_PARSE_H

#include <stddef.h>
#include <stdint.h>

struct err;

/*
 * Parses exactly len bytes of s as a decimal unsigned integer in [min, max]:
 * no sign, no spaces, no empty string, no overflow. what names the value in
 * the error ("port"). Returns 0 or ERR_INVALID.
 */
int parse_u64(const char *s, size_t len, uint64_t min, uint64_t max, uint64_t *out,
	      const char *what, struct err *e);
/* The same for a NUL-terminated string. */
int parse_u64_str(const char *s, uint64_t min, uint64_t max, uint64_t *out, const char *what,
		  struct err *e);

/*
 * Parses a file mode of 3 or 4 octal digits ("644", "0600") up to 0777 (no
 * set-id or sticky bits). Returns 0 or ERR_INVALID.
 */
int parse_mode(const char *s, unsigned *out, const char *what, struct err *e);

/*
 * Parses a size with an optional binary suffix: "1048576", "512K", "40M",
 * "2G" (K = 1024). Returns 0 or ERR_INVALID.
 */
int parse_size(const char *s, uint64_t max, uint64_t *out, const char *what, struct err *e);

/*
 * Checks a path inside a repo or cache, as it comes from the network or a
 * user, before it touches the disk: relative, components separated by single
 * '/', no "." or ".." component, no empty component, no backslash, no NUL or
 * control characters, at most CAP_REPO_PATH_LEN bytes and CAP_REPO_PATH_DEPTH
 * components. len is the byte length (so an embedded NUL is caught).
 * Returns 0 or ERR_INVALID with the reason.
 */
int path_check_repo(const char *p, size_t len, struct err *e);

/*
 * Checks one Hub name part (ORG or REPO): [A-Za-z0-9._-], 1..CAP_REPO_ID_LEN,
 * not starting or ending with '.' or '-', no "..". Returns 0 or ERR_INVALID.
 */
int name_check_hub(const char *s, size_t len, struct err *e);

/*
 * Checks a revision (branch, tag or commit): printable ASCII without spaces,
 * no "..", no leading '/', at most CAP_REVISION_LEN. Returns 0 or ERR_INVALID.
 */
int revision_check(const char *s, size_t len, struct err *e);

#endif
