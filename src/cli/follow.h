/*
 * cli_follow: following a job's event stream for pull and verify, shown as
 * progress bars (stdout a terminal), the daemon's narration lines, or
 * NDJSON (--json); Ctrl-C cancels the job on the daemon.
 */
#ifndef RBEE_CLI_FOLLOW_H
#define RBEE_CLI_FOLLOW_H

struct cli_client;
struct cli_opts;
struct cli_sse_event;
struct err;

/*
 * Follows job job_id's event stream at sse_url until its terminal line.
 * what names the work in messages ("pull", "verify"). Returns the exit
 * status: 0 [DONE], 75 [ERROR] interrupted (the daemon stopped first), 130
 * cancelled; or a negative ERR_* with a message ([ERROR], a lost stream).
 */
int cli_follow(struct cli_client *c, const char *job_id, const char *sse_url,
	       const struct cli_opts *o, const char *what, struct err *e);

/*
 * The view of one job's stream, apart from the transfer that feeds it (so
 * that it is unit-tested over any byte source): bars, lines or NDJSON on
 * stdout. cli_view_event is the cli_sse callback; it returns nonzero once
 * the terminal line ([DONE], [ERROR] ..., [CANCELLED]) arrived, and
 * cli_view_finish then shows the end and returns what cli_follow returns.
 */
enum cli_view_mode { CLI_VIEW_BARS, CLI_VIEW_LINES, CLI_VIEW_JSON };
struct cli_view;
struct cli_view *cli_view_new(enum cli_view_mode mode, const char *what);
int cli_view_event(const struct cli_sse_event *ev, void *view);
int cli_view_finish(struct cli_view *v, const char *job_id, struct err *e);
void cli_view_free(struct cli_view *v);

#endif
