#include "cli/fmt.h"

#include <stdio.h>
#include <string.h>

#include "core/util.h"

void cli_fmt_rate(char *buf, size_t size, double bps)
{
	char s[CLI_FMT_SHORT];

	if (bps < 0) {
		snprintf(buf, size, "-");
		return;
	}
	fmt_size(s, sizeof(s), (uint64_t)(bps + 0.5));
	snprintf(buf, size, "%s/s", s);
}

void cli_fmt_eta(char *buf, size_t size, long long secs)
{
	if (secs < 0) {
		snprintf(buf, size, "--:--");
		return;
	}
	if (secs >= 100LL * 3600) {
		snprintf(buf, size, ">99h");
		return;
	}
	if (secs >= 3600)
		snprintf(buf, size, "%lld:%02lld:%02lld", secs / 3600, secs / 60 % 60, secs % 60);
	else
		snprintf(buf, size, "%lld:%02lld", secs / 60, secs % 60);
}

void cli_fmt_age(char *buf, size_t size, long long secs)
{
	if (secs < 0)
		snprintf(buf, size, "-");
	else if (secs < 5)
		snprintf(buf, size, "just now");
	else if (secs < 60)
		snprintf(buf, size, "%llds ago", secs);
	else if (secs < 3600)
		snprintf(buf, size, "%lldm ago", secs / 60);
	else if (secs < 86400)
		snprintf(buf, size, "%lldh ago", secs / 3600);
	else
		snprintf(buf, size, "%lldd ago", secs / 86400);
}

size_t cli_fmt_cols(const char *s)
{
	size_t n = 0;
	for (; *s; s++) {
		if (((unsigned char)*s & 0xC0) != 0x80)
			n++;
	}
	return n;
}

/* A bounded appender: output past the end is dropped, the buffer stays terminated. */
struct line {
	char *buf;
	size_t size;
	size_t len;
};

static void line_put(struct line *l, const char *s, size_t n)
{
	if (l->size == 0)
		return;
	if (n > l->size - 1 - l->len)
		n = l->size - 1 - l->len;
	memcpy(l->buf + l->len, s, n);
	l->len += n;
	l->buf[l->len] = '\0';
}

static void line_str(struct line *l, const char *s)
{
	line_put(l, s, strlen(s));
}

static void line_repeat(struct line *l, const char *s, int times)
{
	for (int i = 0; i < times; i++)
		line_str(l, s);
}

/* The tail of name that fits in cols columns, led by an ellipsis when cut, padded to cols. */
static void line_name(struct line *l, const char *name, size_t cols, int utf8)
{
	size_t have = cli_fmt_cols(name);
	if (have <= cols) {
		line_str(l, name);
		line_repeat(l, " ", (int)(cols - have));
		return;
	}
	const char *dots = utf8 ? "\xe2\x80\xa6" : "~";
	if (cols == 0)
		return;
	line_str(l, dots);
	size_t skip = have - (cols - 1);
	const char *p = name;
	while (*p && skip > 0) {
		p++;
		if (((unsigned char)*p & 0xC0) != 0x80)
			skip--;
	}
	line_str(l, p);
}

size_t cli_bar_render(char *buf, size_t size, const struct cli_bar *b, int width, int utf8)
{
	struct line l = {buf, size, 0};
	char right[160], done[CLI_FMT_SHORT], total[CLI_FMT_SHORT], tail[CLI_FMT_SHORT];
	char count[32] = "";
	int pct = 0;
	const char *phase = b->phase ? b->phase : "downloading";

	if (size > 0)
		buf[0] = '\0';
	if (b->total > 0)
		pct = (int)(b->done >= b->total ? 100 : b->done * 100 / b->total);
	if (b->finished)
		pct = 100;
	fmt_size(done, sizeof(done), b->finished && b->total ? b->total : b->done);
	if (b->total > 0)
		fmt_size(total, sizeof(total), b->total);
	else
		snprintf(total, sizeof(total), "?");

	/* Fixed-width fields keep the bar still while the numbers change. */
	if (b->finished) {
		snprintf(tail, sizeof(tail), "%-17s", "done");
	} else if (strcmp(phase, "downloading") == 0) {
		char rate[CLI_FMT_SHORT], eta[CLI_FMT_SHORT];
		cli_fmt_rate(rate, sizeof(rate), b->rate_bps);
		cli_fmt_eta(eta, sizeof(eta), b->eta_s);
		snprintf(tail, sizeof(tail), "%9s %7s", rate, eta);
	} else {
		snprintf(tail, sizeof(tail), "%-17s", phase);
	}
	if (b->index > 0 && b->count > 1)
		snprintf(count, sizeof(count), "%d/%d ", b->index, b->count);
	snprintf(right, sizeof(right), "%s%3d%% %7s/%-7s %s", count, pct, done, total, tail);

	int avail = width - 1 - (int)strlen(right) - 1;
	int name_w, bar_w;
	if (avail < 16) {
		/* Too narrow for a bar: the name gets what is left, possibly nothing. */
		name_w = avail > 0 ? avail : 0;
		bar_w = 0;
	} else {
		/* The name gets two thirds (it tells the files apart), the bar the rest. */
		bar_w = avail / 3 < 10 ? 10 : avail / 3;
		name_w = avail - bar_w - 3;
		if (name_w > 40)
			name_w = 40;
		bar_w = avail - name_w - 3;
		if (bar_w > 40)
			bar_w = 40;
	}

	if (name_w > 0) {
		line_name(&l, b->name, (size_t)name_w, utf8);
		line_str(&l, " ");
	}
	if (bar_w > 0) {
		/* Eighths of a cell, so that a large file visibly moves at 1 %. */
		static const char *const eighths[] = {
		    "",
		    "\xe2\x96\x8f",
		    "\xe2\x96\x8e",
		    "\xe2\x96\x8d",
		    "\xe2\x96\x8c",
		    "\xe2\x96\x8b",
		    "\xe2\x96\x8a",
		    "\xe2\x96\x89",
		};
		double frac = b->finished ? 1.0
			      : b->total  ? (double)(b->done < b->total ? b->done : b->total) /
					       (double)b->total
					 : 0.0;
		int fill8 = (int)(frac * bar_w * 8);
		int full = fill8 / 8, part = utf8 ? fill8 % 8 : 0;
		line_str(&l, utf8 ? "\xe2\x96\x95" : "[");
		line_repeat(&l, utf8 ? "\xe2\x96\x88" : "#", full);
		line_str(&l, eighths[part]);
		line_repeat(&l, utf8 ? " " : "-", bar_w - full - (part ? 1 : 0));
		line_str(&l, utf8 ? "\xe2\x96\x8f" : "]");
		line_str(&l, " ");
	}
	line_str(&l, right);
	/* Trailing padding is noise in logs and in tests. */
	while (l.len > 0 && buf[l.len - 1] == ' ')
		buf[--l.len] = '\0';
	return l.len;
}
