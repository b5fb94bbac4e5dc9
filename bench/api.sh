#!/usr/bin/env bash
# The daemon's API with a large catalog: an empty data root is initialised by
# one start of `rbee-hive serve`, then N models (one file each) are written
# straight into its SQLite catalog; the daemon is started again and measured:
# startup (exec to the first answer of GET /v1/models) and GET /v1/models
# latency under wrk with 16 connections: the default page, ?limit=1000, then
# a random page of the default size for each request (an offset from 0 to
# N-100), which no kept page serves.
#
#   bench/api.sh [--build DIR] [--models N] [--starts N] [--duration S] [--perf FILE] [--port P]
#
# --perf records a CPU profile (perf record -g) of the daemon while wrk asks
# random pages (the default page is served from the kept answers). --port: the daemon's port (default 18731).
set -euo pipefail

BUILD=$(cd "$(dirname "$0")/.." && pwd)/build-bench
MODELS=10000
STARTS=5
DURATION=10
PERF=
API_PORT=18731

while [ $# -gt 0 ]; do
	case $1 in
	--build) BUILD=$2; shift 2 ;;
	--models) MODELS=$2; shift 2 ;;
	--starts) STARTS=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--perf) PERF=$2; shift 2 ;;
	--port) API_PORT=$2; shift 2 ;;
	*) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
command -v wrk >/dev/null 2>&1 || "$BENCH_SRC/bench/install-deps"
[ -x "$BUILD/rbee-hive" ] || { echo "no $BUILD/rbee-hive" >&2; exit 1; }
bench_tmp 512
T=$BENCH_T
DPID=
BENCH_CLEANUP+=('[ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null')
API=http://127.0.0.1:$API_PORT

now_ms() { date +%s%3N; }

# Starts the daemon; STARTUP_MS: the ms until GET /v1/models answered.
start() {
	local t0
	t0=$(now_ms)
	"$BUILD/rbee-hive" serve --port "$API_PORT" --data-dir "$T/data" --hf-cache "$T/data/hub" \
		--log-level warn >>"$T/daemon.log" 2>&1 &
	DPID=$!
	for _ in $(seq 1000); do
		curl -fsS -o /dev/null "$API/v1/models" 2>/dev/null && break
		sleep 0.005
	done
	STARTUP_MS=$(($(now_ms) - t0))
}

stop() {
	kill "$DPID" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.05; done
	kill -9 "$DPID" 2>/dev/null || true
	wait "$DPID" 2>/dev/null || true
	DPID=
}

start
stop
python3 - "$T/data/catalog.db" "$MODELS" <<'EOF'
import hashlib, sqlite3, sys, time
db, n = sys.argv[1], int(sys.argv[2])
c = sqlite3.connect(db)
now = int(time.time() * 1000)
with c:
    for i in range(n):
        mid = f"bench-org/model-{i:05d}"
        repo_dir = f"models--bench-org--model-{i:05d}"
        c.execute("INSERT INTO models(id, source, repo, revision, commit_sha, repo_dir, status, size,"
                  " created_ms, updated_ms) VALUES (?, 'hf', ?, 'main', ?, ?, 'available', ?, ?, ?)",
                  (mid, mid, hashlib.sha1(mid.encode()).hexdigest(), repo_dir, 4096 + i, now, now))
        c.execute("INSERT INTO files(model_id, idx, path, sha256, size) VALUES (?, 0, ?, ?, ?)",
                  (mid, "model-Q4_K_M.gguf", hashlib.sha256(mid.encode()).hexdigest(), 4096 + i))
c.close()
EOF

echo "| starts | startup to first answer ms (each) |"
echo "|---|---|"
ts=()
for _ in $(seq "$STARTS"); do
	start
	ts+=("$STARTUP_MS")
	stop
done
echo "| $STARTS | ${ts[*]} |"
echo

start
for q in "" "?limit=1000"; do
	n=$(curl -fsS "$API/v1/models$q" | python3 -c 'import json,sys; d=json.load(sys.stdin); m=d.get("models", d) if isinstance(d, dict) else d; print(len(m))')
	bytes=$(curl -fsS -o /dev/null -w '%{size_download}' "$API/v1/models$q")
	echo "GET /v1/models$q: $n models in the answer, $bytes bytes"
	one=()
	for _ in 1 2 3 4 5; do
		one+=("$(curl -fsS -o /dev/null -w '%{time_total}' "$API/v1/models$q")")
	done
	echo "one request at a time, s: ${one[*]}"
done
echo
echo '```'
wrk -t2 -c16 -d"${DURATION}s" --latency "$API/v1/models"
echo '```'
echo
echo '```'
wrk -t2 -c16 -d"${DURATION}s" --latency "$API/v1/models?limit=1000"
echo '```'
cat >"$T/randoff.lua" <<LUA
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/v1/models?offset=" .. math.random(0, $((MODELS > 100 ? MODELS - 100 : 0))))
end
LUA
echo
echo "a random page of 100 for each request:"
ppid_=
if [ -n "$PERF" ]; then
	perf record -g -o "$PERF" -p "$DPID" -- sleep "$DURATION" >/dev/null 2>&1 &
	ppid_=$!
fi
echo '```'
wrk -t2 -c16 -d"${DURATION}s" --latency -s "$T/randoff.lua" "$API/v1/models"
echo '```'
[ -n "$ppid_" ] && wait "$ppid_"
stop
