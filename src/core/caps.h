/*
 * caps: every hard limit of rbee-hive in one place. Going over a cap is a
 * clean error (413 or 400), never an unbounded allocation.
 */
#ifndef RBEE_CORE_CAPS_H
#define RBEE_CORE_CAPS_H

#define CAP_REQUEST_BODY (64 * 1024)	     /* HTTP request body */
#define CAP_REF_LEN 1536		     /* a model ref or catalog id */
#define CAP_REPO_PATH_LEN 1024		     /* a path inside a repo */
#define CAP_REPO_PATH_DEPTH 32		     /* components of a repo path */
#define CAP_REPO_ID_LEN 96		     /* ORG or REPO name */
#define CAP_REVISION_LEN 256		     /* a branch, tag or commit */
#define CAP_OCI_NAME_LEN 255		     /* an OCI repository name (distribution spec) */
#define CAP_URL_LEN 4096		     /* a URL, ours or the CDN's */
#define CAP_HEADER_VALUE 8192		     /* one HTTP header we keep */
#define CAP_LISTING_BYTES (16 * 1024 * 1024) /* one Hub listing answer */
#define CAP_LISTING_PAGES 1000		     /* pagination of a tree listing */
/*
 * One page of a tree listing, and any Hub answer read for GET /v1/sources.
 * The Hub's pages hold at most 1000 entries (under 0.5 MiB); a parsed answer
 * takes about ten times its size in memory, so this bounds each listing.
 */
#define CAP_LISTING_PAGE_BYTES (4 * 1024 * 1024)
#define CAP_REPO_FILES 100000	      /* files and folders in one repo listing */
#define CAP_SOURCES_ENTRIES 20000     /* files and folders in one GET /v1/sources */
#define CAP_SOURCES_ACTIVE 4	      /* GET /v1/sources listings at once */
#define CAP_SOURCES_DEADLINE_MS 30000 /* one GET /v1/sources listing, in all */
#define CAP_MODEL_FILES 4096	      /* files in one model */
#define CAP_MODEL_QUANTS 64	      /* quantizations listed for one model */
#define CAP_JSON_DEPTH 32	      /* nesting of JSON we accept */
#define CAP_JOBS_KEPT 1000	      /* finished jobs kept */
#define CAP_JOBS_REFUSED 64	      /* refused submissions kept, of those */
#define CAP_JOB_EVENTS 4096	      /* events kept per job for replay */
#define CAP_EVENT_LEN 4096	      /* one event's data */
#define CAP_JOB_DATA (256 * 1024)     /* a job's result event; bigger is refused, not split */
#define CAP_WATCHERS 1024	      /* stream watchers in all */
#define CAP_CONNECTIONS 1024	      /* HTTP connections at once */
#define CAP_XFER_CONNECTIONS 64	      /* transfer connections per file */
#define CAP_XFER_RANGES 4096	      /* done ranges kept per partial */
#define CAP_FRESH_SWEEP 100000	      /* entries of resume-fresh/ the startup sweep reads */
#define CAP_XFER_ACTIVE 256	      /* transfers queued or running in one engine */
#define CAP_PEERS 16		      /* peer hives (serve --peer) */
#define CAP_PEER_RANGES 1024	      /* ranges of one blob a peer may say it holds */
#define CAP_PEER_ANSWER (64 * 1024)   /* a peer's answer about one blob, in bytes */
/*
 * Two redirect caps, for two chains: a Hub API request (or the HEAD of a
 * plain URL) follows repo renames and relative Locations to the final
 * answer; a transfer then starts at that resolved URL, so it has fewer hops
 * left to follow (a CDN's own redirects).
 */
#define CAP_HUB_REDIRECTS 10		       /* redirects followed by one Hub API request */
#define CAP_XFER_REDIRECTS 5		       /* redirects followed by one transfer */
#define CAP_XFER_REFRESHES 3		       /* URL refreshes after 403 without progress */
#define CAP_UNKNOWN_SIZE_DEFAULT (64ULL << 30) /* a download whose size is not known in advance */
#define CAP_GGUF_KV 65536		       /* key/values in a GGUF header */
#define CAP_GGUF_STRING (1024 * 1024)	       /* one GGUF string */
#define CAP_GGUF_ARRAY (64 * 1024 * 1024)      /* elements of one GGUF array */
#define CAP_GGUF_HEADER (256 * 1024 * 1024)    /* bytes read of a GGUF header */
#define CAP_CATALOG_MODELS 1000000	       /* models in a catalog */
#define CAP_MODELS_PAGE 1000		       /* models in one GET /v1/models answer */
#define CAP_MODELS_PAGE_DEFAULT 100	       /* ... when the request names no limit */
#define CAP_MODELS_KEPT_BYTES (8 << 20)	       /* serialised models kept for GET /v1/models */
#define CAP_TOKEN_LEN 4096		       /* a bearer token */
#define CAP_TOKEN_FILE 8192		       /* a token file: the token and white space */
#define CAP_CLIENT_ANSWER (64 * 1024 * 1024)   /* one daemon answer read by the CLI */
#define CAP_FILE_IMPORT_DIRS 64		       /* --allow-file-import folders */
#define CAP_ALLOW_NETS 64		       /* --allow-net networks */
#define CAP_ALLOW_HOSTS 64		       /* --allow-host names */
#define CAP_ALLOW_ORIGINS 64		       /* --allow-origin origins */
#define CAP_OPTION_VALUES 64  /* values of one repeatable serve option, the largest of the above */
#define CAP_ADOPT_SCAN 100000 /* hub folder entries looked at for a blob to adopt */
#define CAP_UPLOAD_SIZE (1ULL << 40) /* one blob uploaded to the daemon (1 TiB) */
#define CAP_MIRROR_TREE_PAGE 1000    /* entries of one tree page the mirror answers */
#define CAP_MIRROR_PATHS 1000	     /* paths asked in one paths-info request */
/*
 * The largest file the mirror serves outside LFS (named by its git blob id,
 * which it hashes on each request): the Hub refuses larger files outside LFS.
 */
#define CAP_MIRROR_GIT_FILE (10 * 1024 * 1024)
/* A pull-through answer whose job delivers no byte for this long is ended. */
#define CAP_MIRROR_PULL_IDLE_MS 120000

#endif
