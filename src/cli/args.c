#include "cli/args.h"

#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "core/err.h"

static const struct cli_command cli_commands[] = {
    {
	.name = "pull",
	.synopsis = "REF [--detach] [--json]",
	.help = "Downloads a model into the daemon's catalog and follows the job.\n"
		"REF is hf:ORG/REPO[:SELECTOR][@REVISION], https://HOST/PATH[#sha256=HEX]\n"
		"or file:///ABS/PATH. On a terminal a progress bar per file is drawn;\n"
		"otherwise a line per phase. Ctrl-C cancels the job on the daemon\n"
		"(exit 130); a second Ctrl-C leaves at once.\n\n"
		"  --detach          print the job id and return; the job runs on\n"
		"  --json            print the job's events as NDJSON\n",
	.flags = CLI_OPT_JSON | CLI_OPT_DETACH,
	.min_args = 1,
	.max_args = 1,
    },
    {
	.name = "ls",
	.synopsis = "[--json]",
	.help = "Lists the models of the catalog: id, size, quantization, status, age.\n\n"
		"  --json            print the daemon's answer as one JSON document\n",
	.flags = CLI_OPT_JSON,
    },
    {
	.name = "show",
	.synopsis = "ID [--json]",
	.help = "Shows one model: its files with sizes and SHA-256, the commit it was\n"
		"pulled at, and the GGUF facts (architecture, quantization, parameters,\n"
		"context length). ID is a catalog id or any unambiguous ref.\n\n"
		"  --json            print the daemon's answer as one JSON document\n",
	.flags = CLI_OPT_JSON,
	.min_args = 1,
	.max_args = 1,
    },
    {
	.name = "rm",
	.synopsis = "ID|PARTIAL [--json]",
	.help = "Deletes a model and the files no other model uses. Refuses while the\n"
		"model is downloading (cancel its job first). Files another program put\n"
		"in a shared cache stay.\n\n"
		"Given a partial download's id (its sha256, or at least its first 8\n"
		"hex digits, as GET /v1/partials and the web page list them), discards\n"
		"that partial download instead.\n\n"
		"  --json            print the daemon's answer as one JSON document\n",
	.flags = CLI_OPT_JSON,
	.min_args = 1,
	.max_args = 1,
    },
    {
	.name = "jobs",
	.synopsis = "[--json]",
	.help = "Lists the daemon's jobs, newest first: id, operation, state, progress,\n"
		"model, age.\n\n"
		"  --json            print the daemon's answer as one JSON document\n",
	.flags = CLI_OPT_JSON,
    },
    {
	.name = "cancel",
	.synopsis = "JOB_ID [--json]",
	.help = "Cancels a queued or running job. Its partial download stays for a\n"
		"later pull to resume. Fails when the job has already ended.\n\n"
		"  --json            print the daemon's answer as one JSON document\n",
	.flags = CLI_OPT_JSON,
	.min_args = 1,
	.max_args = 1,
    },
    {
	.name = "verify",
	.synopsis = "[ID] [--json]",
	.help = "Hashes a model's files again (every model without ID) and reports\n"
		"each file as ok or damaged. Exit 1 when any file is damaged.\n\n"
		"  --json            print the job's events as NDJSON\n",
	.flags = CLI_OPT_JSON,
	.max_args = 1,
    },
};

static const char cli_common_help[] =
    "\ncommon options:\n"
    "  --url URL         the daemon (default: $RBEE_HIVE_URL, else http://127.0.0.1:7835)\n"
    "  --token-file F    send the bearer token in F (default: $RBEE_HIVE_TOKEN)\n"
    "  -h, --help        show this help\n"
    "\nexit status: 0 success, 1 failure, 2 usage, 130 cancelled.\n";

const struct cli_command *cli_command_find(const char *name)
{
	for (size_t i = 0; i < sizeof(cli_commands) / sizeof(cli_commands[0]); i++) {
		if (strcmp(cli_commands[i].name, name) == 0)
			return &cli_commands[i];
	}
	return NULL;
}

void cli_args_help(const struct cli_command *cmd)
{
	printf("usage: rbee-hive %s %s\n\n%s%s", cmd->name, cmd->synopsis, cmd->help,
	       cli_common_help);
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
    {{"url", required_argument, NULL, OPT_URL}, 0},
    {{"token-file", required_argument, NULL, OPT_TOKEN_FILE}, 0},
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
