#!/usr/bin/env bash
# Hives that fetch from each other (docs/mirror.md, "Peers"): hives on
# 127.0.0.11 to .14 pull the same model from a fake Hub whose CDN is nginx
# on loopback with one cap shared by every connection, the WAN: each
# request's limit_rate is the cap divided by the answers being sent when it
# starts (nginx's $connections_writing, its own included; idle keep-alive
# connections do not count), and a piece is one request, so all
# connections together move about CAP. Scenarios, each with fresh data
# folders:
#   alone     one hive, no peers
#   peers     four hives, each naming the other three with --peer, at once
#   no-peers  four hives without --peer, at once
#   join      three hives with --peer at once; the fourth starts its pull
#             when the first is half done
#   floor     four hives without --peer at once from the CDN without its
#             cap: what this one machine needs to download, hash and write
#             four copies (four hives here share its cores and its disk)
# Reports per scenario the CDN's bytes (nginx's access log) against the
# model's size, each hive's pull (job created to done), the last one done
# against the hive alone, and each hive's bytes from the CDN and from peers
# (its log).
#
#   bench/fleet.sh [--build DIR] [--size-mib 1024] [--cap 100m] [--port 19400]
#                  [--scenarios "alone peers no-peers join floor"]
set -euo pipefail

BUILD=$(cd "$(dirname "$0")/.." && pwd)/build-bench
SIZE_MIB=1024
CAP=100m
PORT=19400 # nginx; the hives listen on 127.0.0.11 to .14, port PORT+10
SCENARIOS="alone peers no-peers join floor"

while [ $# -gt 0 ]; do
	case $1 in
	--build) BUILD=$2; shift 2 ;;
	--size-mib) SIZE_MIB=$2; shift 2 ;;
	--cap) CAP=$2; shift 2 ;;
	--port) PORT=$2; shift 2 ;;
	--scenarios) SCENARIOS=$2; shift 2 ;;
	*) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_tools
bench_check_build "$BUILD"
bench_tmp $((SIZE_MIB * 6 + 512))
T=$BENCH_T
HPORT=$((PORT + 10))
BIN=$BUILD/rbee-hive
REPO=org/fleet-GGUF
PIDS=()
HUB_PID=
BENCH_CLEANUP+=('for p in "${PIDS[@]}" $HUB_PID; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done')

cap_k=$(python3 -c 'import sys; v=sys.argv[1].lower(); m={"k":1,"m":1024,"g":1048576}; print(int(float(v[:-1])*m[v[-1]]) if v[-1] in m else int(v)//1024)' "$CAP")

# The model: a GGUF of SIZE_MIB, named by its sha256 where nginx serves it.
SHA=$(RBEE_BUILD=$BUILD PYTHONPATH=$BENCH_SRC/tests/fakehub python3 - "$T" "$SIZE_MIB" "$REPO" <<'EOF'
import json, os, sys
import fixtures
t, mib, repo = sys.argv[1], int(sys.argv[2]), sys.argv[3]
g = fixtures.write_gguf(os.path.join(t, "www", "model.gguf"), size=mib << 20, seed=1414)
os.rename(g["path"], os.path.join(t, "www", g["sha256"]))
g["path"] = os.path.join(t, "www", g["sha256"])
cfg = fixtures.make_config([fixtures.make_repo(repo, [fixtures.make_file("fleet.Q4_K_M.gguf", g)])])
with open(os.path.join(t, "hub.json"), "w") as f:
    json.dump(cfg, f)
print(g["sha256"])
EOF
)
SIZE=$((SIZE_MIB * 1048576))

