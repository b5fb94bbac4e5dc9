/*
 * The pure parts of fetch/s3.h: the query string in SigV4's order, the
 * store's address and keys, and the bounded reading of the few XML
 * elements of S3's answers.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "core/err.h"
#include "fetch/s3.h"

static void test_query_sorted_and_encoded(void **state)
{
	(void)state;
	char q[256];
	/* libcurl 7.88 signs the query as given: sorted here, whatever the caller's order. */
	struct s3_param p[] = {{"uploadId", "2~a/b+c=d"}, {"partNumber", "7"}};
	assert_int_equal(s3_query(p, 2, q, sizeof(q), NULL), 0);
	assert_string_equal(q, "partNumber=7&uploadId=2~a%2Fb%2Bc%3Dd");
	/* A flag is written "name=", as SigV4 canonicalises it. */
	struct s3_param f[] = {{"uploads", ""}};
	assert_int_equal(s3_query(f, 1, q, sizeof(q), NULL), 0);
	assert_string_equal(q, "uploads=");
	/* No parameter: an empty query. */
	assert_int_equal(s3_query(NULL, 0, q, sizeof(q), NULL), 0);
	assert_string_equal(q, "");
	char tiny[8];
	struct err e = {0};
	assert_int_equal(s3_query(p, 2, tiny, sizeof(tiny), &e), ERR_TOO_LARGE);
}

static void test_url_path_style(void **state)
{
	(void)state;
	struct s3_store s;
	struct err e = {0};
	assert_int_equal(s3_store_init(&s, "s3://rbee-blobs/site/a/", "http://127.0.0.1:9000/",
				       NULL, "AK", "SK", &e),
			 0);
	assert_string_equal(s.endpoint, "http://127.0.0.1:9000");
	assert_string_equal(s.prefix, "site/a/");
	assert_string_equal(s.sigv4, "aws:amz:us-east-1:s3");
	char key[S3_KEY_MAX + 1], url[512];
	const char *sha = "46e8a13f3bb8e2e1c9f22be48430a25183b8607c861a9242fc3c621323a9f01e";
	assert_int_equal(s3_blob_key(&s, sha, key, sizeof(key), &e), 0);
	assert_string_equal(key,
			    "site/a/blobs/46e8a13f3bb8e2e1c9f22be48430a25183b8607c861a9242fc3c6"
			    "21323a9f01e");
	struct s3_param p[] = {{"uploads", ""}};
	assert_int_equal(s3_url(&s, NULL, "k/x", p, 1, url, sizeof(url), &e), 0);
	assert_string_equal(url, "http://127.0.0.1:9000/rbee-blobs/k/x?uploads=");
	s3_store_cleanup(&s);
	assert_null(s.userpwd);
}

static void test_store_spec_refused(void **state)
{
	(void)state;
	struct s3_store s;
	struct err e = {0};
	const char *bad[] = {"rbee",
			     "s3://",
			     "s3://AB",
			     "s3://x",
			     "s3://ok-bucket/../up",
			     "s3://ok-bucket/a b",
			     "s3://ok_bucket"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(
		    s3_store_init(&s, bad[i], "http://127.0.0.1:1", NULL, "a", "b", &e),
		    ERR_INVALID);
		s3_store_cleanup(&s);
	}
	/* No endpoint, a URL with a query, no credentials. */
	assert_int_equal(s3_store_init(&s, "s3://bkt", NULL, NULL, "a", "b", &e), ERR_INVALID);
	assert_int_equal(s3_store_init(&s, "s3://bkt", "http://h/?x", NULL, "a", "b", &e),
			 ERR_INVALID);
	assert_int_equal(s3_store_init(&s, "s3://bkt", "http://h", NULL, "", "b", &e), ERR_INVALID);
	assert_int_equal(s3_store_init(&s, "s3://bkt", "http://h", "EU West", "a", "b", &e),
			 ERR_INVALID);
}

static void test_xml_upload_id_and_error(void **state)
{
	(void)state;
	char out[64];
	const char *ok = "<?xml version=\"1.0\"?><InitiateMultipartUploadResult><Bucket>b</Bucket>"
			 "<Key>k</Key><UploadId>2~xyz.Q</UploadId></InitiateMultipartUploadResult>";
	assert_int_equal(s3_xml_text(ok, strlen(ok), "UploadId", out, sizeof(out)), 0);
	assert_string_equal(out, "2~xyz.Q");
	assert_int_equal(s3_xml_text(ok, strlen(ok), "Code", out, sizeof(out)), ERR_NOT_FOUND);
	const char *err = "<Error><Code>EntityTooSmall</Code><Message>part 1</Message></Error>";
	assert_int_equal(s3_xml_text(err, strlen(err), "Code", out, sizeof(out)), 0);
	assert_string_equal(out, "EntityTooSmall");
	/* The body is read within its length only: an element cut off there is not found whole. */
	assert_int_equal(s3_xml_text(err, 20, "Code", out, sizeof(out)), ERR_INVALID);
	/* Markup or an entity inside, and a value longer than the buffer, are refused. */
	const char *nested = "<UploadId>a<b>c</b></UploadId>";
	assert_int_equal(s3_xml_text(nested, strlen(nested), "UploadId", out, sizeof(out)),
			 ERR_INVALID);
	const char *ent = "<UploadId>a&amp;b</UploadId>";
	assert_int_equal(s3_xml_text(ent, strlen(ent), "UploadId", out, sizeof(out)), ERR_INVALID);
	const char *longer = "<UploadId>0123456789</UploadId>";
	assert_int_equal(s3_xml_text(longer, strlen(longer), "UploadId", out, 5), ERR_TOO_LARGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_query_sorted_and_encoded),
	    cmocka_unit_test(test_url_path_style),
	    cmocka_unit_test(test_store_spec_refused),
	    cmocka_unit_test(test_xml_upload_id_and_error),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
