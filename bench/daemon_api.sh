#!/usr/bin/env bash
# The daemon's HTTP API under load: startup and GET /v1/models with a large
# catalog (wrk), cancel latency against the fake hub, and the slowdown of a
# download watched by 200 SSE streams (nginx on loopback). The measuring is
# done by bench/daemon_api.py; this script provides nginx and the served
# file (bench/lib.sh), and the temporary folder, removed at exit.
#
#   bench/daemon_api.sh [--build DIR] [--size-mib N] [--cap RATE] [--ports N] [-- daemon_api.py options]
#
# --cap: nginx's limit_rate per connection for /capped/ (default 40m).
# --ports: nginx listens on N, the daemons on N+11 to N+14 (default 19100).
#
# daemon_api.py options: --stages startup,models,cancel,watchers --models N
# --starts N --cancels N --rounds N --watchers N --watch-shm --watch-capped
# --watch-client c|python --sse-watch PATH --watch-rbee --watch-perf FILE
# --wrk-seconds N --results FILE.json
set -euo pipefail

BUILD=$(cd "$(dirname "$0")/.." && pwd)/build-bench
SIZE_MIB=1024
# PORT and CAP are read by bench/lib.sh.
# shellcheck disable=SC2034
PORT=19100 # nginx; the daemons use 19111-19114
# shellcheck disable=SC2034
CAP=40m

# shellcheck disable=SC2034
while [ $# -gt 0 ]; do
	case $1 in
	--build) BUILD=$2; shift 2 ;;
	--size-mib) SIZE_MIB=$2; shift 2 ;;
	--cap) CAP=$2; shift 2 ;;
	--ports) PORT=$2; shift 2 ;;
	--) shift; break ;;
	*) sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_tools
command -v wrk >/dev/null 2>&1 || "$BENCH_SRC/bench/install-deps"
bench_check_build "$BUILD"
[ -x "$BUILD/catalog-fill" ] || { echo "no $BUILD/catalog-fill" >&2; exit 1; }
bench_tmp $((SIZE_MIB * 3 + 1024))
bench_nginx
bench_make_file w.bin "$SIZE_MIB"
PY=
# shellcheck disable=SC2016 # expanded when the cleanup runs
BENCH_CLEANUP+=('[ -n "$PY" ] && kill "$PY" 2>/dev/null && wait "$PY"')
python3 "$BENCH_SRC/bench/daemon_api.py" --build "$BUILD" --tmp "$BENCH_T" --nginx "$BASE" \
	--file "$BENCH_T/www/w.bin" --port-base $((PORT + 10)) "$@" &
PY=$!
wait "$PY"
