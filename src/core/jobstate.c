#include "core/jobstate.h"

#include <string.h>

#include "core/err.h"

static const char *const job_state_names[JOB__STATES] = {
    [JOB_QUEUED] = "queued", [JOB_RUNNING] = "running",	    [JOB_SUCCEEDED] = "succeeded",
    [JOB_FAILED] = "failed", [JOB_CANCELLED] = "cancelled", [JOB_INTERRUPTED] = "interrupted",
};

const char *job_state_name(enum job_state s)
{
	if ((int)s < 0 || s >= JOB__STATES)
		return "unknown";
	return job_state_names[s];
}

int job_state_parse(const char *s, enum job_state *out)
{
	for (int i = 0; s && i < JOB__STATES; i++) {
		if (strcmp(s, job_state_names[i]) == 0) {
			*out = (enum job_state)i;
			return 0;
		}
	}
	return ERR_INVALID;
}

int job_state_final(enum job_state s)
{
	return s == JOB_SUCCEEDED || s == JOB_FAILED || s == JOB_CANCELLED || s == JOB_INTERRUPTED;
}
