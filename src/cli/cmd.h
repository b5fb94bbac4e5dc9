/*
 * cli_cmd: what the client subcommands share: the runner that parses
 * options, prints help or usage, connects and maps the outcome to an exit
 * status; tolerant readers of the daemon's JSON (a field may sit at the top
 * level or inside a sub-object such as "gguf"); a table printer; and the
 * job follower that pull and verify use.
 */
#ifndef RBEE_CLI_CMD_H
#define RBEE_CLI_CMD_H

#include <jansson.h>
#include <stdint.h>

struct cli_client;
struct cli_opts;
struct err;

/*
 * Runs a subcommand body. It returns an exit status (>= 0), or a negative
 * ERR_* with a message in e, which is printed as "rbee-hive: <message>" and
 * exits 1.
 */
typedef int (*cli_body_fn)(struct cli_client *c, const struct cli_opts *o, struct err *e);
int cli_main(const char *name, int argc, char **argv, cli_body_fn body);

/*
 * The first of keys (NULL-terminated; "a.b" looks inside object "a") that is
 * present and not null in o, or NULL.
 */
json_t *cli_jfind(const json_t *o, const char *const *keys);
/* The same, as a string (NULL unless a string). */
const char *cli_jstr(const json_t *o, const char *const *keys);
/* The same, as a non-negative integer (a real is truncated); 0 when found, else -1. */
int cli_juint(const json_t *o, const char *const *keys, uint64_t *out);
/*
 * Seconds since the timestamp under keys: a number of seconds or
 * milliseconds since the epoch, or an ISO 8601 UTC string; -1 when absent.
 */
long long cli_jage(const json_t *o, const char *const *keys);

/* Prints v to stdout as one JSON document (indented) and a newline. */
void cli_print_json(const json_t *v);

/* A table of strings printed with aligned columns; cells are copied. */
struct cli_table;
struct cli_table *cli_table_new(const char *const *headers, int ncols);
void cli_table_add(struct cli_table *t, const char *const *cells);
void cli_table_print(const struct cli_table *t);
void cli_table_free(struct cli_table *t);

/*
 * Follows job job_id's event stream at sse_url until its terminal line,
 * showing it as bars (stdout a terminal), lines, or NDJSON (o->json).
 * Ctrl-C cancels the job on the daemon. what names the work in messages
 * ("pull", "verify"). Returns the exit status: 0 [DONE], 1 [ERROR],
 * 75 [ERROR] interrupted (the daemon stopped first), 130 cancelled; or a
 * negative ERR_* with a message.
 */
int cli_follow(struct cli_client *c, const char *job_id, const char *sse_url,
	       const struct cli_opts *o, const char *what, struct err *e);

#endif
