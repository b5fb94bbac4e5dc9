#!/bin/sh
# Runs fuzz targets for a while each, from their checked-in seed corpus.
#
#   fuzz/run.sh BUILD_DIR SECONDS [NAME...]
#
# NAME is a target without its fuzz_ prefix (default: every target built in
# BUILD_DIR/fuzz). New inputs go to BUILD_DIR/fuzz-work/NAME, never into
# fuzz/corpus/NAME; a crash, leak or sanitizer report is saved under
# BUILD_DIR/fuzz-artifacts/ and makes the run fail. Prints one line per target
# with its executions, time and result.
set -u

build=$1
seconds=$2
shift 2
src=$(cd "$(dirname "$0")" && pwd)
if [ $# -eq 0 ]; then
	for exe in "$build"/fuzz/fuzz_*; do
		[ -x "$exe" ] && set -- "$@" "${exe##*/fuzz_}"
	done
fi
if [ $# -eq 0 ]; then
	echo "fuzz/run.sh: no fuzz targets in $build/fuzz (build with -DRBEE_FUZZ=ON)" >&2
	exit 1
fi

failed=0
for name in "$@"; do
	exe=$build/fuzz/fuzz_$name
	seeds=$src/corpus/$name
	work=$build/fuzz-work/$name
	art=$build/fuzz-artifacts/$name
	log=$build/fuzz-work/$name.log
	mkdir -p "$work" "$art" "$seeds"
	start=$(date +%s)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1:symbolize=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		"$exe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$art/" "$work" "$seeds" >"$log" 2>&1
	rc=$?
	took=$(($(date +%s) - start))
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
	if [ $rc -eq 0 ]; then
		result=ok
	else
		result="FAILED (exit $rc, log $log)"
		failed=1
		tail -n 60 "$log" >&2
	fi
	printf '%-16s %12s runs %5ss  %s\n' "$name" "${runs:-?}" "$took" "$result"
done
exit $failed
