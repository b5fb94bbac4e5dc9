/*
 * The provisioning context of a test: a data root's hub folder, catalog
 * path, layout, transfer engine and shared-transfer table, as the
 * provisioner sets them up, for the tests of the code under it.
 */
#ifndef RBEE_TEST_PROV_CTX_H
#define RBEE_TEST_PROV_CTX_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>

#include <cmocka.h>

#include "core/err.h"
#include "fetch/xfer.h"
#include "provision/share.h"
#include "provision/vendor.h"
#include "store/layout.h"

/* Fills c for data root ROOT (ROOT/hub, ROOT/catalog.db); the test fails when it cannot. */
static inline void test_prov_ctx_init(struct prov_ctx *c, const char *root)
{
	snprintf(c->data_root, sizeof(c->data_root), "%s", root);
	snprintf(c->hub_dir, sizeof(c->hub_dir), "%s/hub", root);
	snprintf(c->db_path, sizeof(c->db_path), "%s/catalog.db", root);
	struct err e = {0};
	if (layout_open(c->hub_dir, &c->layout, &e) || xfer_engine_new(NULL, &c->engine, &e))
		fail_msg("provisioning context in %s: %s", root, e.msg);
	assert_int_equal(prov_share_new(c, &c->share), 0);
}

static inline void test_prov_ctx_cleanup(struct prov_ctx *c)
{
	prov_share_free(c->share);
	xfer_engine_free(c->engine);
	layout_free(c->layout);
}

#endif
