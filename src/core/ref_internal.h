/*
 * What the files of core's ref parser share (ref.c, ref_oci.c); internal
 * to them. The public interface is core/ref.h.
 */
#ifndef RBEE_CORE_REF_INTERNAL_H
#define RBEE_CORE_REF_INTERNAL_H

#include <stddef.h>

#include "core/ref.h"

struct err;

/* Sets e to "model ref 'S': <fmt>" with ERR_UNPROCESSABLE; returns that code. */
int ref_fail(struct err *e, const char *s, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Passes up a parse.h message as a ref error: "model ref 'S': <label><msg>". */
int ref_fail_from(struct err *e, const char *s, const char *label);
/*
 * The 64 hex digits at hex, stored lowercase in r->sha256; what names the
 * form in messages ("#sha256=", "@sha256:").
 */
int ref_parse_digest(const char *s, const char *hex, const char *what, struct model_ref *r,
		     struct err *e);

/* REGISTRY/NAME[:TAG|@sha256:HEX] starting at reg (also docker.io/NAME). */
int ref_parse_oci(const char *s, const char *reg, struct model_ref *r, struct err *e);
/* The scheme table's entries for oci:// and ollama:. */
int ref_parse_oci_scheme(const char *s, size_t scheme_len, struct model_ref *r, struct err *e);
int ref_parse_ollama_scheme(const char *s, size_t scheme_len, struct model_ref *r, struct err *e);
/* An OCI or Ollama query names its own id, or any tag of its repository when it names none. */
int ref_matches_oci(const struct model_ref *q, const char *id);

#endif
