#include "store/gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/caps.h"
#include "core/err.h"
#include "core/util.h"

/* llama.cpp's LLAMA_FTYPE values (the numbers that general.file_type stores). */
static const char *const gguf_ftype_names[] = {
    [0] = "F32",      [1] = "F16",	[2] = "Q4_0",	 [3] = "Q4_1",	  [7] = "Q8_0",
    [8] = "Q5_0",     [9] = "Q5_1",	[10] = "Q2_K",	 [11] = "Q3_K_S", [12] = "Q3_K_M",
    [13] = "Q3_K_L",  [14] = "Q4_K_S",	[15] = "Q4_K_M", [16] = "Q5_K_S", [17] = "Q5_K_M",
    [18] = "Q6_K",    [19] = "IQ2_XXS", [20] = "IQ2_XS", [21] = "Q2_K_S", [22] = "IQ3_XS",
    [23] = "IQ3_XXS", [24] = "IQ1_S",	[25] = "IQ4_NL", [26] = "IQ3_S",  [27] = "IQ3_M",
    [28] = "IQ2_S",   [29] = "IQ2_M",	[30] = "IQ4_XS", [31] = "IQ1_M",  [32] = "BF16",
    [36] = "TQ1_0",   [37] = "TQ2_0",
};

const char *gguf_file_type_name(uint32_t ft)
{
	if (ft >= sizeof(gguf_ftype_names) / sizeof(gguf_ftype_names[0]))
		return NULL;
	return gguf_ftype_names[ft];
}

int gguf_is_gguf(const void *buf, size_t len)
{
	return buf && len >= 4 && memcmp(buf, "GGUF", 4) == 0;
}

enum gguf_type {
	GT_U8 = 0,
	GT_I8 = 1,
	GT_U16 = 2,
	GT_I16 = 3,
	GT_U32 = 4,
	GT_I32 = 5,
	GT_F32 = 6,
	GT_BOOL = 7,
	GT_STRING = 8,
	GT_ARRAY = 9,
	GT_U64 = 10,
	GT_I64 = 11,
	GT_F64 = 12,
	GT__COUNT
};

struct gguf_type_info {
	const char *name;
	unsigned size;	 /* bytes of one fixed-size value; 0 for string and array */
	int is_unsigned; /* an unsigned integer (or bool) that fits a uint64_t */
	int is_signed;	 /* a signed integer */
};

static const struct gguf_type_info gguf_types[GT__COUNT] = {
    [GT_U8] = {"uint8", 1, 1, 0},      [GT_I8] = {"int8", 1, 0, 1},
    [GT_U16] = {"uint16", 2, 1, 0},    [GT_I16] = {"int16", 2, 0, 1},
    [GT_U32] = {"uint32", 4, 1, 0},    [GT_I32] = {"int32", 4, 0, 1},
    [GT_F32] = {"float32", 4, 0, 0},   [GT_BOOL] = {"bool", 1, 0, 0},
    [GT_STRING] = {"string", 0, 0, 0}, [GT_ARRAY] = {"array", 0, 0, 0},
    [GT_U64] = {"uint64", 8, 1, 0},    [GT_I64] = {"int64", 8, 0, 1},
    [GT_F64] = {"float64", 8, 0, 0},
};

/*
 * A bounded read cursor over either a memory buffer or a file. Reads go
 * through a small window that is refilled with pread, so a header with a
 * large tokenizer vocabulary costs a few hundred syscalls, and skipped values
 * (arrays, long strings) are never read at all. Every advance is checked
 * against the end of the data and against CAP_GGUF_HEADER.
 */
#define GGUF_WINDOW (64 * 1024)

struct gguf_cur {
	const char *name; /* shown in messages */
	struct err *e;
	const unsigned char *mem; /* memory source, or NULL */
	int fd;			  /* file source when mem is NULL */
	uint64_t size;		  /* bytes available */
	uint64_t off;		  /* next byte to read */
	unsigned char *win;	  /* file window */
	uint64_t win_off;
	size_t win_len;
};

/* Checks that n more bytes exist at the cursor; what names the value being read. */
static int cur_need(struct gguf_cur *c, uint64_t n, const char *what)
{
	if (n > CAP_GGUF_HEADER || c->off + n > CAP_GGUF_HEADER)
		return err_set(c->e, ERR_CORRUPT,
			       "GGUF '%s': %s at offset %llu runs past the header cap of %d bytes",
			       c->name, what, (unsigned long long)c->off, CAP_GGUF_HEADER);
	if (c->off + n > c->size)
		return err_set(c->e, ERR_CORRUPT, "GGUF '%s': truncated at offset %llu reading %s",
			       c->name, (unsigned long long)c->off, what);
	return 0;
}

