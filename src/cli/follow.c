/*
 * The job follower of pull and verify: reads a job's event stream and shows
 * it as progress bars (one per file, redrawn at most ten times a second),
 * as the daemon's narration lines, or as NDJSON; resumes a dropped stream from its last
 * event id; turns Ctrl-C into a cancel on the daemon.
 *
 * Everything here runs on the main thread. The SIGINT handler only sets
 * cli_interrupted (checked by the stream loop every 100 ms); a second
 * SIGINT leaves at once with status 130.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "cli/args.h"
#include "cli/cli.h"
#include "cli/client.h"
#include "cli/answer.h"
#include "cli/follow.h"
#include "cli/fmt.h"
#include "cli/sse.h"
#include "core/caps.h"
#include "core/err.h"
#include "core/json.h"
#include "core/util.h"

#define FOLLOW_RECONNECTS 5	   /* attempts in a row without a new event */
#define FOLLOW_CANCEL_WAIT_MS 5000 /* how long to wait for the daemon's [CANCELLED] */
#define FOLLOW_REDRAW_MS 100
#define FOLLOW_BARS_MAX CAP_MODEL_FILES

static volatile sig_atomic_t cli_interrupted;

static void follow_on_sigint(int sig)
{
	(void)sig;
	if (cli_interrupted) {
		static const char nl[] = "\n";
		ssize_t w = write(STDERR_FILENO, nl, 1);
		(void)w;
		_exit(CLI_EXIT_CANCELLED);
	}
	cli_interrupted = 1;
}

enum follow_end { END_DONE = 1, END_ERROR, END_CANCELLED, END_INTERRUPTED };

/* The daemon's message when it stopped before the job ended (docs/api.md). */
#define FOLLOW_INTERRUPTED "interrupted:"

struct vbar {
	char *name;
	uint64_t base; /* the job's bytes_done when this file started */
	uint64_t done;
	uint64_t total;
	int index;
	int finished;
	int own_counts; /* the events carry this file's own byte counts */
};

struct cli_view {
	enum cli_view_mode mode;
	const char *what;
	int utf8;
	struct vbar *bars;
	size_t nbars;
	size_t first_live; /* bars above it are drawn for the last time */
	int drawn;	   /* lines of the live region on screen; the cursor ends the last */
	int dirty;
	int64_t last_draw;
	/* The latest progress. */
	char phase[32];
	int files_total;
	uint64_t job_done; /* bytes of the whole model */
	double rate_bps;
	long long eta_s;
	/* The end. */
	int end;
	char *error;
	/* After Ctrl-C: bars are no longer drawn; the stream loop stops at the deadline. */
	int cancelling;
	int64_t deadline;
	volatile sig_atomic_t deadline_hit;
};

static int term_width(void)
{
	struct winsize ws;
	if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0)
		return ws.ws_col;
	return 80;
}

static int locale_utf8(void)
{
	static const char *const vars[] = {"LC_ALL", "LC_CTYPE", "LANG"};
	for (size_t i = 0; i < sizeof(vars) / sizeof(vars[0]); i++) {
		const char *v = getenv(vars[i]);
		if (v && v[0])
			return strcasestr(v, "utf-8") != NULL || strcasestr(v, "utf8") != NULL;
	}
	return 0;
}

/* Moves the cursor to the start of the live region and clears it. */
static void view_erase(struct cli_view *v)
{
	if (v->drawn == 0)
		return;
	fputs("\r", stdout);
	if (v->drawn > 1)
		printf("\033[%dA", v->drawn - 1);
	fputs("\033[J", stdout);
	v->drawn = 0;
}

static void view_draw(struct cli_view *v)
{
	char line[1024];
	int width = term_width();

	view_erase(v);
	if (v->nbars == 0) {
		if (v->phase[0]) {
			snprintf(line, sizeof(line), "%s ...", v->phase);
			fputs(line, stdout);
			v->drawn = 1;
		}
	} else {
		for (size_t i = v->first_live; i < v->nbars; i++) {
			const struct vbar *b = &v->bars[i];
			int last = (i + 1 == v->nbars);
			struct cli_bar cb = {
			    .name = b->name,
			    .phase = b->finished ? NULL : v->phase,
			    .done = b->done,
			    .total = b->total,
			    .rate_bps = last ? v->rate_bps : -1,
			    .eta_s = last ? v->eta_s : -1,
			    .index = b->index,
			    .count = v->files_total,
			    .finished = b->finished,
			};
			cli_bar_render(line, sizeof(line), &cb, width, v->utf8);
			fputs(line, stdout);
			if (!last)
				fputs("\n", stdout);
		}
		v->drawn = (int)(v->nbars - v->first_live);
		/* Finished bars above the last one scroll into history and stay as drawn. */
		while (v->first_live + 1 < v->nbars && v->bars[v->first_live].finished) {
			v->first_live++;
			v->drawn--;
		}
	}
	fflush(stdout);
	v->dirty = 0;
	v->last_draw = now_ms();
}

