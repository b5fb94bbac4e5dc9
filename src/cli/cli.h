/*
 * cli: the client subcommands of rbee-hive (pull, ls, show, rm, jobs,
 * cancel, verify). Each talks to a running daemon over its HTTP API only;
 * see docs/cli.md.
 */
#ifndef RBEE_CLI_CLI_H
#define RBEE_CLI_CLI_H

#define CLI_EXIT_OK 0
#define CLI_EXIT_FAIL 1
#define CLI_EXIT_USAGE 2
#define CLI_EXIT_INTERRUPTED 75 /* the daemon stopped; the job waits for it (EX_TEMPFAIL) */
#define CLI_EXIT_CANCELLED 130

/*
 * The entry of main()'s subcommand table for every client subcommand:
 * argv[0] names it. Returns the exit status (0 success, 1 failure, 2 usage,
 * 75 interrupted by a daemon stop, 130 cancelled).
 */
int cli_run(int argc, char **argv);

#endif
