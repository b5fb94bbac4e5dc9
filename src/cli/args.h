/*
 * cli_args: one entry per command of rbee-hive (struct cli_command: name,
 * summary, usage, options, exec function; main.c lists the entries in its
 * one table), and the options the entries take (--url, --token-file,
 * --json, --detach, --help), parsed with getopt_long. Parsing is separate
 * from running so that it is unit-tested.
 */
#ifndef RBEE_CLI_ARGS_H
#define RBEE_CLI_ARGS_H

struct cli_client;
struct err;

enum cli_opt_flags {
	CLI_OPT_JSON = 1 << 0,
	CLI_OPT_DETACH = 1 << 1,
	CLI_OPT_DAEMON = 1 << 2, /* talks to a daemon: --url, --token-file */
};

#define CLI_ARGS_MAX 4

struct cli_opts {
	const char *url;	/* --url; NULL when not given */
	const char *token_file; /* --token-file */
	int json;
	int detach;
	int help;
	int nargs;
	const char *args[CLI_ARGS_MAX]; /* positional arguments (borrowed from argv) */
};

/*
 * Runs a command after its options are parsed, with a client of the daemon
 * (NULL unless the command has CLI_OPT_DAEMON). It returns an exit status
 * (>= 0), or a negative ERR_* with a message in e.
 */
typedef int (*cli_body_fn)(struct cli_client *c, const struct cli_opts *o, struct err *e);

struct cli_command {
	const char *name;
	const char *summary;  /* one line of "rbee-hive --help" */
	const char *synopsis; /* after "rbee-hive NAME " */
	const char *help;     /* what it does and its own options, for NAME --help */
	unsigned flags;	      /* the options it takes besides --help (CLI_OPT_*) */
	int min_args;
	int max_args;
	/* The exec function: body, run by cli_run(); or run, given argv as it is. */
	cli_body_fn body;
	int (*run)(int argc, char **argv);
};

/*
 * Parses argv (argv[0] is the command name). On --help sets o->help and
 * returns 0 without checking the rest. Returns ERR_INVALID with a message
 * for an unknown option, a missing value or a wrong number of arguments.
 */
int cli_args_parse(const struct cli_command *cmd, int argc, char **argv, struct cli_opts *o,
		   struct err *e);

/* Prints "usage: ..." and the command's help to stdout. */
void cli_args_help(const struct cli_command *cmd);
/* Prints "usage: ..." and a pointer to --help to stderr. */
void cli_args_usage(const struct cli_command *cmd);

#endif
