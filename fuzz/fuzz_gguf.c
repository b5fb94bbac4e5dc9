/*
 * fuzz_gguf: the GGUF header reader (store/gguf.h), on the input as a memory
 * buffer and as a file (a memfd read through its /proc path, so the pread
 * window code runs too).
 *
 * Invariants: both readers agree on the result and the facts; accepted
 * facts have a supported version, bounded counts, text fields that are
 * terminated, printable UTF-8, and a quantization name that is the one of
 * general.file_type.
 */
#include <sys/mman.h>
#include <unistd.h>

#include "fuzz.h"

#include "core/caps.h"
#include "core/err.h"
#include "store/gguf.h"

static int text_ok(const char *s, size_t size)
{
	if (memchr(s, '\0', size) == NULL)
		return 0;
	for (const unsigned char *p = (const unsigned char *)s; *p; p++)
		if (*p < 0x20 || *p == 0x7f)
			return 0;
	json_t *j = json_string(s);
	int ok = j != NULL;
	json_decref(j);
	return ok;
}

static void check_facts(const struct gguf_facts *f, size_t size)
{
	FUZZ_CHECK(size >= 24);
	FUZZ_CHECK(f->version == 2 || f->version == 3);
	FUZZ_CHECK(f->kv_count <= CAP_GGUF_KV);
	FUZZ_CHECK(text_ok(f->architecture, sizeof(f->architecture)));
	FUZZ_CHECK(text_ok(f->name, sizeof(f->name)));
	FUZZ_CHECK(text_ok(f->size_label, sizeof(f->size_label)));
	FUZZ_CHECK(text_ok(f->quantization, sizeof(f->quantization)));
	const char *q = f->file_type == UINT32_MAX ? NULL : gguf_file_type_name(f->file_type);
	FUZZ_CHECK(strcmp(f->quantization, q ? q : "") == 0);
	FUZZ_CHECK(f->context_length == 0 || f->architecture[0]);
}

static int read_as_file(const uint8_t *data, size_t size, struct gguf_facts *f, struct err *e)
{
	int fd = memfd_create("fuzz-gguf", MFD_CLOEXEC);
	FUZZ_CHECK(fd >= 0);
	FUZZ_CHECK(size == 0 || write(fd, data, size) == (ssize_t)size);
	char path[64];
	snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
	int rc = gguf_read_file(path, f, e);
	close(fd);
	return rc;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct gguf_facts f, ff;
	struct err e = {0}, ef = {0};
	int rc = gguf_read_mem(data, size, &f, &e);
	int rcf = read_as_file(data, size, &ff, &ef);
	FUZZ_CHECK(rc == rcf);
	if (rc != 0) {
		FUZZ_CHECK(rc == ERR_CORRUPT && e.code == ERR_CORRUPT && fuzz_err_ok(&e));
		FUZZ_CHECK(fuzz_err_ok(&ef));
		return 0;
	}
	FUZZ_CHECK(gguf_is_gguf(data, size));
	FUZZ_CHECK(memcmp(&f, &ff, sizeof(f)) == 0);
	check_facts(&f, size);
	return 0;
}
