/*
 * cmd: what the command files of the CLI (commands.c, cmd_models.c,
 * cmd_jobs.c) share: the error output, JSON and table output, and reading
 * the daemon's answers. Internal to src/cli.
 */
#ifndef RBEE_CLI_CMD_H
#define RBEE_CLI_CMD_H

#include <jansson.h>

struct cli_client;
struct cli_opts;
struct err;

/* An error as docs/cli.md defines it for --json: the daemon's error body, on stderr. */
void cli_print_error(const struct cli_opts *o, const struct err *e);

/* Prints v to stdout as one JSON document (indented) and a newline. */
void cli_print_json(const json_t *v);

/* Seconds since the time in milliseconds since the epoch under key; -1 when absent. */
long long cli_age_s(const json_t *o, const char *key);

/*
 * An answer that is not the success it should be becomes an error from the
 * daemon; a success that is not a JSON object is not from an rbee-hive daemon.
 */
int cli_expect(const struct cli_client *c, long status, long want, json_t *answer, struct err *e);

/* The list under key of an answer (docs/api.md: {"models":[…]}, {"jobs":[…]}, …). */
json_t *cli_list(const json_t *answer, const char *key);

/* A table of strings printed with aligned columns (at most CLI_TABLE_COLS); cells are copied. */
#define CLI_TABLE_COLS 8
struct cli_table;
struct cli_table *cli_table_new(const char *const *headers, int ncols);
/* Adds a row of the table's column count; a NULL cell shows as "-". */
void cli_table_add(struct cli_table *t, const char *const *cells);
void cli_table_print(const struct cli_table *t);
void cli_table_free(struct cli_table *t);

/* The help lines of --json, as the commands use it. */
#define CLI_HELP_JSON_ANSWER "  --json            print the daemon's answer as one JSON document\n"
#define CLI_HELP_JSON_EVENTS "  --json            print the job's events as NDJSON\n"

#endif
