/*
 * rbee-hive: one binary, daemon and client. main() only dispatches on the
 * subcommand table; each subcommand lives in its module.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/log.h"
#include "daemon/daemon.h"

struct subcommand {
	const char *name;
	const char *summary;
	int (*run)(int argc, char **argv);
};

static int cmd_version(int argc, char **argv)
{
	(void)argc;
	(void)argv;
	printf("rbee-hive %s\n", RBEE_VERSION);
	return 0;
}

static const struct subcommand subcommands[] = {
	{"version", "print the version", cmd_version},
	{"serve", "run the daemon (HTTP API, jobs, web UI)", daemon_serve_main},
	{"pull", "download a model, with progress (Ctrl-C cancels)", cli_run},
	{"ls", "list the models of the catalog", cli_run},
	{"show", "show a model's files, hashes and GGUF facts", cli_run},
	{"rm", "delete a model", cli_run},
	{"jobs", "list the daemon's jobs", cli_run},
	{"cancel", "cancel a job", cli_run},
	{"verify", "hash a model's files again and report", cli_run},
};

static void usage(FILE *f)
{
	fprintf(f, "usage: rbee-hive COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++)
		fprintf(f, "  %-10s %s\n", subcommands[i].name, subcommands[i].summary);
	fprintf(f, "\nrbee-hive COMMAND --help shows a command's options.\n");
}

int main(int argc, char **argv)
{
	log_init_from_env();
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return 0;
	}
	if (strcmp(argv[1], "--version") == 0)
		return cmd_version(argc - 1, argv + 1);
	for (size_t i = 0; i < sizeof(subcommands) / sizeof(subcommands[0]); i++) {
		if (strcmp(argv[1], subcommands[i].name) == 0)
			return subcommands[i].run(argc - 1, argv + 1);
	}
	fprintf(stderr, "rbee-hive: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
