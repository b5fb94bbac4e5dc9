/*
 * gguf: reads the facts rbee-hive shows about a GGUF file from its header
 * (magic "GGUF", version, tensor count, key/values). Every length read from
 * the file is untrusted and bounded by core/caps.h before anything is
 * allocated; a truncated or lying file is ERR_CORRUPT with the offset and
 * what was being read.
 */
#ifndef RBEE_STORE_GGUF_H
#define RBEE_STORE_GGUF_H

#include <stddef.h>
#include <stdint.h>

struct err;

struct gguf_facts {
	uint32_t version;
	uint64_t tensor_count;
	uint64_t kv_count;
	char architecture[64];	 /* general.architecture */
	char name[256];		 /* general.name */
	char quantization[32];	 /* from general.file_type: "Q4_K_M", "F16", ... */
	uint32_t file_type;	 /* general.file_type as stored; UINT32_MAX if absent */
	uint64_t parameters;	 /* general.parameter_count, else 0 */
	char size_label[32];	 /* general.size_label ("7B"), else "" */
	uint64_t context_length; /* <arch>.context_length, else 0 */
	uint32_t split_count;	 /* split.count, else 0 */
	uint32_t split_no;	 /* split.no, else 0 */
};

/* Reads the facts of the GGUF file at path. */
int gguf_read_file(const char *path, struct gguf_facts *f, struct err *e);
/* Reads the facts from a buffer holding (at least) the header. */
int gguf_read_mem(const void *buf, size_t len, struct gguf_facts *f, struct err *e);
/* 1 if the first 4 bytes are the GGUF magic. */
int gguf_is_gguf(const void *buf, size_t len);
/* Quantization name of a general.file_type value ("Q4_K_M"), or NULL. */
const char *gguf_file_type_name(uint32_t ft);

#endif
