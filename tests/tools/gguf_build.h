/*
 * gguf_build: builds GGUF headers in memory, for gguf-gen and the GGUF unit
 * tests. Little-endian, versions 2 and 3 (identical at the header level).
 * Header-only so both the tool and the tests include it without a library.
 *
 *   struct gguf_build b;
 *   gguf_build_init(&b, 3, 0);               magic, version, tensor count
 *   gguf_build_kv_str(&b, "general.name", "x");
 *   gguf_build_finish(&b);                   patches the key/value count
 *   ... b.buf, b.len ...; gguf_build_free(&b);
 *
 * The raw appenders (gguf_build_u32 ...) let a test write malformed headers.
 * Allocation failure aborts: this is test code.
 */
#ifndef RBEE_TESTS_GGUF_BUILD_H
#define RBEE_TESTS_GGUF_BUILD_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
	GGUF_BUILD_U8 = 0,
	GGUF_BUILD_I8 = 1,
	GGUF_BUILD_U16 = 2,
	GGUF_BUILD_I16 = 3,
	GGUF_BUILD_U32 = 4,
	GGUF_BUILD_I32 = 5,
	GGUF_BUILD_F32 = 6,
	GGUF_BUILD_BOOL = 7,
	GGUF_BUILD_STRING = 8,
	GGUF_BUILD_ARRAY = 9,
	GGUF_BUILD_U64 = 10,
	GGUF_BUILD_I64 = 11,
	GGUF_BUILD_F64 = 12,
};

struct gguf_build {
	unsigned char *buf;
	size_t len, cap;
	uint64_t kv_count;
};

static inline void gguf_build_bytes(struct gguf_build *b, const void *p, size_t n)
{
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 256;
		while (cap < b->len + n)
			cap *= 2;
		unsigned char *nb = realloc(b->buf, cap);
		if (!nb)
			abort();
		b->buf = nb;
		b->cap = cap;
	}
	if (n)
		memcpy(b->buf + b->len, p, n);
	b->len += n;
}

static inline void gguf_build_le(struct gguf_build *b, uint64_t v, unsigned size)
{
	unsigned char t[8];
	for (unsigned i = 0; i < size; i++)
		t[i] = (unsigned char)(v >> (8 * i));
	gguf_build_bytes(b, t, size);
}

static inline void gguf_build_u32(struct gguf_build *b, uint32_t v)
{
	gguf_build_le(b, v, 4);
}
static inline void gguf_build_u64(struct gguf_build *b, uint64_t v)
{
	gguf_build_le(b, v, 8);
}

/* A GGUF string: uint64 length, then the bytes (no NUL). */
static inline void gguf_build_str(struct gguf_build *b, const char *s)
{
	gguf_build_u64(b, strlen(s));
	gguf_build_bytes(b, s, strlen(s));
}

static inline void gguf_build_init(struct gguf_build *b, uint32_t version, uint64_t tensors)
{
	memset(b, 0, sizeof(*b));
	gguf_build_bytes(b, "GGUF", 4);
	gguf_build_u32(b, version);
	gguf_build_u64(b, tensors);
	gguf_build_u64(b, 0); /* key/value count, patched by gguf_build_finish */
}

/* Starts a pair: the key and the value type. The caller appends the value. */
static inline void gguf_build_key(struct gguf_build *b, const char *key, uint32_t type)
{
	gguf_build_str(b, key);
	gguf_build_u32(b, type);
	b->kv_count++;
}

static inline void gguf_build_kv_str(struct gguf_build *b, const char *key, const char *v)
{
	gguf_build_key(b, key, GGUF_BUILD_STRING);
	gguf_build_str(b, v);
}

static inline void gguf_build_kv_u16(struct gguf_build *b, const char *key, uint16_t v)
{
	gguf_build_key(b, key, GGUF_BUILD_U16);
	gguf_build_le(b, v, 2);
}

static inline void gguf_build_kv_u32(struct gguf_build *b, const char *key, uint32_t v)
{
	gguf_build_key(b, key, GGUF_BUILD_U32);
	gguf_build_u32(b, v);
}

static inline void gguf_build_kv_u64(struct gguf_build *b, const char *key, uint64_t v)
{
	gguf_build_key(b, key, GGUF_BUILD_U64);
	gguf_build_u64(b, v);
}

/* An array of n strings "tok0", "tok1", ... (a stand-in for a tokenizer vocabulary). */
static inline void gguf_build_kv_str_array(struct gguf_build *b, const char *key, uint64_t n)
{
	gguf_build_key(b, key, GGUF_BUILD_ARRAY);
	gguf_build_u32(b, GGUF_BUILD_STRING);
	gguf_build_u64(b, n);
	char tok[32];
	for (uint64_t i = 0; i < n; i++) {
		snprintf(tok, sizeof(tok), "tok%llu", (unsigned long long)i);
		gguf_build_str(b, tok);
	}
}

/* An array of n float32 zeros. */
static inline void gguf_build_kv_f32_array(struct gguf_build *b, const char *key, uint64_t n)
{
	gguf_build_key(b, key, GGUF_BUILD_ARRAY);
	gguf_build_u32(b, GGUF_BUILD_F32);
	gguf_build_u64(b, n);
	for (uint64_t i = 0; i < n; i++)
		gguf_build_u32(b, 0);
}

/* Writes the key/value count into the header (offset 16). */
static inline void gguf_build_finish(struct gguf_build *b)
{
	for (unsigned i = 0; i < 8; i++)
		b->buf[16 + i] = (unsigned char)(b->kv_count >> (8 * i));
}

static inline void gguf_build_free(struct gguf_build *b)
{
	free(b->buf);
	memset(b, 0, sizeof(*b));
}

#endif
