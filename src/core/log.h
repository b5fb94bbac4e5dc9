/*
 * log: one line per event on stderr, in logfmt:
 *   2026-11-29T17:40:34.123Z level=info job=job-1a2b msg="pull started"
 * Level from --log-level or RBEE_HIVE_LOG (error, warn, info, debug).
 * With log_set_json(1) (serve --json) each line is one JSON object instead:
 *   {"time":"2026-11-29T17:40:34.123Z","level":"info","job":"job-1a2b","msg":"pull started"}
 * Thread-safe: each line is formatted into a local buffer and written with
 * one write(2). Never pass a secret to these functions.
 */
#ifndef RBEE_CORE_LOG_H
#define RBEE_CORE_LOG_H

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

/* Parses "error|warn|info|debug"; returns 0 or ERR_INVALID. */
int log_level_parse(const char *s, enum log_level *out);
void log_set_level(enum log_level lvl);
/* Reads RBEE_HIVE_LOG; unknown values leave the level as it is. */
void log_init_from_env(void);
int log_enabled(enum log_level lvl);
/* 1: every later line is a JSON object ("job" only when there is one); 0: logfmt. */
void log_set_json(int on);

/* job may be NULL. The message is quoted and escaped. */
void log_msg(enum log_level lvl, const char *job, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_error(...) log_msg(LOG_ERROR, NULL, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARN, NULL, __VA_ARGS__)
#define log_info(...) log_msg(LOG_INFO, NULL, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, NULL, __VA_ARGS__)

#endif
