#!/bin/sh
# Runs UI test files with node's test runner, from CTest:
#   run.sh --setup          install playwright-core and @huggingface/hub (npm ci)
#                           when either is missing
#   run.sh FILE.test.mjs    run one test file
# playwright-core drives Debian's /usr/bin/chromium; it downloads no browser.
set -eu
cd "$(dirname "$0")"
have() {
	[ -f node_modules/playwright-core/package.json ] &&
		[ -f node_modules/@huggingface/hub/package.json ]
}
if [ "${1:-}" = "--setup" ]; then
	have && exit 0
	exec npm ci --no-audit --no-fund --loglevel=error
fi
have || npm ci --no-audit --no-fund --loglevel=error
exec node --test --test-concurrency=1 "$@"
