/*
 * token: reading a bearer token from a file, the one way for every token
 * file rbee-hive reads: the daemon's --token-file, the CLI's --token-file
 * and the Hugging Face token file (huggingface-cli login writes it). A token
 * goes into an HTTP header, so only printable ASCII without spaces passes:
 * anything else could forge a header or leak a line of another file.
 */
#ifndef RBEE_CORE_TOKEN_H
#define RBEE_CORE_TOKEN_H

#include <stddef.h>

struct err;

/*
 * Reads the token of the file path into *out (malloc'd; the caller scrubs
 * and frees it; NULL on error). The white space around it (spaces, tabs,
 * line ends) is dropped. When missing_ok, a file that does not exist is no
 * token: 0 with *out NULL. Errors, each naming path: ERR_IO (no such file,
 * not readable, not a regular file), ERR_TOO_LARGE (over CAP_TOKEN_FILE
 * bytes, or a token over CAP_TOKEN_LEN), ERR_INVALID (empty, or a byte
 * outside printable ASCII inside the token).
 */
int token_read_file(const char *path, int missing_ok, char **out, struct err *e);

/*
 * The whole of a file that holds secrets (a token file, Docker's
 * config.json), at most max bytes, into *out (malloc'd, NUL-terminated, its
 * length in *len; the caller scrubs and frees it). what names the file in
 * messages ("token file"). missing_ok as for token_read_file. Errors:
 * ERR_IO (missing, unreadable, not a regular file), ERR_TOO_LARGE.
 */
int secret_file_read(const char *path, const char *what, int missing_ok, size_t max, char **out,
		     size_t *len, struct err *e);

/*
 * 0 when t is a usable token (1..CAP_TOKEN_LEN printable ASCII bytes, no
 * space), else ERR_INVALID or ERR_TOO_LARGE with a message naming where.
 */
int token_check(const char *t, const char *where, struct err *e);

#endif
