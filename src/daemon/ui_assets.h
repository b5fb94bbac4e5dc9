/*
 * ui_assets: the web UI files under ui/, embedded at build time by
 * scripts/embed-ui.cmake. The table ends with an entry whose path is NULL.
 */
#ifndef RBEE_DAEMON_UI_ASSETS_H
#define RBEE_DAEMON_UI_ASSETS_H

#include <stddef.h>

struct ui_asset {
	const char *path; /* "/index.html" */
	const char *content_type;
	const unsigned char *data;
	size_t len;
};

extern const struct ui_asset ui_assets[];

#endif
