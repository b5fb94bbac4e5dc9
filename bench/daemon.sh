#!/usr/bin/env bash
# The daemon under load: `rbee-hive serve` pulls a file from nginx on
# loopback (a URL model ref, http://127.0.0.1:PORT/...#sha256=HEX) through the
# HTTP API with 8 connections, while one light watcher (bench/daemon_pull.py)
# samples /proc/PID/status and the job. Reports per
# file size: startup (exec to the first answer of GET /v1/models, empty
# catalog), the pull's wall time (the job's own updated_ms - created_ms), the
# daemon's CPU time over the pull, and its peak RSS (VmHWM). In each round,
# `curl -o` of the same file and `openssl dgst -sha256` of it (from the page
# cache) run too, for the ratios of the goals: wall vs curl, CPU vs curl's +
# openssl's. curl+sync (curl -o, then sync(1) of the file) is the peer that,
# like the daemon, ends with the file on disk.
#
#   bench/daemon.sh [--build DIR] [--before DIR] [--sizes-mib "1024 4096"] [--rounds N]
#                   [--data-dir-in DIR] [--perf PREFIX] [--no-peers] [--smaps MIB]
#
# --before DIR adds a pull by the rbee-hive of another build to each round
# (rows marked "before"). --data-dir-in DIR puts the daemon's data directory
# and curl's output in DIR (say /dev/shm, to take the disk out of the
# figures); the report names its file system. --perf PREFIX adds, after the
# rounds of the first size, one more pull per build recorded with `perf
# record -g -p PID` into PREFIX.rbee.data (and PREFIX.before.data); those
# pulls are not in the table. --no-peers leaves curl and openssl out (for
# many rounds of the daemon's peak RSS alone). --smaps MIB prints, for each
# pull whose VmHWM reached MIB, what was resident at its highest sampled
# VmRSS, by kind of mapping (daemon_pull.py reads /proc/PID/smaps).
set -euo pipefail

BUILD=$(cd "$(dirname "$0")/.." && pwd)/build-bench
SIZES="1024 4096"
ROUNDS=3
PORT=18710 # nginx
API_PORT=18711
CAP=40m
BEFORE=
DATA_IN=
PERF=
PERF_PID=
PEERS=1
SMAPS=

while [ $# -gt 0 ]; do
	case $1 in
	--build) BUILD=$2; shift 2 ;;
	--before) BEFORE=$2; shift 2 ;;
	--sizes-mib) SIZES=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--data-dir-in) DATA_IN=$2; shift 2 ;;
	--perf) PERF=$2; shift 2 ;;
	--no-peers) PEERS=; shift ;;
	--smaps) SMAPS=$2; shift 2 ;;
	*) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
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
BENCH_CLEANUP+=('[ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null' '[ -n "$PERF_PID" ] && kill -INT "$PERF_PID" 2>/dev/null')
D=$T
[ -n "$DATA_IN" ] && bench_dir_in D "$DATA_IN"

now_ms() { date +%s%3N; }

# CPU seconds (user + system) of a process from /proc/PID/stat.
proc_cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.3f", ($14 + $15) / hz}' "/proc/$1/stat"; }

# Prints "startup_ms pull_ms vmhwm_kib max_sampled_rss_kib state cpu_s".
one_pull() { # file data_dir build [perf_file]
	local file=$1 data=$2 bin=$3/rbee-hive perf=${4:-} hash url t0 t1 job_ms state peak cpu0 cpu1
	hash=$(cat "$T/www/$file.sha256")
	url="$BASE/$file#sha256=$hash"
	mkdir -p "$data"
	t0=$(now_ms)
	# Plain http:// URLs are allowed only while the Hub endpoint is on loopback too.
	HF_ENDPOINT=$BASE "$bin" serve --port "$API_PORT" --data-dir "$data" --hf-cache "$data/hub" --connections 8 \
		--limit-rate 0 --log-level warn >"$T/daemon.log" 2>&1 &
	DPID=$!
	for _ in $(seq 500); do
		curl -fsS -o /dev/null "http://127.0.0.1:$API_PORT/v1/models" 2>/dev/null && break
		sleep 0.01
	done
	t1=$(now_ms)
	if [ -n "$perf" ]; then
		perf record -q -g -p "$DPID" -o "$perf" >/dev/null 2>&1 &
		PERF_PID=$!
		sleep 0.5 # perf attaches to every thread before the pull starts
	fi
	cpu0=$(proc_cpu "$DPID")
	rm -f "$T/smaps.txt"
	read -r job_ms peak state < <(python3 "$BENCH_SRC/bench/daemon_pull.py" "http://127.0.0.1:$API_PORT" "$DPID" "$url" ${SMAPS:+"$T/smaps.txt"})
	cpu1=$(proc_cpu "$DPID")
	if [ -n "$PERF_PID" ]; then
		kill -INT "$PERF_PID"
		wait "$PERF_PID" 2>/dev/null || true
		PERF_PID=
	fi
	local hwm
	hwm=$(awk '/^VmHWM/ {print $2}' "/proc/$DPID/status")
	kill "$DPID"
	for _ in $(seq 100); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.05; done
	kill -9 "$DPID" 2>/dev/null || true
	wait "$DPID" 2>/dev/null || true
	DPID=
	echo "$((t1 - t0)) $job_ms $hwm $peak $state $(awk -v a="$cpu0" -v b="$cpu1" 'BEGIN {printf "%.2f", b - a}')"
}

