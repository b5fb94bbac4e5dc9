#!/usr/bin/env bash
# The daemon under load: `rbee-hive serve` pulls a file from nginx on
# loopback (a URL model ref, http://127.0.0.1:PORT/...#sha256=HEX) through the
# HTTP API with 8 connections, while /proc/PID/status is sampled. Reports per
# file size: startup (exec to the first answer of GET /v1/models, empty
# catalog), the pull's wall time, and the daemon's peak RSS (VmHWM).
#
#   bench/daemon.sh [--build DIR] [--sizes-mib "1024 4096"] [--rounds N]
set -euo pipefail

BUILD=$(cd "$(dirname "$0")/.." && pwd)/build-bench
SIZES="1024 4096"
ROUNDS=3
PORT=18710 # nginx
API_PORT=18711
CAP=40m

while [ $# -gt 0 ]; do
	case $1 in
	--build) BUILD=$2; shift 2 ;;
	--sizes-mib) SIZES=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	*) sed -n '2,8p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_tools
bench_check_build "$BUILD"
max=0
for s in $SIZES; do [ "$s" -gt "$max" ] && max=$s; done
bench_tmp $((max * 2 + 512))
bench_nginx
T=$BENCH_T
DPID=
BENCH_CLEANUP+=('[ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null')

now_ms() { date +%s%3N; }

# Prints "startup_ms pull_ms vmhwm_kib max_sampled_rss_kib state".
one_pull() { # file data_dir
	local file=$1 data=$2 hash url t0 t1 t2 id state="" peak=0 rss
	hash=$(cat "$T/www/$file.sha256")
	url="$BASE/$file#sha256=$hash"
	mkdir -p "$data"
	t0=$(now_ms)
	# Plain http:// URLs are allowed only while the Hub endpoint is on loopback too.
	HF_ENDPOINT=$BASE "$BUILD/rbee-hive" serve --port "$API_PORT" --data-dir "$data" --hf-cache "$data/hub" --connections 8 \
		--limit-rate 0 --log-level warn >"$T/daemon.log" 2>&1 &
	DPID=$!
	for _ in $(seq 500); do
		curl -fsS -o /dev/null "http://127.0.0.1:$API_PORT/v1/models" 2>/dev/null && break
		sleep 0.01
	done
	t1=$(now_ms)
	id=$(curl -fsS -H 'Content-Type: application/json' \
		-d "{\"operation\":\"model_download\",\"model\":\"$url\"}" \
		"http://127.0.0.1:$API_PORT/v1/jobs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
	# Bounded: 20 ms samples for at most 10 minutes.
	for i in $(seq 30000); do
		rss=$(awk '/^VmRSS/ {print $2}' "/proc/$DPID/status" 2>/dev/null || echo 0)
		[ "${rss:-0}" -gt "$peak" ] && peak=$rss
		if [ $((i % 10)) = 0 ]; then
			state=$(curl -fsS "http://127.0.0.1:$API_PORT/v1/jobs/$id" |
				python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
			case $state in succeeded | failed | cancelled) break ;; esac
		fi
		sleep 0.02
	done
	t2=$(now_ms)
	[ "$state" = succeeded ] || curl -fsS "http://127.0.0.1:$API_PORT/v1/jobs/$id" >&2 || true
	local hwm
	hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$DPID/status")
	kill "$DPID"
	for _ in $(seq 100); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.05; done
	kill -9 "$DPID" 2>/dev/null || true
	wait "$DPID" 2>/dev/null || true
	DPID=
	echo "$((t1 - t0)) $((t2 - t1)) $hwm $peak $state"
}

echo "| file MiB | round | startup ms | pull wall s | MiB/s | VmHWM MiB | peak sampled VmRSS MiB | state |"
echo "|---|---|---|---|---|---|---|---|"
for s in $SIZES; do
	bench_make_file "f$s.bin" "$s"
	for r in $(seq "$ROUNDS"); do
		sync
		read -r st pull hwm peak state < <(one_pull "f$s.bin" "$T/data-$s-$r")
		awk -v s="$s" -v r="$r" -v st="$st" -v p="$pull" -v h="$hwm" -v k="$peak" -v state="$state" \
			'BEGIN {printf "| %d | %d | %d | %.2f | %.0f | %.1f | %.1f | %s |\n", s, r, st, p / 1000, s / (p / 1000), h / 1024, k / 1024, state}'
		rm -rf "$T/data-$s-$r"
	done
	rm -f "$T/www/f$s.bin"
done
