/*
 * rbee-hive: one binary, daemon and client. main() only dispatches on the
 * one command table; each command's entry (name, summary, usage, options,
 * exec function) lives beside its code.
 */
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "core/curl_mem.h"
#include "core/log.h"
#include "daemon/daemon.h"

/*
 * serve parses its own options (src/daemon); --json, which every command
 * takes, is taken here: it makes the daemon's log lines JSON objects.
 */
static int serve_run(int argc, char **argv)
{
	int n = 0, i = 0;
	/* argv is compacted in place: the options after "--" are serve's own. */
	for (; i < argc && strcmp(argv[i], "--") != 0; i++) {
		if (strcmp(argv[i], "--json") == 0)
			log_set_json(1);
		else
			argv[n++] = argv[i];
	}
	while (i < argc)
		argv[n++] = argv[i++];
	argv[n] = NULL;
	return daemon_serve_main(n, argv);
}

static const struct cli_command cmd_serve = {
    .name = "serve",
    .summary = "run the daemon (HTTP API, jobs, web UI)",
    .run = serve_run,
};

static const struct cli_command *const commands[] = {
    &cli_cmd_version, &cmd_serve,    &cli_cmd_pull,   &cli_cmd_ls,     &cli_cmd_show,
    &cli_cmd_rm,      &cli_cmd_jobs, &cli_cmd_cancel, &cli_cmd_verify,
};

static void usage(FILE *f)
{
	fprintf(f, "usage: rbee-hive COMMAND [ARGS]\n\ncommands:\n");
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		fprintf(f, "  %-10s %s\n", commands[i]->name, commands[i]->summary);
	fprintf(f, "\nrbee-hive COMMAND --help shows a command's options; every command takes "
		   "--json.\nrbee-hive OPTIONS (no command) runs the daemon with serve's "
		   "options.\n");
}

int main(int argc, char **argv)
{
	log_init_from_env();
	/* Before any thread or handle: libcurl takes its memory functions from its first start. */
	curl_mem_init();
	if (argc < 2) {
		usage(stderr);
		return CLI_EXIT_USAGE;
	}
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		usage(stdout);
		return CLI_EXIT_OK;
	}
	/*
	 * Options without a command run the daemon, as rbee's keeper starts its
	 * hive: `rbee-hive --port 7835 --queen-url URL --hive-id ID`.
	 */
	if (argv[1][0] == '-' && strcmp(argv[1], "--version") != 0)
		return serve_run(argc, argv);
	const char *name = strcmp(argv[1], "--version") == 0 ? "version" : argv[1];
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
		const struct cli_command *cmd = commands[i];
		if (strcmp(name, cmd->name) != 0)
			continue;
		return cmd->run ? cmd->run(argc - 1, argv + 1) : cli_run(cmd, argc - 1, argv + 1);
	}
	fprintf(stderr, "rbee-hive: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return CLI_EXIT_USAGE;
}
