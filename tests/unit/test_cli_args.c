/* Option parsing of the client subcommands, and the percent-encoding of ids. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/client.h"
#include "core/err.h"

#define ARGV(...) ((char *[]){__VA_ARGS__, NULL})
#define ARGC(...) ((int)(sizeof((char *[]){__VA_ARGS__}) / sizeof(char *)))
#define PARSE(cmd, o, e, ...)                                                                      \
	cli_args_parse(&cli_cmd_##cmd, ARGC(__VA_ARGS__), ARGV(__VA_ARGS__), o, e)

static void test_pull_options_anywhere(void **state)
{
	(void)state;
	struct cli_opts o;
	struct err e;
	assert_int_equal(PARSE(pull, &o, &e, "pull", "--json", "hf:org/repo:Q4_K_M", "--url",
			       "http://127.0.0.1:9", "--detach", "--token-file=/t"),
			 0);
	assert_int_equal(o.nargs, 1);
	assert_string_equal(o.args[0], "hf:org/repo:Q4_K_M");
	assert_int_equal(o.json, 1);
	assert_int_equal(o.detach, 1);
	assert_string_equal(o.url, "http://127.0.0.1:9");
	assert_string_equal(o.token_file, "/t");
}

static void test_help_wins(void **state)
{
	(void)state;
	struct cli_opts o;
	struct err e;
	assert_int_equal(PARSE(show, &o, &e, "show", "--help"), 0);
	assert_int_equal(o.help, 1);
	assert_int_equal(PARSE(rm, &o, &e, "rm", "-h", "--bogus"), 0);
	assert_int_equal(o.help, 1);
}

static void test_usage_errors(void **state)
{
	(void)state;
	struct cli_opts o;
	struct err e;
	assert_int_equal(PARSE(pull, &o, &e, "pull"), ERR_INVALID);
	assert_non_null(strstr(e.msg, "missing argument"));
	assert_int_equal(PARSE(ls, &o, &e, "ls", "extra"), ERR_INVALID);
	assert_non_null(strstr(e.msg, "'extra'"));
	assert_int_equal(PARSE(ls, &o, &e, "ls", "--frobnicate"), ERR_INVALID);
	assert_non_null(strstr(e.msg, "--frobnicate"));
	assert_int_equal(PARSE(ls, &o, &e, "ls", "--url"), ERR_INVALID);
	assert_non_null(strstr(e.msg, "needs a value"));
	/* --detach belongs to pull only. */
	assert_int_equal(PARSE(ls, &o, &e, "ls", "--detach"), ERR_INVALID);
	assert_int_equal(PARSE(cancel, &o, &e, "cancel", "a", "b"), ERR_INVALID);
}

static void test_optional_argument(void **state)
{
	(void)state;
	struct cli_opts o;
	struct err e;
	assert_int_equal(PARSE(verify, &o, &e, "verify"), 0);
	assert_int_equal(o.nargs, 0);
	assert_int_equal(PARSE(verify, &o, &e, "verify", "--json", "hf:a/b:c.gguf"), 0);
	assert_int_equal(o.nargs, 1);
	assert_int_equal(o.json, 1);
	/* After "--" an argument that looks like an option is an argument. */
	assert_int_equal(PARSE(show, &o, &e, "show", "--", "--odd"), 0);
	assert_string_equal(o.args[0], "--odd");
}

static void test_every_command_known(void **state)
{
	(void)state;
	static const struct cli_command *const cmds[] = {
	    &cli_cmd_pull, &cli_cmd_ls,	    &cli_cmd_show,   &cli_cmd_rm,
	    &cli_cmd_jobs, &cli_cmd_cancel, &cli_cmd_verify, &cli_cmd_version,
	};
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		const struct cli_command *c = cmds[i];
		assert_non_null(c->help);
		assert_non_null(c->summary);
		assert_non_null(c->body);
		assert_true(c->flags & CLI_OPT_JSON);
		/* Every command but version talks to a daemon. */
		assert_int_equal(!!(c->flags & CLI_OPT_DAEMON), c != &cli_cmd_version);
	}
}

/* version takes --json, and no daemon options. */
static void test_version_options(void **state)
{
	(void)state;
	struct cli_opts o;
	struct err e;
	assert_int_equal(PARSE(version, &o, &e, "version", "--json"), 0);
	assert_int_equal(o.json, 1);
	assert_int_equal(PARSE(version, &o, &e, "version", "--url", "http://x"), ERR_INVALID);
	assert_int_equal(PARSE(version, &o, &e, "version", "extra"), ERR_INVALID);
}

static void test_url_segment(void **state)
{
	(void)state;
	char *s = cli_url_segment("hf:org/repo:sub/x.Q4_K_M.gguf");
	assert_string_equal(s, "hf%3Aorg%2Frepo%3Asub%2Fx.Q4_K_M.gguf");
	free(s);
	s = cli_url_segment("a b?#%~");
	assert_string_equal(s, "a%20b%3F%23%25~");
	free(s);
}

static void test_client_url_and_token(void **state)
{
	(void)state;
	struct cli_client c;
	struct err e;
	unsetenv("RBEE_HIVE_TOKEN");
	setenv("RBEE_HIVE_URL", "http://127.0.0.1:18501/", 1);
	assert_int_equal(cli_client_init(&c, NULL, NULL, &e), 0);
	assert_string_equal(c.base, "http://127.0.0.1:18501");
	assert_null(c.auth);
	cli_client_cleanup(&c);

	unsetenv("RBEE_HIVE_URL");
	assert_int_equal(cli_client_init(&c, NULL, NULL, &e), 0);
	assert_string_equal(c.base, CLI_DEFAULT_URL);
	cli_client_cleanup(&c);

	assert_int_equal(cli_client_init(&c, "ftp://x", NULL, &e), ERR_INVALID);
	assert_int_equal(cli_client_init(&c, "http://a b", NULL, &e), ERR_INVALID);

	setenv("RBEE_HIVE_TOKEN", "s3cret", 1);
	assert_int_equal(cli_client_init(&c, "http://127.0.0.1:1", NULL, &e), 0);
	assert_string_equal(c.auth, "Authorization: Bearer s3cret");
	cli_client_cleanup(&c);
	setenv("RBEE_HIVE_TOKEN", "bad\ntoken", 1);
	assert_int_equal(cli_client_init(&c, "http://127.0.0.1:1", NULL, &e), ERR_INVALID);
	unsetenv("RBEE_HIVE_TOKEN");
	assert_int_equal(cli_client_init(&c, "http://127.0.0.1:1", "/nonexistent/token", &e),
			 ERR_IO);
	assert_non_null(strstr(e.msg, "/nonexistent/token"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pull_options_anywhere),
	    cmocka_unit_test(test_help_wins),
	    cmocka_unit_test(test_usage_errors),
	    cmocka_unit_test(test_optional_argument),
	    cmocka_unit_test(test_every_command_known),
	    cmocka_unit_test(test_version_options),
	    cmocka_unit_test(test_url_segment),
	    cmocka_unit_test(test_client_url_and_token),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
