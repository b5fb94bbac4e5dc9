/*
 * cli_fmt: how the CLI shows numbers to people (sizes come from fmt_size()
 * in core/util.h): rates ("38.5 MB/s"), times left ("0:42", "1:02:03"), ages
 * ("3m ago") and one progress bar line. Pure functions over caller buffers,
 * so they are unit-tested without a terminal.
 */
#ifndef RBEE_CLI_FMT_H
#define RBEE_CLI_FMT_H

#include <stddef.h>
#include <stdint.h>

/* Buffers of this size hold any output of the formatters below except the bar. */
#define CLI_FMT_SHORT 32

/* A rate in bytes per second: "12.3 MB/s"; "-" when not known (negative). */
void cli_fmt_rate(char *buf, size_t size, double bps);
/* Seconds left as m:ss or h:mm:ss; "--:--" when not known (negative). */
void cli_fmt_eta(char *buf, size_t size, long long secs);
/* An age in seconds: "just now", "12s ago", "3m ago", "5h ago", "2d ago"; "-" if negative. */
void cli_fmt_age(char *buf, size_t size, long long secs);

/* One file's progress, as shown by one bar line. */
struct cli_bar {
	const char *name;  /* file name (shown with its head cut off when too long) */
	const char *phase; /* "downloading", "verifying", ... ; NULL reads as downloading */
	uint64_t done;
	uint64_t total;	 /* 0: not known yet */
	double rate_bps; /* negative: not known */
	long long eta_s; /* negative: not known */
	int index;	 /* 1-based file number; 0 hides "k/n" */
	int count;
	int finished;
};

/*
 * Renders b into buf as one line of at most width-1 columns (the last column
 * is left free so no terminal wraps): name, "k/n", the bar, percent,
 * done/total, rate and time left. utf8 selects block characters over ASCII.
 * Returns the number of bytes written (buf is always NUL-terminated).
 */
size_t cli_bar_render(char *buf, size_t size, const struct cli_bar *b, int width, int utf8);

/* Display columns of a UTF-8 string (one per code point; good enough for file names). */
size_t cli_fmt_cols(const char *s);

#endif
