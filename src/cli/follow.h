/*
 * cli_follow: following a job's event stream for pull and verify, shown as
 * progress bars (stdout a terminal), the daemon's narration lines, or
 * NDJSON (--json); Ctrl-C cancels the job on the daemon.
 */
#ifndef RBEE_CLI_FOLLOW_H
#define RBEE_CLI_FOLLOW_H

struct cli_client;
struct cli_opts;
struct err;

/*
 * Follows job job_id's event stream at sse_url until its terminal line.
 * what names the work in messages ("pull", "verify"). Returns the exit
 * status: 0 [DONE], 75 [ERROR] interrupted (the daemon stopped first), 130
 * cancelled; or a negative ERR_* with a message ([ERROR], a lost stream).
 */
int cli_follow(struct cli_client *c, const char *job_id, const char *sse_url,
	       const struct cli_opts *o, const char *what, struct err *e);

#endif
