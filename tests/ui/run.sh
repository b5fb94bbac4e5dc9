#!/bin/sh
# Runs UI test files with node's test runner, from CTest:
#   run.sh --setup          install playwright-core (npm ci) when it is missing
#   run.sh FILE.test.mjs    run one test file
# playwright-core drives Debian's /usr/bin/chromium; it downloads no browser.
set -eu
cd "$(dirname "$0")"
if [ "${1:-}" = "--setup" ]; then
	[ -f node_modules/playwright-core/package.json ] && exit 0
	exec npm ci --no-audit --no-fund --loglevel=error
fi
[ -f node_modules/playwright-core/package.json ] || npm ci --no-audit --no-fund --loglevel=error
exec node --test --test-concurrency=1 "$@"