# nginx as the CDN: /repos/TOKEN/SHA256 (the fake Hub's redirects) from www/SHA256.
{
	cat <<EOF
worker_processes 2;
pid $T/nginx/nginx.pid;
error_log $T/nginx/logs/error.log warn;
events { worker_connections 1024; }
http {
	access_log off;
	log_format bytes '\$body_bytes_sent';
	sendfile on;
	keepalive_requests 10000;
	client_body_temp_path $T/nginx/tmp;
	proxy_temp_path $T/nginx/tmp;
	fastcgi_temp_path $T/nginx/tmp;
	uwsgi_temp_path $T/nginx/tmp;
	scgi_temp_path $T/nginx/tmp;
	map \$connections_writing \$cdn_rate {
EOF
	for n in $(seq 1 128); do echo "		$n $((cap_k / n))k;"; done
	echo "		default $((cap_k / 128))k;"
	cat <<EOF
	}
	server {
		listen 127.0.0.1:$PORT;
		location ~ "^/repos/[A-Za-z0-9_=-]+/(?<sha>[0-9a-f]{64})\$" {
			alias $T/www/\$sha;
			limit_rate \$cdn_rate; # CAP_LINE
			access_log $T/nginx/logs/cdn.log bytes;
		}
	}
}
EOF
} >"$T/nginx/nginx.conf"
nginx -p "$T/nginx" -c "$T/nginx/nginx.conf"

python3 "$BENCH_SRC/tests/fakehub/fakehub.py" --config "$T/hub.json" \
	--cdn-base "http://127.0.0.1:$PORT" --ready-file "$T/hub.ready" --exit-with-parent \
	>"$T/hub.log" 2>&1 &
HUB_PID=$!
for _ in $(seq 300); do [ -s "$T/hub.ready" ] && break; sleep 0.1; done
HUB=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["hub"])' "$T/hub.ready")

hive_url() { echo "http://127.0.0.1$1:$HPORT"; }

# Starts hive i (1 to 4) with the given peers; logs to T/SCENARIO-hI.log.
start_hive() { # scenario i peers...
	local s=$1 i=$2 d=$T/$1-h$2 a
	shift 2
	a=()
	for p in "$@"; do a+=(--peer "$(hive_url "$p")"); done
	mkdir -p "$d"
	env -i PATH="$PATH" HOME="$d" HF_ENDPOINT="$HUB" HF_HOME="$d/hf-home" \
		"$BIN" serve --bind "127.0.0.1$i" --port "$HPORT" --data-dir "$d" --hf-cache "$d/hub" \
		--log-level "${FLEET_LOG:-info}" "${a[@]}" >"$T/$s-h$i.log" 2>&1 &
	PIDS+=($!)
	for _ in $(seq 300); do
		curl -fsS -o /dev/null "$(hive_url "$i")/health" 2>/dev/null && return 0
		sleep 0.05
	done
	echo "hive $i did not start: $(cat "$T/$s-h$i.log")" >&2
	exit 1
}

stop_hives() {
	local p
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
	PIDS=()
}

submit() { # i -> job id
	curl -fsS -H 'Content-Type: application/json' \
		-d "{\"operation\":\"model_download\",\"model\":\"$REPO\"}" "$(hive_url "$1")/v1/jobs" |
		python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])'
}

# Submits to every hive given at once (a hive's answer can wait for its catalog's
# sync while another hive writes); appends "i:id" to ids.
submit_all() { # i...
	local i w=()
	for i in "$@"; do
		submit "$i" >"$T/job-$i" &
		w+=($!)
	done
	wait "${w[@]}"
	for i in "$@"; do ids+=("$i:$(cat "$T/job-$i")"); done
}

# "state created_ms updated_ms done_fraction" of a job.
job() { # i id
	curl -fsS "$(hive_url "$1")/v1/jobs/$2" | python3 -c '
import json, sys
j = json.load(sys.stdin)
p = j.get("progress") or {}
f = p.get("bytes_done", 0) / p["bytes_total"] if p.get("bytes_total") else 0
print(j["state"], j["created_ms"], j["updated_ms"], "%.3f" % f)'
}

# Waits (at most 10 minutes) until every job of "i:id ..." has ended.
wait_jobs() {
	local ij st
	for _ in $(seq 3000); do
		local open=0
		for ij in "$@"; do
			read -r st _ < <(job "${ij%%:*}" "${ij#*:}")
			case $st in succeeded | failed | cancelled) ;; *) open=1 ;; esac
		done
		[ $open = 0 ] && return 0
		sleep 0.2
	done
}

# Bytes from the CDN and from peers in a hive's log ("0 0" without peers).
split_of() { # logfile
	python3 - "$1" <<'EOF'
import re, sys
m = re.findall(r"(\d+) bytes from [^,]+, (\d+) from peers", open(sys.argv[1]).read())
print(*(m[-1] if m else ("-", "-")))
EOF
}

