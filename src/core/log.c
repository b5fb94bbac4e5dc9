#include "core/log.h"

#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "core/err.h"

static atomic_int log_level_cur = LOG_INFO;
static atomic_int log_json;

static const char *const log_names[] = {
    [LOG_ERROR] = "error", [LOG_WARN] = "warn", [LOG_INFO] = "info", [LOG_DEBUG] = "debug"};

int log_level_parse(const char *s, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++) {
		if (s && strcasecmp(s, log_names[i]) == 0) {
			*out = (enum log_level)i;
			return 0;
		}
	}
	return ERR_INVALID;
}

void log_set_level(enum log_level lvl)
{
	atomic_store(&log_level_cur, lvl);
}

void log_init_from_env(void)
{
	enum log_level lvl;
	if (log_level_parse(getenv("RBEE_HIVE_LOG"), &lvl) == 0)
		log_set_level(lvl);
}

int log_enabled(enum log_level lvl)
{
	return (int)lvl <= atomic_load(&log_level_cur);
}

void log_set_json(int on)
{
	atomic_store(&log_json, on != 0);
}

/* One line as a JSON object; jansson escapes the message, so it stays one line. */
static void log_write_json(const char *time, enum log_level lvl, const char *job, const char *msg)
{
	json_t *o = json_pack("{s:s,s:s}", "time", time, "level", log_names[lvl]);
	if (job)
		json_object_set_new(o, "job", json_string(job));
	/* A message cut inside a UTF-8 sequence is not a JSON string: keep its bytes escaped. */
	json_t *m = json_string(msg);
	json_object_set_new(o, "msg", m ? m : json_string("(message not UTF-8)"));
	char *s = json_dumps(o, JSON_COMPACT);
	json_decref(o);
	if (!s)
		return;
	size_t n = strlen(s);
	s[n] = '\n';
	ssize_t w = write(STDERR_FILENO, s, n + 1);
	(void)w;
	free(s);
}

void log_msg(enum log_level lvl, const char *job, const char *fmt, ...)
{
	if (!log_enabled(lvl))
		return;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	char line[2048];
	size_t n = 0;
	struct timespec ts;
	struct tm tm;
	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	n += strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
	n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ", ts.tv_nsec / 1000000);
	if (atomic_load(&log_json)) {
		log_write_json(line, lvl, job, msg);
		return;
	}
	n += (size_t)snprintf(line + n, sizeof(line) - n, " level=%s", log_names[lvl]);
	if (job)
		n += (size_t)snprintf(line + n, sizeof(line) - n, " job=%s", job);
	n += (size_t)snprintf(line + n, sizeof(line) - n, " msg=\"");
	/* Escape so one event stays one line whatever the message holds. */
	for (const char *p = msg; *p && n < sizeof(line) - 8; p++) {
		unsigned char c = (unsigned char)*p;
		if (c == '"' || c == '\\') {
			line[n++] = '\\';
			line[n++] = (char)c;
		} else if (c == '\n') {
			line[n++] = '\\';
			line[n++] = 'n';
		} else if (c < 0x20 || c == 0x7f) {
			n += (size_t)snprintf(line + n, sizeof(line) - n, "\\x%02x", c);
		} else {
			line[n++] = (char)c;
		}
	}
	line[n++] = '"';
	line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, n);
	(void)w;
}
