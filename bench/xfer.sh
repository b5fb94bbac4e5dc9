#!/usr/bin/env bash
# Transfer benchmarks: rbee-hive's engine (xfer-get, with SHA-256
# verification) side by side with curl, aria2c and wget2, all against the
# same file served by Debian's nginx on loopback with its own config. Each
# round runs every client once (interleaved, order rotated per round), so a
# noisy machine hurts all of them alike; figures are medians over the rounds.
#
#   bench/xfer.sh [--build DIR] [--before DIR] [--size-mib N] [--rss-size-mib N]
#                 [--rounds N] [--cancels N] [--stages LIST] [--results FILE]
#                 [--perf PREFIX] [--skip CLIENTS] [--out-dir DIR]
#
# Stages (comma separated, default all): open (unthrottled), cap (nginx
# limit_rate per connection), rss (peak RSS for the two file sizes), cancel
# (cancel latency), resume (bytes fetched twice after kill -9, capped and
# unthrottled), trace (how far the SHA-256 trails the bytes written, from
# xfer-get --progress), lag (how far the fresh resume state trails the
# bytes written, sampled every 5 ms by bench/save_lag.py: what a kill -9
# would lose of them; three unthrottled runs, and three of the before
# build). --before adds the xfer-get of another build as the client
# "before" to open, cap, resume and lag; --perf records one unthrottled
# xfer-get (and the before one) with perf record -g and perf stat into
# PREFIX.*.
# curl+sync is curl -o followed by sync(1) of the file: an unverified
# download that is on the disk when it ends, as rbee's is. curl+openssl is
# curl -o, then openssl dgst -sha256 of the file; curl-tee-openssl the
# one-pass verified pipeline, curl | tee FILE | openssl dgst -sha256. --out-dir DIR
# writes the clients' files in DIR (say /dev/shm, to take the disk out of
# the figures; the report names its file system) instead of beside the
# served file. Everything else lives in one mktemp directory, removed at exit
# together with nginx. The page cache is not dropped (that needs root and a
# quiet machine): the served file is in memory for every client alike.
set -euo pipefail

BUILD=$(cd "$(dirname "$0")/.." && pwd)/build-bench
SIZE_MIB=1024
RSS_SIZE_MIB=4096
ROUNDS=3
CANCELS=50
STAGES=open,cap,rss,cancel,resume,trace,lag
RESULTS=
BEFORE=
PERF=
SKIP=
OUT_DIR=
PORT=18700
CAP=40m           # nginx limit_rate per connection
CAP_BPS=41943040  # the same in bytes/s (nginx's m is MiB)
CONNS=8

usage() {
	sed -n '2,31p' "$0" | sed 's/^# \{0,1\}//'
	exit 2
}

while [ $# -gt 0 ]; do
	case $1 in
	--build) BUILD=$2; shift 2 ;;
	--size-mib) SIZE_MIB=$2; shift 2 ;;
	--rss-size-mib) RSS_SIZE_MIB=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--cancels) CANCELS=$2; shift 2 ;;
	--stages) STAGES=$2; shift 2 ;;
	--results) RESULTS=$2; shift 2 ;;
	--before) BEFORE=$2; shift 2 ;;
	--perf) PERF=$2; shift 2 ;;
	--skip) SKIP=$2; shift 2 ;;
	--out-dir) OUT_DIR=$2; shift 2 ;;
	*) usage ;;
	esac
done
has_stage() { case ",$STAGES," in *",$1,"*) return 0 ;; esac; return 1; }
skipped() { case ",$SKIP," in *",$1,"*) return 0 ;; esac; return 1; }

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_tools
bench_check_build "$BUILD"
XG=$BUILD/xfer-get
need_mib=$((SIZE_MIB * 2 + 512))
has_stage rss && need_mib=$((need_mib + RSS_SIZE_MIB * 2))
bench_tmp "$need_mib"
T=$BENCH_T
TSV=$T/results.tsv
: >"$TSV"
bench_nginx
if [ -n "$OUT_DIR" ]; then
	bench_dir_in T_OUT "$OUT_DIR"
	rmdir "$T/out"
	ln -s "$T_OUT" "$T/out"