static int cur_skip(struct gguf_cur *c, uint64_t n, const char *what)
{
	int rc = cur_need(c, n, what);
	if (rc)
		return rc;
	c->off += n;
	return 0;
}

static int cur_fill(struct gguf_cur *c)
{
	uint64_t want = c->size - c->off;
	if (want > GGUF_WINDOW)
		want = GGUF_WINDOW;
	size_t got = 0;
	while (got < want) {
		ssize_t r = pread(c->fd, c->win + got, (size_t)want - got, (off_t)(c->off + got));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return err_set(c->e, ERR_IO, "GGUF '%s': read at offset %llu: %s", c->name,
				       (unsigned long long)(c->off + got), strerror(errno));
		if (r == 0)
			return err_set(c->e, ERR_CORRUPT,
				       "GGUF '%s': file shrank while reading at offset %llu",
				       c->name, (unsigned long long)(c->off + got));
		got += (size_t)r;
	}
	c->win_off = c->off;
	c->win_len = got;
	return 0;
}

/* Copies n bytes (n <= GGUF_WINDOW) at the cursor into dst and advances. */
static int cur_read(struct gguf_cur *c, void *dst, size_t n, const char *what)
{
	int rc = cur_need(c, n, what);
	if (rc)
		return rc;
	if (c->mem) {
		memcpy(dst, c->mem + c->off, n);
	} else {
		if (c->off < c->win_off || c->off + n > c->win_off + c->win_len) {
			rc = cur_fill(c);
			if (rc)
				return rc;
		}
		memcpy(dst, c->win + (c->off - c->win_off), n);
	}
	c->off += n;
	return 0;
}

/* Reads a little-endian unsigned integer of size bytes (1..8). */
static int cur_le(struct gguf_cur *c, unsigned size, uint64_t *v, const char *what)
{
	unsigned char b[8];
	int rc = cur_read(c, b, size, what);
	if (rc)
		return rc;
	*v = 0;
	for (int i = (int)size - 1; i >= 0; i--)
		*v = *v << 8 | b[i];
	return 0;
}

static int cur_u32(struct gguf_cur *c, uint32_t *v, const char *what)
{
	uint64_t x = 0;
	int rc = cur_le(c, 4, &x, what);
	*v = (uint32_t)x;
	return rc;
}

static int cur_u64(struct gguf_cur *c, uint64_t *v, const char *what)
{
	return cur_le(c, 8, v, what);
}

/* Reads a string length and bounds it by CAP_GGUF_STRING. */
static int cur_strlen(struct gguf_cur *c, uint64_t *len, const char *what)
{
	uint64_t at = c->off;
	int rc = cur_u64(c, len, what);
	if (rc)
		return rc;
	if (*len > CAP_GGUF_STRING)
		return err_set(c->e, ERR_CORRUPT,
			       "GGUF '%s': %s %llu at offset %llu is over the cap of %d", c->name,
			       what, (unsigned long long)*len, (unsigned long long)at,
			       CAP_GGUF_STRING);
	return 0;
}

/*
 * Copies a string from the file into dst (size > 0) as valid, printable
 * UTF-8: control bytes and broken sequences become '?', and a sequence that
 * does not fit whole is dropped. The facts end up in JSON and on terminals.
 */
static void gguf_copy_text(char *dst, size_t size, const unsigned char *s, size_t n)
{
	size_t o = 0;
	for (size_t i = 0; i < n;) {
		size_t len = utf8_valid_len(s + i, n - i);
		int bad = len == 0 || (len == 1 && (s[i] < 0x20 || s[i] == 0x7f));
		size_t out = bad ? 1 : len;
		if (o + out >= size)
			break;
		if (bad)
			dst[o] = '?';
		else
			memcpy(dst + o, s + i, len);
		o += out;
		i += len ? len : 1;
	}
	dst[o] = '\0';
}

/* The context_length keys seen before general.architecture is known. */
#define GGUF_CTX_KEYS 8

struct gguf_ctx_key {
	char arch[64];
	uint64_t value;
};

struct gguf_parse {
	struct gguf_cur *c;
	struct gguf_facts *f;
	struct gguf_ctx_key ctx[GGUF_CTX_KEYS];
	size_t n_ctx;
};

enum gguf_want { W_TEXT, W_UINT };

/* Where a key we care about goes; anything else is skipped. */
struct gguf_key {
	const char *key;
	enum gguf_want want;
	size_t text_off; /* offset of the char array in gguf_facts (W_TEXT) */
	size_t text_size;
};

#define TEXT_FIELD(k, field)                                                                       \
	{                                                                                          \
		k, W_TEXT, offsetof(struct gguf_facts, field),                                     \
		    sizeof(((struct gguf_facts *)0)->field)                                        \
	}

