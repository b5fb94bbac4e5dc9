/*
 * jobstate: the states of a job, one enum for the job registry (jobs/) and
 * for the catalog rows that keep jobs across restarts (store/), with the
 * names the API uses (docs/api.md).
 *
 * queued -> running -> succeeded | failed | cancelled; a daemon that stops
 * while a job is queued or running leaves it interrupted, and the next
 * start queues it again (or fails a job that cannot resume).
 */
#ifndef RBEE_CORE_JOBSTATE_H
#define RBEE_CORE_JOBSTATE_H

enum job_state {
	JOB_QUEUED = 0,
	JOB_RUNNING,
	JOB_SUCCEEDED,
	JOB_FAILED,
	JOB_CANCELLED,
	JOB_INTERRUPTED,
	JOB__STATES
};

/* "queued", "running", ...; "unknown" outside the enum. */
const char *job_state_name(enum job_state s);
/* Returns 0 or ERR_INVALID. */
int job_state_parse(const char *s, enum job_state *out);
/*
 * 1 for succeeded, failed, cancelled and interrupted: no worker moves such
 * a job on, so it counts towards the kept finished jobs and may be pruned
 * (an interrupted one is queued again only by the next start); 0 for
 * queued and running.
 */
int job_state_final(enum job_state s);

#endif