ALONE_S=
CAPPED=1
echo "| scenario | hive | pull s | from CDN MiB | from peers MiB | state |"
echo "|---|---|---|---|---|---|"
SUMMARY=()
run() { # scenario
	local s=$1 ids=() i k peers hives t0=0 last=0 id
	: >"$T/nginx/logs/cdn.log"
	# The cap on or off for this scenario.
	local capped=1
	[ "$s" = floor ] && capped=0
	if [ "$capped" != "$CAPPED" ]; then
		local line="limit_rate \$cdn_rate; # CAP_LINE"
		[ "$capped" = 0 ] && line="# CAP_LINE"
		sed -i "s|^\([[:space:]]*\).*# CAP_LINE\$|\1$line|" "$T/nginx/nginx.conf"
		nginx -p "$T/nginx" -c "$T/nginx/nginx.conf" -s reload
		sleep 1
		CAPPED=$capped
	fi
	case $s in
	alone) hives="1" ;;
	*) hives="1 2 3 4" ;;
	esac
	for i in $hives; do
		peers=()
		if [ "$s" = peers ] || [ "$s" = join ]; then
			for k in 1 2 3 4; do [ "$k" != "$i" ] && peers+=("$k"); done
		fi
		start_hive "$s" "$i" "${peers[@]}"
	done
	if [ "$s" = join ]; then
		# The fourth joins when the others are about half done: after half the
		# time of the hive alone (a status poll answers late while hives write).
		local t_join=$(( $(date +%s%3N) + ${ALONE_S:-10000} / 2 ))
		submit_all 1 2 3
		while [ "$(date +%s%3N)" -lt "$t_join" ]; do sleep 0.05; done
		read -r _ _ _ f < <(job 1 "${ids[0]#*:}")
		JOIN_AT=$f
		ids+=("4:$(submit 4)")
	else
		# shellcheck disable=SC2086
		submit_all $hives
	fi
	wait_jobs "${ids[@]}"
	sleep 0.3 # nginx logs a request when it ends
	local first=-1
	for ij in "${ids[@]}"; do
		i=${ij%%:*}
		id=${ij#*:}
		read -r st c u _ < <(job "$i" "$id")
		[ "$first" -lt 0 ] || [ "$c" -lt "$first" ] && first=$c
		[ "$u" -gt "$last" ] && last=$u
		read -r cdn fp < <(split_of "$T/$s-h$i.log")
		awk -v s="$s" -v i="$i" -v p="$(( u - c ))" -v cdn="$cdn" -v fp="$fp" -v st="$st" \
			'BEGIN {printf "| %s | 127.0.0.1%s | %.2f | %s | %s | %s |\n", s, i, p / 1000,
				cdn == "-" ? "-" : sprintf("%.0f", cdn / 1048576), fp == "-" ? "-" : sprintf("%.0f", fp / 1048576), st}'
	done
	stop_hives
	local cdn_total
	cdn_total=$(awk '{s += $1} END {print s + 0}' "$T/nginx/logs/cdn.log")
	local span=$((last - first))
	[ "$s" = alone ] && ALONE_S=$span
	[ "$s" = join ] && s="join (hive 1 at ${JOIN_AT} when the 4th joined)"
	SUMMARY+=("$(awk -v s="$s" -v b="$cdn_total" -v z="$SIZE" -v span="$span" -v a="${ALONE_S:-0}" \
		'BEGIN {printf "| %s | %.2f | %.2f | %.2f | %s |", s, b / z, b / 1048576 / 1024, span / 1000, (a > 0 ? sprintf("%.2f", span / a) : "-")}')")
	[ -n "${FLEET_KEEP:-}" ] && mkdir -p "$FLEET_KEEP" && cp "$T/$1-h"*.log "$FLEET_KEEP/"
	rm -rf "$T/$1-h"*
}

for s in $SCENARIOS; do run "$s"; done
echo
echo "| scenario | CDN bytes / model size | CDN GiB | first start to last done s | / hive alone |"
echo "|---|---|---|---|---|"
for l in "${SUMMARY[@]}"; do echo "$l"; done
echo
echo "model $SIZE_MIB MiB, CDN cap $CAP shared by all connections, build $BUILD"
