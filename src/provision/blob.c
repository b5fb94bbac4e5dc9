/*
 * blob: the catalog record of a blob rbee-hive made in the hub cache, which
 * lets it remove the blob again when no model uses it.
 */
#include "core/err.h"
#include "core/log.h"
#include "provision/vendor.h"
#include "store/catalog.h"
#include "store/layout.h"

void prov_blob_made(struct catalog *cat, const struct layout *l, const char *repo_dir,
		    const char *sha256, int verified)
{
	uint64_t size = 0;
	int64_t mtime = 0;
	struct err e = {0};
	if (!cat || layout_blob_stat(l, repo_dir, sha256, &size, &mtime) != 1)
		return;
	if (catalog_blob_verified(cat, repo_dir, sha256, sha256, size, mtime, 0, &e) == 0 &&
	    !verified)
		catalog_blob_distrust(cat, repo_dir, sha256, &e);
	if (e.msg[0])
		log_warn("recording blob %s of %s: %s", sha256, repo_dir, err_msg(&e));
}