# Prints "wall_s cpu_s" of one command, from /usr/bin/time.
timed() {
	/usr/bin/time -f '%e %U %S' -o "$T/time" "$@" >/dev/null 2>&1
	awk '{printf "%.2f %.2f\n", $1, $2 + $3}' "$T/time"
}

echo "The daemon's data directory and curl's output are on a $(bench_fs_type "$D/") file system."
echo
echo "| file MiB | round | startup ms | pull s (job) | MiB/s | daemon CPU s | VmHWM MiB | peak sampled VmRSS MiB | state | curl -o wall / CPU s | curl+sync wall s | openssl dgst CPU s | wall / curl | wall / curl+sync | CPU / (curl + openssl) |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
for s in $SIZES; do
	bench_make_file "f$s.bin" "$s"
	for r in $(seq "$ROUNDS"); do
		cw=0 cc=0 csw=0 oc=0
		if [ -n "$PEERS" ]; then
			sync
			read -r cw cc < <(timed curl -fsS -o "$D/curl.out" "$BASE/f$s.bin")
			rm -f "$D/curl.out"
			sync
			read -r csw _ < <(timed "$BENCH_SRC/bench/curl-sync" "$D/curl.out" "$BASE/f$s.bin")
			rm -f "$D/curl.out"
			read -r _ oc < <(timed openssl dgst -sha256 "$T/www/f$s.bin")
		fi
		# The builds take turns going first: the first pull of a round runs slower
		# on this disk (4 GiB, one build against itself: by 1.2 and 1.8 s).
		builds=("rbee:$BUILD" ${BEFORE:+"before:$BEFORE"})
		[ $((r % 2)) = 0 ] && [ -n "$BEFORE" ] && builds=("before:$BEFORE" "rbee:$BUILD")
		for b in "${builds[@]}"; do
			sync
			read -r st pull hwm peak state cpu < <(one_pull "f$s.bin" "$D/data-$s-$r" "${b#*:}")
			awk -v s="$s" -v r="$r${BEFORE:+ ${b%%:*}}" -v st="$st" -v p="$pull" -v h="$hwm" -v k="$peak" -v state="$state" \
				-v cpu="$cpu" -v cw="$cw" -v cc="$cc" -v oc="$oc" -v csw="$csw" \
				'function ratio(a, b) {return b > 0 ? sprintf("%.2f", a / b) : "-"}
				BEGIN {printf "| %d | %s | %d | %.2f | %.0f | %.2f | %.1f | %.1f | %s | %.2f / %.2f | %.2f | %.2f | %s | %s | %s |\n", s, r, st, p / 1000, s / (p / 1000), cpu, h / 1024, k / 1024, state, cw, cc, csw, oc, ratio(p / 1000, cw), ratio(p / 1000, csw), ratio(cpu, cc + oc)}'
			if [ -n "$SMAPS" ] && [ -f "$T/smaps.txt" ] && [ "$hwm" -ge $((SMAPS * 1024)) ]; then
				echo "$s MiB, round $r, ${b%%:*}: VmHWM $hwm KiB, $(cat "$T/smaps.txt")" >>"$T/smaps-over.txt"
			fi
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "${b%%:*}" "$pull" "$cw" "$cc" "$oc" "$cpu" "$hwm" >>"$T/rows.tsv"
			rm -rf "$D/data-$s-$r"
		done
	done
	if [ -n "$PERF" ] && [ "$s" = "${SIZES%% *}" ] && command -v perf >/dev/null 2>&1; then
		for b in "rbee:$BUILD" ${BEFORE:+"before:$BEFORE"}; do
			sync
			one_pull "f$s.bin" "$D/data-perf" "${b#*:}" "$PERF.${b%%:*}.data" >/dev/null
			rm -rf "$D/data-perf"
		done
	fi
	rm -f "$T/www/f$s.bin"
done
echo
echo "Medians per size and build (per-round ratios: median of each round's ratio):"
echo
python3 - "$T/rows.tsv" <<'PY'
import statistics as st, sys
rows = {}
for line in open(sys.argv[1]):
    s, b, pull, cw, cc, oc, cpu, hwm = line.split()
    rows.setdefault((int(s), b), []).append((float(pull) / 1000, float(cw), float(cc), float(oc), float(cpu),
                                             int(hwm) / 1024))
ratio = lambda a, b: "%.2f" % (a / b) if b > 0 else "-"
print("| file MiB | build | rounds | pull s | curl -o s | wall / curl (of medians) | wall / curl (per round) | CPU / (curl + openssl) (of medians) | VmHWM MiB min / median / max | pulls at 20 MiB or more |")
print("|---|---|---|---|---|---|---|---|---|---|")
for (s, b), rs in sorted(rows.items()):
    med = [st.median(c) for c in zip(*rs)]
    per = "%.2f" % st.median(r[0] / r[1] for r in rs) if all(r[1] > 0 for r in rs) else "-"
    hwm = [r[5] for r in rs]
    print(f"| {s} | {b} | {len(rs)} | {med[0]:.2f} | {med[1]:.2f} | {ratio(med[0], med[1])} | {per} | "
          f"{ratio(med[4], med[2] + med[3])} | {min(hwm):.1f} / {med[5]:.1f} / {max(hwm):.1f} | "
          f"{sum(h >= 20 for h in hwm)} |")
PY
if [ -f "$T/smaps-over.txt" ]; then
	echo
	echo "Pulls whose VmHWM reached $SMAPS MiB, what was resident at the highest sampled VmRSS (KiB):"
	echo
	sed 's/^/- /' "$T/smaps-over.txt"
fi