static const struct gguf_key gguf_keys[] = {
    TEXT_FIELD("general.architecture", architecture),
    TEXT_FIELD("general.name", name),
    TEXT_FIELD("general.size_label", size_label),
    {"general.file_type", W_UINT, 0, 0},
    {"general.parameter_count", W_UINT, 0, 0},
    {"split.count", W_UINT, 0, 0},
    {"split.no", W_UINT, 0, 0},
};

static const char ctx_suffix[] = ".context_length";

/* Reads an integer value of type t as unsigned; *ok = 0 for a negative or non-integer. */
static int gguf_read_uint(struct gguf_cur *c, uint32_t t, uint64_t *v, int *ok)
{
	const struct gguf_type_info *ti = &gguf_types[t];
	int rc = cur_le(c, ti->size, v, "a value");
	if (rc)
		return rc;
	*ok = ti->is_unsigned || (ti->is_signed && !(*v >> (8 * ti->size - 1) & 1));
	return 0;
}

static void gguf_set_uint(struct gguf_parse *p, const char *key, uint64_t v)
{
	struct gguf_facts *f = p->f;
	if (strcmp(key, "general.file_type") == 0 && v < UINT32_MAX) {
		f->file_type = (uint32_t)v;
		const char *q = gguf_file_type_name(f->file_type);
		snprintf(f->quantization, sizeof(f->quantization), "%s", q ? q : "");
	} else if (strcmp(key, "general.parameter_count") == 0) {
		f->parameters = v;
	} else if (strcmp(key, "split.count") == 0 && v <= UINT32_MAX) {
		f->split_count = (uint32_t)v;
	} else if (strcmp(key, "split.no") == 0 && v <= UINT32_MAX) {
		f->split_no = (uint32_t)v;
	}
}

/* Skips an array value: element type, count, then the elements, without allocating. */
static int gguf_skip_array(struct gguf_cur *c)
{
	uint64_t at = c->off;
	uint32_t et;
	uint64_t count;
	int rc = cur_u32(c, &et, "array element type");
	if (rc == 0)
		rc = cur_u64(c, &count, "array length");
	if (rc)
		return rc;
	if (et >= GT__COUNT)
		return err_set(c->e, ERR_CORRUPT,
			       "GGUF '%s': unknown array element type %u at offset %llu", c->name,
			       et, (unsigned long long)at);
	if (et == GT_ARRAY)
		return err_set(c->e, ERR_CORRUPT,
			       "GGUF '%s': nested array at offset %llu is not supported", c->name,
			       (unsigned long long)at);
	if (count > CAP_GGUF_ARRAY)
		return err_set(c->e, ERR_CORRUPT,
			       "GGUF '%s': array length %llu at offset %llu is over the cap of %d",
			       c->name, (unsigned long long)count, (unsigned long long)(at + 4),
			       CAP_GGUF_ARRAY);
	if (et != GT_STRING)
		return cur_skip(c, count * gguf_types[et].size, "array elements");
	for (uint64_t i = 0; i < count; i++) {
		uint64_t len;
		rc = cur_strlen(c, &len, "string length");
		if (rc == 0)
			rc = cur_skip(c, len, "a string");
		if (rc)
			return rc;
	}
	return 0;
}

static const struct gguf_key *gguf_find_key(const char *key)
{
	for (size_t i = 0; i < sizeof(gguf_keys) / sizeof(gguf_keys[0]); i++)
		if (strcmp(gguf_keys[i].key, key) == 0)
			return &gguf_keys[i];
	return NULL;
}

/* Remembers "<arch>.context_length"; the architecture may come later in the file. */
static void gguf_note_ctx(struct gguf_parse *p, const char *key, uint64_t v)
{
	size_t kl = strlen(key), sl = sizeof(ctx_suffix) - 1;
	if (kl <= sl || kl - sl >= sizeof(p->ctx[0].arch) || p->n_ctx >= GGUF_CTX_KEYS ||
	    strcmp(key + kl - sl, ctx_suffix) != 0)
		return;
	memcpy(p->ctx[p->n_ctx].arch, key, kl - sl);
	p->ctx[p->n_ctx].arch[kl - sl] = '\0';
	p->ctx[p->n_ctx].value = v;
	p->n_ctx++;
}

