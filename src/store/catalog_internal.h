/*
 * catalog_internal: what the files of the catalog share and nothing else
 * includes. catalog.c holds the schema, its migrations, opening and the SQL
 * helpers below; catalog_model.c writes models (put, status, delete, and
 * what a removal leaves); catalog_read.c reads them (get, find, list,
 * totals); catalog_blob.c keeps the blob records; catalog_partial.c the
 * resume ranges of partial blobs, and catalog_fresh.c the fresh ones, kept
 * in files beside the database; catalog_job.c the job rows.
 *
 * Every helper takes the connection it works on; the only state kept is
 * the connection's own (its fresh-state folder and slot turn, in struct
 * catalog), so the threading rule of catalog.h (one connection, one thread
 * at a time) is the only one.
 */
#ifndef RBEE_STORE_CATALOG_INTERNAL_H
#define RBEE_STORE_CATALOG_INTERNAL_H

#include <sqlite3.h>
#include <stddef.h>
#include <stdint.h>

#include "core/caps.h"
#include "store/catalog.h"

struct err;

struct catalog {
	sqlite3 *db;
	char *path;
	int fresh_dir;	     /* resume-fresh/ beside the database, once opened; else -1 */
	unsigned fresh_turn; /* the slot of the next fresh state written (catalog_fresh.c) */
};

/* Longest model or job id we store. */
#define CATALOG_ID_MAX 2048

/* Stored ranges and records: 64-bit little-endian numbers. */
void catalog_put_le64(unsigned char *p, uint64_t v);
uint64_t catalog_get_le64(const unsigned char *p);
/* The most bytes of ranges a fresh state holds (16 a range). */
#define CATALOG_FRESH_RANGES_MAX (CAP_XFER_RANGES * 16)
/*
 * Fresh states (catalog_fresh.c): ranges as the catalog stores them (16
 * bytes each). write puts them over the partial's file without a sync
 * (1 when it made the file, else 0 or an error);
 * read gives the latest whole one of the running boot in *ranges (free()
 * it), or ERR_NOT_FOUND (and removes a file that holds none); remove
 * drops the file.
 */
int catalog_fresh_write(struct catalog *c, const char *repo_dir, const char *sha256, uint64_t total,
			const unsigned char *ranges, size_t len, struct err *e);
int catalog_fresh_read(struct catalog *c, const char *repo_dir, const char *sha256, uint64_t *total,
		       unsigned char **ranges, size_t *len);
void catalog_fresh_remove(struct catalog *c, const char *repo_dir, const char *sha256);
/* The file name of a partial's fresh state, and one record of it in out (tests). */
void catalog_fresh_name(const char *repo_dir, const char *sha256, char out[65]);
size_t catalog_fresh_record(const char *boot, uint64_t seq, uint64_t total,
			    const unsigned char *ranges, size_t len, unsigned char *out);

/* Maps a SQLite result to an ERR_* code and says which catalog and step failed. */
int catalog_fail(struct catalog *c, int src, const char *what, struct err *e);
/* Runs SQL without parameters or results. */
int catalog_exec(struct catalog *c, const char *sql, const char *what, struct err *e);
int catalog_prepare(struct catalog *c, const char *sql, sqlite3_stmt **st, struct err *e);
/*
 * Prepares sql and binds the strings keys[0..n) to ?1..?n (NULL binds "");
 * the caller finalizes *st.
 */
int catalog_prepare_keys(struct catalog *c, const char *sql, const char *const *keys, size_t n,
			 sqlite3_stmt **st, struct err *e);
/* Steps st once: 1 for a row, 0 when done, or catalog_fail(what). */
int catalog_step(struct catalog *c, sqlite3_stmt *st, const char *what, struct err *e);
/*
 * Prepares sql with the keys bound and steps once: 1 with the first row in
 * *st, 0 when there is none, or an error. The caller finalizes *st (NULL
 * when preparing failed) in every case.
 */
int catalog_row(struct catalog *c, const char *sql, const char *const *keys, size_t n,
		sqlite3_stmt **st, const char *what, struct err *e);
/* Prepares, binds the keys, steps to the end and finalizes: a change of rows. */
int catalog_run_keys(struct catalog *c, const char *sql, const char *const *keys, size_t n,
		     const char *what, struct err *e);
/* Reads the integer of the first column of the one row sql gives, with the keys bound. */
int catalog_query_int(struct catalog *c, const char *sql, const char *const *keys, size_t n,
		      int64_t *v, const char *what, struct err *e);
/*
 * Makes the commits so far durable that were made with synchronous=NORMAL:
 * a passive checkpoint, which syncs the WAL (and the database after it)
 * without the write lock, so other connections commit meanwhile. While
 * another connection checkpoints (busy), a later checkpoint syncs them.
 */
int catalog_sync_wal(struct catalog *c, struct err *e);
int catalog_begin_write(struct catalog *c, struct err *e);
int catalog_commit(struct catalog *c, struct err *e);
/* Ends an open transaction, if any, without its changes. */
void catalog_rollback(struct catalog *c);

/* Column i as a new string ("" for NULL) or into buf, truncated. */
char *catalog_col_str(sqlite3_stmt *st, int i);
void catalog_col_buf(sqlite3_stmt *st, int i, char *buf, size_t size);
/* Binds a copy of s (NULL: "") to parameter i. */
void catalog_bind_str(sqlite3_stmt *st, int i, const char *s);

/* 1 for a name in blobs/: a sha256, or the git sha1 another program named it by. */
int catalog_check_blob_name(const char *s);
/* A model id: not empty, at most CATALOG_ID_MAX bytes. */
int catalog_check_id(const char *id, struct err *e);
/* The key of a blob or partial: what is "blob" or "partial" and names it in messages. */
int catalog_check_key(const char *repo_dir, const char *name, const char *what, struct err *e);

#endif