static void view_tick(void *arg)
{
	struct cli_view *v = arg;
	if (v->mode == CLI_VIEW_BARS && v->dirty && now_ms() - v->last_draw >= FOLLOW_REDRAW_MS)
		view_draw(v);
	if (v->deadline && now_ms() >= v->deadline)
		v->deadline_hit = 1;
}

/*
 * Marks a bar done. Without per-file counts its line showed the whole model
 * while it ran; finished, it shows what this file added: the model's bytes
 * now less those when it started (files arrive one after another).
 */
static void view_bar_finish(struct cli_view *v, struct vbar *b)
{
	/* A file left behind is complete, though its last event may have been coalesced away. */
	if (!b->finished && b->own_counts && b->total)
		b->done = b->total;
	if (!b->finished && !b->own_counts && v->files_total > 1 && v->job_done >= b->base)
		b->done = b->total = v->job_done - b->base;
	b->finished = 1;
}

/* Ends the bar region so that what follows starts on a fresh line. */
static void view_close(struct cli_view *v)
{
	if (v->mode != CLI_VIEW_BARS)
		return;
	if (v->dirty || v->drawn)
		view_draw(v);
	if (v->drawn)
		fputs("\n", stdout);
	v->drawn = 0;
	fflush(stdout);
}

static void view_json(const char *event, const char *id, const char *key, json_t *value)
{
	json_t *o = json_object();
	json_set_str(o, "event", event);
	if (id && id[0])
		json_set_str(o, "id", id);
	if (key)
		json_object_set_new(o, key, value);
	char *s = json_dump_compact(o);
	printf("%s\n", s);
	fflush(stdout);
	free(s);
	json_decref(o);
}

static struct vbar *view_bar(struct cli_view *v, const char *file, uint64_t job_done,
			     int files_done)
{
	for (size_t i = v->nbars; i > v->first_live; i--) {
		if (strcmp(v->bars[i - 1].name, file) == 0)
			return &v->bars[i - 1];
	}
	if (v->nbars >= FOLLOW_BARS_MAX)
		return &v->bars[v->nbars - 1];
	/* Files are fetched one after another: a new file means the others are done. */
	for (size_t i = v->first_live; i < v->nbars; i++)
		view_bar_finish(v, &v->bars[i]);
	v->bars = xrealloc(v->bars, (v->nbars + 1) * sizeof(*v->bars));
	struct vbar *b = &v->bars[v->nbars];
	memset(b, 0, sizeof(*b));
	b->name = xstrdup(file);
	b->base = job_done;
	b->index = files_done + 1;
	v->nbars++;
	return b;
}

static void view_progress(struct cli_view *v, const char *data, size_t len, const char *id)
{
	json_t *p = NULL;
	uint64_t files_done = 0, files_total = 0, done = 0, total = 0, fdone, ftotal, x;

	if (json_parse_strict(data, len, CAP_EVENT_LEN, &p, NULL) < 0 || !json_is_object(p)) {
		json_decref(p);
		return;
	}
	if (v->mode == CLI_VIEW_JSON) {
		view_json("progress", id, "data", p);
		return;
	}
	if (v->cancelling) {
		json_decref(p);
		return;
	}
	const char *phase = cli_jstr(p, "phase");
	const char *file = cli_jstr(p, "file");
	cli_juint(p, "files_done", &files_done);
	cli_juint(p, "files_total", &files_total);
	cli_juint(p, "bytes_done", &done);
	cli_juint(p, "bytes_total", &total);
	snprintf(v->phase, sizeof(v->phase), "%s", phase ? phase : "");
	v->files_total = (int)(files_total < 1000000 ? files_total : 1000000);
	v->job_done = done;
	v->rate_bps =
	    cli_juint(p, "rate_bps", &x) == 0 ? json_number_value(cli_jget(p, "rate_bps")) : -1;
	v->eta_s = cli_juint(p, "eta_s", &x) == 0 ? (long long)x : -1;

	if (v->mode == CLI_VIEW_LINES) {
		/* The daemon narrates every phase of every file; a line of ours would repeat it. */
		json_decref(p);
		return;
	}

	if (file && file[0]) {
		struct vbar *b = view_bar(v, file, done, (int)files_done);
		if (cli_juint(p, "file_bytes_done", &fdone) == 0 &&
		    cli_juint(p, "file_bytes_total", &ftotal) == 0) {
			b->done = fdone;
			b->total = ftotal;
			b->own_counts = 1;
		} else {
			/* Without per-file counts the live bar shows the whole model. */
			b->done = done;
			b->total = total;
		}
	}
	v->dirty = 1;
	json_decref(p);
}

