/*
 * cli_args: the options every client subcommand shares (--url, --token-file,
 * --json, --help) and the few that only some take (--detach), parsed with
 * getopt_long from one table of commands. Parsing is separate from running
 * so that it is unit-tested.
 */
#ifndef RBEE_CLI_ARGS_H
#define RBEE_CLI_ARGS_H

struct err;

enum cli_opt_flags {
	CLI_OPT_JSON = 1 << 0,
	CLI_OPT_DETACH = 1 << 1,
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

struct cli_command {
	const char *name;
	const char *synopsis; /* after "rbee-hive NAME " */
	const char *help;     /* what it does and its own options, for --help */
	unsigned flags;	      /* options beyond the shared ones (CLI_OPT_*) */
	int min_args;
	int max_args;
};

/* The command named name, or NULL. */
const struct cli_command *cli_command_find(const char *name);

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
