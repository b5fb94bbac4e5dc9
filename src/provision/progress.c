/*
 * progress: what one provision() call reports and checks on its way, shared
 * by the provisioner, the vendors and the publishing code: the progress
 * events (throttled while bytes move), narration lines, the cancel check,
 * and the building of a plan's file list.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/cancel.h"
#include "core/log.h"
#include "core/util.h"
#include "provision/vendor.h"

#define PROV_EMIT_INTERVAL_MS 200

static void emit(struct prov_job *j)
{
	const struct prov_events *ev = j->req->events;
	if (!ev || !ev->progress)
		return;
	struct prov_progress p = {
	    .phase = j->phase,
	    .file = j->file,
	    .files_done = j->files_done,
	    .files_total = j->files_total,
	    .bytes_done = j->bytes_before + j->file_bytes,
	    .bytes_total = j->bytes_total,
	    .file_bytes_done = j->file ? j->file_bytes : 0,
	    .file_bytes_total = j->file ? j->file_size : 0,
	    .rate_bps = j->rate_bps,
	    .eta_s = -1,
	};
	if (p.bytes_done > p.bytes_total && p.bytes_total)
		p.bytes_done = p.bytes_total;
	if (p.file_bytes_done > p.file_bytes_total && p.file_bytes_total)
		p.file_bytes_done = p.file_bytes_total;
	if (j->rate_bps > 1 && j->bytes_total >= p.bytes_done)
		p.eta_s = (double)(j->bytes_total - p.bytes_done) / j->rate_bps;
	ev->progress(ev->arg, &p);
	j->last_emit_ms = now_ms();
}

void prov_job_phase(struct prov_job *j, enum prov_phase ph, const char *file)
{
	j->phase = ph;
	j->file = file;
	if (ph != PROV_DOWNLOADING && ph != PROV_UPLOADING)
		j->rate_bps = 0;
	emit(j);
}

void prov_job_bytes(struct prov_job *j, uint64_t file_done, double rate_bps, int force)
{
	j->rate_bps = rate_bps;
	j->file_bytes = file_done;
	if (!force && now_ms() - j->last_emit_ms < PROV_EMIT_INTERVAL_MS)
		return;
	emit(j);
}

void prov_narrate(struct prov_job *j, const char *fmt, ...)
{
	const struct prov_events *ev = j->req->events;
	char line[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	log_msg(LOG_INFO, j->req->job_id, "%s", line);
	if (ev && ev->narrate)
		ev->narrate(ev->arg, line);
}

int prov_check_cancel(struct prov_job *j, struct err *e)
{
	if (j->req->cancel && cancel_is_set(j->req->cancel))
		return err_set(e, ERR_CANCELLED, "cancelled");
	return 0;
}

void prov_plan_cleanup(struct prov_plan *p)
{
	if (!p)
		return;
	for (size_t i = 0; i < p->n; i++) {
		free(p->files[i].path);
		free(p->files[i].url);
	}
	free(p->files);
	p->files = NULL;
	p->n = 0;
	if (p->auth_token)
		explicit_bzero(p->auth_token, strlen(p->auth_token));
	free(p->auth_token);
	free(p->auth_origin);
	p->auth_token = p->auth_origin = NULL;
	p->auth_basic = 0;
}

struct prov_file *prov_plan_add(struct prov_plan *p, const char *path, uint64_t size,
				int size_known, const char *sha256, const char *url)
{
	p->files = xrealloc(p->files, (p->n + 1) * sizeof(*p->files));
	struct prov_file *f = &p->files[p->n++];
	memset(f, 0, sizeof(*f));
	f->path = xstrdup(path);
	f->size = size;
	f->size_known = size_known;
	snprintf(f->sha256, sizeof(f->sha256), "%s", sha256 ? sha256 : "");
	f->url = url ? xstrdup(url) : NULL;
	p->total += size;
	return f;
}