static void view_narration(struct cli_view *v, const char *text, const char *id)
{
	if (v->mode == CLI_VIEW_JSON) {
		view_json("message", id, "data", json_string(text));
		return;
	}
	if (v->mode == CLI_VIEW_BARS)
		view_erase(v);
	printf("%s\n", text);
	if (v->mode == CLI_VIEW_BARS)
		view_draw(v);
	fflush(stdout);
}

static void view_data(struct cli_view *v, const char *data, size_t len, const char *id)
{
	json_t *d = NULL;
	if (json_parse_strict(data, len, CAP_EVENT_LEN, &d, NULL) < 0)
		d = json_stringn(data, len);
	if (v->mode == CLI_VIEW_JSON) {
		view_json("data", id, "data", d);
		return;
	}
	json_decref(d);
}

int cli_view_event(const struct cli_sse_event *ev, void *arg)
{
	struct cli_view *v = arg;

	if (strcmp(ev->type, "progress") == 0) {
		view_progress(v, ev->data, ev->data_len, ev->id);
		return 0;
	}
	if (strcmp(ev->type, "data") == 0) {
		view_data(v, ev->data, ev->data_len, ev->id);
		return 0;
	}
	if (strcmp(ev->type, "message") != 0)
		return 0;
	if (strcmp(ev->data, "[DONE]") == 0)
		v->end = END_DONE;
	else if (strcmp(ev->data, "[CANCELLED]") == 0)
		v->end = END_CANCELLED;
	else if (strncmp(ev->data, "[ERROR]", 7) == 0) {
		const char *m = ev->data + 7;
		while (*m == ' ')
			m++;
		v->end = strncmp(m, FOLLOW_INTERRUPTED, strlen(FOLLOW_INTERRUPTED)) == 0
			     ? END_INTERRUPTED
			     : END_ERROR;
		free(v->error);
		v->error = xstrdup(m[0] ? m : "the job failed");
	} else {
		view_narration(v, ev->data, ev->id);
		return 0;
	}
	return v->end;
}

/* Shows the end and returns the exit status. */
int cli_view_finish(struct cli_view *v, const char *job_id, struct err *e)
{
	if (v->end == END_DONE && v->mode == CLI_VIEW_BARS) {
		for (size_t i = v->first_live; i < v->nbars; i++)
			view_bar_finish(v, &v->bars[i]);
		v->dirty = 1;
	}
	view_close(v);
	switch (v->end) {
	case END_DONE:
		if (v->mode == CLI_VIEW_JSON)
			view_json("done", NULL, NULL, NULL);
		else if (v->mode == CLI_VIEW_LINES)
			printf("done\n");
		return CLI_EXIT_OK;
	case END_CANCELLED:
		if (v->mode == CLI_VIEW_JSON)
			view_json("cancelled", NULL, NULL, NULL);
		fprintf(stderr, "rbee-hive: job %s was cancelled\n", job_id);
		return CLI_EXIT_CANCELLED;
	case END_INTERRUPTED:
		if (v->mode == CLI_VIEW_JSON)
			view_json("interrupted", NULL, "message", json_string(v->error));
		/* A download goes back to the daemon's queue; any other job must be asked again. */
		if (strcmp(v->what, "pull") == 0)
			fprintf(
			    stderr,
			    "rbee-hive: the daemon stopped; job %s resumes when the daemon is back "
			    "(rbee-hive jobs shows it)\n",
			    job_id);
		else
			fprintf(stderr,
				"rbee-hive: the daemon stopped before %s ended; run it again when "
				"the daemon is back\n",
				v->what);
		return CLI_EXIT_INTERRUPTED;
	default:
		if (v->mode == CLI_VIEW_JSON)
			view_json("error", NULL, "message", json_string(v->error ? v->error : ""));
		return err_set(e, ERR_INTERNAL, "%s failed: %s", v->what,
			       v->error ? v->error : "the job failed");
	}
}

/*
 * After Ctrl-C: asks the daemon to cancel, then reads the stream a few more
 * seconds for the terminal line, which says how the job really ended.
 */