fi
OUT_FS=$(bench_fs_type "$T/out/")

log() { printf '%s\n' "$*" >&2; }
make_file() { bench_make_file "$@"; }

# One timed run: scenario tool round command... Appends
# "scenario tool round wall_s maxrss_kib user_s sys_s bytes ok" to the TSV.
run_one() {
	local sc=$1 tool=$2 round=$3 out=$4
	shift 4
	rm -f "$T/out/"*
	sync
	local ok=1
	/usr/bin/time -f '%e %M %U %S' -o "$T/time" "$@" >"$T/stdout" 2>"$T/stderr" || ok=0
	local bytes
	bytes=$(stat -c %s "$out" 2>/dev/null || echo 0)
	[ "$ok" = 1 ] || log "$sc/$tool round $round failed: $(cat "$T/stderr" "$T/stdout" | tail -3 | tr '\n' ' ')"
	printf '%s\t%s\t%s\t%s\t%s\n' "$sc" "$tool" "$round" "$(tail -1 "$T/time" | tr ' ' '\t')" "$bytes	$ok" >>"$TSV"
}

# Interleaved rounds over the tools of one scenario; order rotates per round.
# tools: "name|command with @URL@ @OUT@ @HASH@ @SIZE@"
run_scenario() { # scenario url file tools...
	local sc=$1 url=$2 file=$3 t
	shift 3
	local tools=()
	for t in "$@"; do skipped "${t%%|*}" || tools+=("$t"); done
	local n=${#tools[@]}
	local hash size
	hash=$(cat "$T/www/$file.sha256")
	size=$(stat -c %s "$T/www/$file")
	for r in $(seq "$ROUNDS"); do
		for k in $(seq 0 $((n - 1))); do
			local spec=${tools[$(((k + r) % n))]}
			local name=${spec%%|*} cmd=${spec#*|}
			local out=$T/out/$name.bin
			cmd=${cmd//@URL@/$url}
			cmd=${cmd//@OUT@/$out}
			cmd=${cmd//@OUTDIR@/$T/out}
			cmd=${cmd//@NAME@/$name.bin}
			cmd=${cmd//@HASH@/$hash}
			cmd=${cmd//@SIZE@/$size}
			cmd=${cmd//@CHUNK@/$((size / CONNS))}
			log "[$sc] round $r: $name"
			# shellcheck disable=SC2086
			run_one "$sc" "$name" "$r" "$out" $cmd
		done
	done
}

XG_CMD="$XG @URL@ @OUT@ --size @SIZE@ --sha256 @HASH@ --connections $CONNS"
CURL_CMD="curl -fsS -o @OUT@ @URL@"
# curl, then OpenSSL's SHA-256 over the written file: verification done after the transfer.
printf '#!/bin/sh\ncurl -fsS -o "$1" "$2" && openssl dgst -sha256 "$1"\n' >"$T/curl-openssl"
chmod +x "$T/curl-openssl"
CURL_SHA_CMD="$T/curl-openssl @OUT@ @URL@"
# The one-pass verified pipeline: curl's bytes to the file and to OpenSSL's SHA-256 at once.
printf '#!/bin/bash\nset -o pipefail\ncurl -fsS "$2" | tee "$1" | openssl dgst -sha256\n' >"$T/curl-tee"
chmod +x "$T/curl-tee"
CURL_TEE_CMD="$T/curl-tee @OUT@ @URL@"
CURL_SYNC_CMD="$BENCH_SRC/bench/curl-sync @OUT@ @URL@"
# OpenSSL's SHA-256 alone, of the served file (in the page cache): the CPU of hashing a GiB.
OPENSSL_CMD="openssl dgst -sha256 $T/www/f.bin"
BEFORE_TOOL=()
[ -n "$BEFORE" ] && BEFORE_TOOL=("before|$BEFORE/xfer-get @URL@ @OUT@ --size @SIZE@ --sha256 @HASH@ --connections $CONNS")
ARIA_CMD="aria2c -q -x$CONNS -s$CONNS --file-allocation=falloc --allow-overwrite=true -d @OUTDIR@ -o @NAME@ @URL@"
WGET2_CMD="wget2 -q --max-threads=$CONNS --chunk-size=@CHUNK@ -O @OUT@ @URL@"

make_file f.bin "$SIZE_MIB"

if has_stage open; then
	run_scenario open "$BASE/f.bin" f.bin \
		"rbee|$XG_CMD" "${BEFORE_TOOL[@]}" "curl|$CURL_CMD" "curl+sync|$CURL_SYNC_CMD" \
		"openssl|$OPENSSL_CMD" "curl+openssl|$CURL_SHA_CMD" "curl-tee-openssl|$CURL_TEE_CMD" \
		"aria2c|$ARIA_CMD" "wget2|$WGET2_CMD"
fi
if has_stage cap; then
	run_scenario cap "$BASE/capped/f.bin" f.bin \
		"rbee|$XG_CMD" "${BEFORE_TOOL[@]}" "aria2c|$ARIA_CMD" "wget2|$WGET2_CMD"
fi
if has_stage rss; then
	run_scenario rss-small "$BASE/f.bin" f.bin "rbee|$XG_CMD" "aria2c|$ARIA_CMD"
	make_file big.bin "$RSS_SIZE_MIB"
	run_scenario rss-big "$BASE/big.bin" big.bin "rbee|$XG_CMD" "aria2c|$ARIA_CMD"
	rm -f "$T/www/big.bin"
fi

# Cancel latency: a capped download cancelled after 300..1000 ms; xfer-get
# reports how long after the cancel the last byte was written (1 ms polling).
if has_stage cancel; then
	: >"$T/cancel.tsv"
	for _ in $(seq "$CANCELS"); do
		rm -f "$T/out/"*
		after=$((300 + RANDOM % 700))
		"$XG" "$BASE/capped/f.bin" "$T/out/c.part" --size "$((SIZE_MIB * 1048576))" \
			--connections "$CONNS" --cancel-after-ms "$after" >"$T/stdout" 2>"$T/stderr" || true
		python3 -c 'import json,sys; d=json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]); print(d.get("cancel_stop_ms", -1), d.get("cancel_finish_ms", -1), d["result"], sep="\t")' \
			"$T/stdout" >>"$T/cancel.tsv"
	done
fi

# Resume waste: kill -9 a download mid-way, run it again to the end; nginx
# logs the body bytes of every request, so waste = sum - file size. Capped
# (/resume/, 40 MiB/s per connection) at 0.8, 1.5, 2.2 s, and unthrottled
# (/resume-open/) at a quarter, a half and three quarters of curl's time.
resume_one() { # location kill_ms xfer-get
	local loc=$1 kill_ms=$2 xg=$3 size hash pid res sent
	size=$((SIZE_MIB * 1048576))
	hash=$(cat "$T/www/f.bin.sha256")
	rm -f "$T/out/"*
	: >"$T/nginx/logs/resume.log"
	kill -USR1 "$(cat "$T/nginx/nginx.pid")"
	sleep 0.2
	"$xg" "$BASE/$loc/f.bin" "$T/out/r.part" --size "$size" --sha256 "$hash" \
		--connections "$CONNS" --state-file "$T/out/r.state" >/dev/null 2>&1 &
	pid=$!
	sleep "$(awk -v m="$kill_ms" 'BEGIN {print m / 1000}')"
	kill -9 "$pid" 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	sleep 0.3 # nginx writes the log line when the request ends
	local first
	first=$(awk '{s += $1} END {print s + 0}' "$T/nginx/logs/resume.log")
	timeout 120 "$xg" "$BASE/$loc/f.bin" "$T/out/r.part" --size "$size" --sha256 "$hash" \
		--connections "$CONNS" --state-file "$T/out/r.state" >"$T/stdout" 2>"$T/stderr" || true
	sleep 0.5
	res=$(python3 -c 'import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["result"])' "$T/stdout")
	sent=$(awk '{s += $1} END {print s + 0}' "$T/nginx/logs/resume.log")
	printf '%s\t%s\t%s\t%s\t%s\t%s\n' "$kill_ms" "$sent" "$((sent - size))" "$res" "$loc" "$first" >>"$T/resume.tsv"
}
if has_stage resume; then
	: >"$T/resume.tsv"
	for kill_ms in 800 1500 2200; do
		resume_one resume "$kill_ms" "$XG"
	done
	# Unthrottled kills at fractions of one curl -o of the file (its time now).
	t0=$(date +%s%3N)
	curl -fsS -o "$T/out/probe" "$BASE/f.bin"
	curl_ms=$(($(date +%s%3N) - t0))
	for k in 1 2 3 1 2 3; do
		resume_one resume-open "$((curl_ms * k / 4))" "$XG"
		if [ -n "$BEFORE" ]; then
			resume_one resume-open "$((curl_ms * k / 4))" "$BEFORE/xfer-get"
			sed -i '$ s/resume-open/before:resume-open/' "$T/resume.tsv"
		fi
	done
fi

# One unthrottled xfer-get under perf stat and perf record -g (and the
# before build), for the profiles in bench/README.md.
if [ -n "$PERF" ] && command -v perf >/dev/null 2>&1; then
	for b in "rbee:$XG" ${BEFORE:+"before:$BEFORE/xfer-get"}; do
		name=${b%%:*} xg=${b#*:}
		rm -f "$T/out/"*
		sync
		perf stat -e task-clock,context-switches,cpu-migrations,page-faults -o "$PERF.$name.stat" \
			"$xg" "$BASE/f.bin" "$T/out/p.bin" --size "$((SIZE_MIB * 1048576))" \
			--sha256 "$(cat "$T/www/f.bin.sha256")" --connections "$CONNS" >/dev/null
		rm -f "$T/out/"*
		sync
		perf record -q -g -o "$PERF.$name.data" "$xg" "$BASE/f.bin" "$T/out/p.bin" \
			--size "$((SIZE_MIB * 1048576))" --sha256 "$(cat "$T/www/f.bin.sha256")" \
			--connections "$CONNS" >/dev/null 2>&1 || true
	done
fi

if has_stage trace; then
	{
		echo "| scenario | result | wall s | last progress sample at s | written then | hashed then | finished after that s | hashed when half written |"
		echo "|---|---|---|---|---|---|---|---|"
	} >"$T/trace.md"
	for u in f.bin capped/f.bin; do
		rm -f "$T/out/"*
		sync
		python3 "$BENCH_SRC/bench/trace.py" "$XG" "$BASE/$u" "$T/out/t.part" \
			"$((SIZE_MIB * 1048576))" "$(cat "$T/www/f.bin.sha256")" "$CONNS" >>"$T/trace.md"
	done
fi

if has_stage lag; then
	{
		echo "| unthrottled run | samples | fresh state behind the written bytes, MiB: median | p90 | p99 | max |"
		echo "|---|---|---|---|---|---|"
	} >"$T/lag.md"
	for k in 1 2 3; do
		for b in "rbee:$XG" ${BEFORE:+"before:$BEFORE/xfer-get"}; do
			rm -f "$T/out/"*
			sync
			python3 "$BENCH_SRC/bench/save_lag.py" "${b%%:*} $k" "${b#*:}" "$BASE/f.bin" \
				"$T/out/l.part" "$((SIZE_MIB * 1048576))" "$(cat "$T/www/f.bin.sha256")" \
				"$CONNS" >>"$T/lag.md"
		done
	done
fi

[ -n "$RESULTS" ] && cp "$TSV" "$RESULTS"
[ -n "$RESULTS" ] && [ -f "$T/cancel.tsv" ] && cp "$T/cancel.tsv" "$RESULTS.cancel"
[ -n "$RESULTS" ] && [ -f "$T/resume.tsv" ] && cp "$T/resume.tsv" "$RESULTS.resume"

echo "Clients write to a $OUT_FS file system."
echo
python3 "$BENCH_SRC/bench/report.py" --tsv "$TSV" --cancel "$T/cancel.tsv" --resume "$T/resume.tsv" \
	--cap-bps "$CAP_BPS" --connections "$CONNS"
[ -f "$T/trace.md" ] && { echo; cat "$T/trace.md"; }
[ -f "$T/lag.md" ] && { echo; cat "$T/lag.md"; }
exit 0
