#include "cli/args.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli/client.h"
#include "core/err.h"

static const char cli_daemon_help[] =
    "\ncommon options:\n"
    "  --url URL         the daemon (default: $RBEE_HIVE_URL, else " CLI_DEFAULT_URL ")\n"
    "  --token-file F    send the bearer token in F (default: $RBEE_HIVE_TOKEN)\n"
    "  -h, --help        show this help\n"
    "\nexit status: 0 success, 1 failure, 2 usage, 75 interrupted, 130 cancelled.\n"
    "With --json an error is one JSON object on stderr, as the daemon's errors.\n";

void cli_args_help(const struct cli_command *cmd)
{
	printf("usage: rbee-hive %s %s\n\n%s%s", cmd->name, cmd->synopsis, cmd->help,
	       (cmd->flags & CLI_OPT_DAEMON) ? cli_daemon_help : "");
}

void cli_args_usage(const struct cli_command *cmd)
{
	fprintf(stderr, "usage: rbee-hive %s %s\n(rbee-hive %s --help for more)\n", cmd->name,
		cmd->synopsis, cmd->name);
}

enum { OPT_URL = 'u', OPT_TOKEN_FILE = 't', OPT_JSON = 'j', OPT_DETACH = 'd', OPT_HELP = 'h' };

static const struct {
	struct option opt;
	unsigned flag; /* 0: every command takes it */
} cli_options[] = {
    {{"url", required_argument, NULL, OPT_URL}, CLI_OPT_DAEMON},
    {{"token-file", required_argument, NULL, OPT_TOKEN_FILE}, CLI_OPT_DAEMON},
    {{"json", no_argument, NULL, OPT_JSON}, CLI_OPT_JSON},
    {{"detach", no_argument, NULL, OPT_DETACH}, CLI_OPT_DETACH},
    {{"help", no_argument, NULL, OPT_HELP}, 0},
};

#define CLI_NOPTIONS (sizeof(cli_options) / sizeof(cli_options[0]))

int cli_args_parse(const struct cli_command *cmd, int argc, char **argv, struct cli_opts *o,
		   struct err *e)
{
	struct option longopts[CLI_NOPTIONS + 1];
	size_t n = 0;
	int c;

	memset(o, 0, sizeof(*o));
	for (size_t i = 0; i < CLI_NOPTIONS; i++) {
		if (cli_options[i].flag == 0 || (cmd->flags & cli_options[i].flag))
			longopts[n++] = cli_options[i].opt;
	}
	memset(&longopts[n], 0, sizeof(longopts[n]));

	/* optind = 0 makes glibc start over, so the parser can run more than once. */
	optind = 0;
	opterr = 0;
	while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
		switch (c) {
		case OPT_URL: o->url = optarg; break;
		case OPT_TOKEN_FILE: o->token_file = optarg; break;
		case OPT_JSON: o->json = 1; break;
		case OPT_DETACH: o->detach = 1; break;
		case OPT_HELP: o->help = 1; return 0;
		case ':':
			return err_set(e, ERR_INVALID, "%s: option '%s' needs a value", cmd->name,
				       argv[optind - 1]);
		default:
			return err_set(e, ERR_INVALID, "%s: unknown option '%s'", cmd->name,
				       argv[optind - 1]);
		}
	}
	for (int i = optind; i < argc; i++) {
		if (o->nargs >= cmd->max_args)
			return err_set(e, ERR_INVALID, "%s: unexpected argument '%s'", cmd->name,
				       argv[i]);
		o->args[o->nargs++] = argv[i];
	}
	if (o->nargs < cmd->min_args)
		return err_set(e, ERR_INVALID, "%s: missing argument (%s)", cmd->name,
			       cmd->synopsis);
	return 0;
}