static int follow_cancel(struct cli_client *c, struct cli_view *v, struct cli_sse *p,
			 const char *job_id, const char *sse_url, struct err *e)
{
	char *seg = cli_url_segment(job_id);
	char *path = xasprintf("/v1/jobs/%s/cancel", seg);
	json_t *ans = NULL;
	long status = 0;

	view_close(v);
	v->cancelling = 1;
	fprintf(stderr, "cancelling %s ...\n", job_id);
	int rc = cli_client_call(c, "POST", path, NULL, &status, &ans, e);
	free(path);
	free(seg);
	if (rc == 0 && status != 200 && status != 409)
		rc = cli_client_error(c, status, ans, e);
	json_decref(ans);
	if (rc < 0)
		return err_prefix(e, "could not cancel job %s", job_id);

	v->deadline = now_ms() + FOLLOW_CANCEL_WAIT_MS;
	rc = cli_client_stream(c, sse_url, p, &v->deadline_hit, view_tick, v, e);
	if (rc > 0)
		return cli_view_finish(v, job_id, e);
	fprintf(stderr, "rbee-hive: job %s did not confirm the cancel within %d s\n", job_id,
		FOLLOW_CANCEL_WAIT_MS / 1000);
	return CLI_EXIT_CANCELLED;
}

struct cli_view *cli_view_new(enum cli_view_mode mode, const char *what)
{
	struct cli_view *v = xcalloc(1, sizeof(*v));
	v->what = what;
	v->eta_s = -1;
	v->rate_bps = -1;
	v->mode = mode;
	v->utf8 = locale_utf8();
	return v;
}

void cli_view_free(struct cli_view *v)
{
	if (!v)
		return;
	for (size_t i = 0; i < v->nbars; i++)
		free(v->bars[i].name);
	free(v->bars);
	free(v->error);
	free(v);
}

/*
 * The stream's last line carries the reason in words only; the job itself
 * says which code it failed with, so that --json names it ("not_found",
 * "gated") rather than "internal". Left as it is when the daemon does not say.
 */
static void follow_error_code(struct cli_client *c, const char *job_id, struct err *e)
{
	char *seg = cli_url_segment(job_id);
	char *path = xasprintf("/v1/jobs/%s", seg);
	json_t *ans = NULL;
	long status = 0;
	struct err ignored = {0};
	if (cli_client_call(c, "GET", path, NULL, &status, &ans, &ignored) == 0 && status == 200) {
		const char *name = cli_jstr(ans, "error_code");
		if (name)
			e->code = err_code_of(name);
	}
	json_decref(ans);
	free(path);
	free(seg);
}

int cli_follow(struct cli_client *c, const char *job_id, const char *sse_url,
	       const struct cli_opts *o, const char *what, struct err *e)
{
	struct cli_view *v = cli_view_new(o->json		  ? CLI_VIEW_JSON
					  : isatty(STDOUT_FILENO) ? CLI_VIEW_BARS
								  : CLI_VIEW_LINES,
					  what);
	struct cli_sse *p = xmalloc(sizeof(*p));
	struct sigaction sa, old;
	int failures = 0;
	int rc;

	cli_sse_init(p, cli_view_event, v);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = follow_on_sigint;
	sigemptyset(&sa.sa_mask);
	cli_interrupted = 0;
	sigaction(SIGINT, &sa, &old);

	for (;;) {
		char before[CLI_SSE_ID_MAX + 1];
		snprintf(before, sizeof(before), "%s", p->last_id);
		rc = cli_client_stream(c, sse_url, p, &cli_interrupted, view_tick, v, e);
		if (rc > 0) {
			rc = cli_view_finish(v, job_id, e);
			if (v->end == END_ERROR)
				follow_error_code(c, job_id, e);
			break;
		}
		if (rc == CLI_STREAM_INTERRUPTED) {
			rc = follow_cancel(c, v, p, job_id, sse_url, e);
			break;
		}
		/* A stream that ends early is resumed; one that makes no headway is given up. */
		int fatal = rc < 0 && rc != ERR_NETWORK && rc != ERR_TIMEOUT;
		if (strcmp(before, p->last_id) != 0)
			failures = 0;
		if (fatal || ++failures > FOLLOW_RECONNECTS) {
			view_close(v);
			if (rc == CLI_STREAM_EOF)
				rc = err_set(e, ERR_NETWORK,
					     "the event stream of job %s ended before the job did",
					     job_id);
			break;
		}
		for (int i = 0; i < failures * 4 && !cli_interrupted; i++)
			sleep_ms(50);
	}

	sigaction(SIGINT, &old, NULL);
	cli_view_free(v);
	free(p);
	return rc;
}