/* Reads one key/value pair. */
static int gguf_read_kv(struct gguf_parse *p)
{
	struct gguf_cur *c = p->c;
	char key[256];
	uint64_t klen;
	int rc = cur_strlen(c, &klen, "key length");
	if (rc)
		return rc;
	if (klen < sizeof(key)) {
		rc = cur_read(c, key, (size_t)klen, "a key");
		key[klen] = '\0';
	} else {
		/* No key we use is this long: skip it unread. */
		rc = cur_skip(c, klen, "a key");
		key[0] = '\0';
	}
	if (rc)
		return rc;
	uint64_t at = c->off;
	uint32_t t;
	rc = cur_u32(c, &t, "a value type");
	if (rc)
		return rc;
	if (t >= GT__COUNT)
		return err_set(c->e, ERR_CORRUPT,
			       "GGUF '%s': unknown value type %u at offset %llu for key '%.64s'",
			       c->name, t, (unsigned long long)at, key);
	const struct gguf_key *k = gguf_find_key(key);
	if (t == GT_ARRAY)
		return gguf_skip_array(c);
	if (t == GT_STRING) {
		uint64_t len;
		rc = cur_strlen(c, &len, "string length");
		if (rc)
			return rc;
		if (!k || k->want != W_TEXT)
			return cur_skip(c, len, "a string");
		/* Read at most what the field can hold; the rest is skipped. */
		unsigned char buf[256];
		size_t n = len < sizeof(buf) ? (size_t)len : sizeof(buf);
		rc = cur_read(c, buf, n, "a string");
		if (rc == 0)
			rc = cur_skip(c, len - n, "a string");
		if (rc)
			return rc;
		gguf_copy_text((char *)p->f + k->text_off, k->text_size, buf, n);
		return 0;
	}
	if (!gguf_types[t].is_unsigned && !gguf_types[t].is_signed)
		return cur_skip(c, gguf_types[t].size, "a value");
	uint64_t v;
	int ok;
	rc = gguf_read_uint(c, t, &v, &ok);
	if (rc || !ok)
		return rc;
	if (k && k->want == W_UINT)
		gguf_set_uint(p, key, v);
	else
		gguf_note_ctx(p, key, v);
	return 0;
}

static int gguf_parse(struct gguf_cur *c, struct gguf_facts *f)
{
	memset(f, 0, sizeof(*f));
	f->file_type = UINT32_MAX;
	unsigned char magic[4];
	int rc = cur_read(c, magic, 4, "the magic");
	if (rc)
		return rc;
	if (!gguf_is_gguf(magic, 4))
		return err_set(c->e, ERR_CORRUPT, "GGUF '%s': not a GGUF file (bad magic)",
			       c->name);
	rc = cur_u32(c, &f->version, "the version");
	if (rc)
		return rc;
	if (f->version != 2 && f->version != 3)
		return err_set(
		    c->e, ERR_CORRUPT,
		    "GGUF '%s': version %u is not supported (only 2 and 3, little-endian)", c->name,
		    f->version);
	rc = cur_u64(c, &f->tensor_count, "the tensor count");
	if (rc == 0)
		rc = cur_u64(c, &f->kv_count, "the key/value count");
	if (rc)
		return rc;
	if (f->kv_count > CAP_GGUF_KV)
		return err_set(c->e, ERR_CORRUPT,
			       "GGUF '%s': key/value count %llu at offset 16 is over the cap of %d",
			       c->name, (unsigned long long)f->kv_count, CAP_GGUF_KV);
	struct gguf_parse p = {.c = c, .f = f};
	for (uint64_t i = 0; i < f->kv_count; i++) {
		rc = gguf_read_kv(&p);
		if (rc)
			return rc;
	}
	for (size_t i = 0; i < p.n_ctx; i++)
		if (f->architecture[0] && strcmp(p.ctx[i].arch, f->architecture) == 0)
			f->context_length = p.ctx[i].value;
	return 0;
}

int gguf_read_mem(const void *buf, size_t len, struct gguf_facts *f, struct err *e)
{
	struct gguf_cur c = {.name = "buffer", .e = e, .mem = buf, .fd = -1, .size = len};
	if (!buf)
		c.size = 0;
	int rc = gguf_parse(&c, f);
	if (rc)
		memset(f, 0, sizeof(*f));
	return rc;
}

int gguf_read_file(const char *path, struct gguf_facts *f, struct err *e)
{
	const char *base = strrchr(path, '/');
	base = base ? base + 1 : path;
	struct gguf_cur c = {.name = base, .e = e, .fd = -1};
	memset(f, 0, sizeof(*f));
	c.fd = open(path, O_RDONLY | O_CLOEXEC);
	if (c.fd < 0)
		return err_set(e, errno == ENOENT ? ERR_NOT_FOUND : ERR_IO, "GGUF '%s': open: %s",
			       base, strerror(errno));
	struct stat st;
	int rc;
	if (fstat(c.fd, &st) != 0) {
		rc = err_set(e, ERR_IO, "GGUF '%s': stat: %s", base, strerror(errno));
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = err_set(e, ERR_CORRUPT, "GGUF '%s': not a regular file", base);
		goto out;
	}
	c.size = (uint64_t)st.st_size;
	c.win = xmalloc(GGUF_WINDOW);
	rc = gguf_parse(&c, f);
out:
	free(c.win);
	close(c.fd);
	if (rc)
		memset(f, 0, sizeof(*f));
	return rc;
}
