/*
 * cli: the commands of rbee-hive besides serve (version, and the clients
 * pull, ls, show, rm, jobs, cancel, verify, which talk to a running daemon
 * over its HTTP API only); see docs/cli.md.
 */
#ifndef RBEE_CLI_CLI_H
#define RBEE_CLI_CLI_H

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2
#define CLI_EXIT_INTERRUPTED 75 /* the daemon stopped; the job waits for it (EX_TEMPFAIL) */
#define CLI_EXIT_CANCELLED 130

#include "cli/args.h"

/*
 * Runs a command whose exec function is a body: parses its options, prints
 * its help, connects to the daemon when it talks to one, and prints an
 * error (as JSON with --json, docs/cli.md). Returns the exit status (0
 * success, 1 failure, 2 usage, 75 interrupted by a daemon stop, 130
 * cancelled).
 */
int cli_run(const struct cli_command *cmd, int argc, char **argv);

/* The entries of the commands; main.c lists them in its one command table. */
extern const struct cli_command cli_cmd_version, cli_cmd_pull, cli_cmd_ls, cli_cmd_show, cli_cmd_rm,
    cli_cmd_jobs, cli_cmd_cancel, cli_cmd_verify;

#endif
