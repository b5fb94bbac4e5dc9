#!/usr/bin/env bash
# A fresh hive getting a model from the site's blob store against the same
# from the capped CDN: a one-host Ceph RGW (tests/integration/cephrgw.py) holds
# the file at PREFIX/blobs/<sha256>; nginx on loopback serves it capped at
# $CAP per connection, as a CDN. In each round, in an order rotated per round,
# a fresh `rbee-hive serve` with --blob-store pulls the URL model ref
# (http://127.0.0.1:PORT/capped/f.bin#sha256=HEX: the digest is known, so the
# store is asked first), and a fresh one without it pulls the same ref from
# nginx. Reports each pull's time (the job's updated_ms - created_ms), where
# the bytes came from (rbee_source_bytes_total), and the ratio; and, as the
# store's own pace, `curl -o` of the object from RGW (one connection, signed,
# no hash).
#
#   bench/s3.sh [--build DIR] [--size-mib 1024] [--rounds N] [--cap 40m] [--ports 19300]
#
# Ports: nginx PORT, the daemons PORT+11; RGW and Ceph take their own.
set -euo pipefail

BUILD=$(cd "$(dirname "$0")/.." && pwd)/build-bench
SIZE=1024
ROUNDS=3
PORT=19300
CAP=40m

while [ $# -gt 0 ]; do
	case $1 in
	--build) BUILD=$2; shift 2 ;;
	--size-mib) SIZE=$2; shift 2 ;;
	--rounds) ROUNDS=$2; shift 2 ;;
	--cap) CAP=$2; shift 2 ;;
	--ports) PORT=$2; shift 2 ;;
	*) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2 ;;
	esac
done
API_PORT=$((PORT + 11))
BUCKET=rbee-bench

# shellcheck source=bench/lib.sh
. "$(dirname "$0")/lib.sh"
bench_tools
bench_check_build "$BUILD"
bench_tmp $((SIZE * 4 + 3584))
bench_nginx
T=$BENCH_T
DPID=
RPID=
BENCH_CLEANUP+=('[ -n "$DPID" ] && kill -9 "$DPID" 2>/dev/null')
BENCH_CLEANUP+=('[ -n "$RPID" ] && kill "$RPID" 2>/dev/null && wait "$RPID" 2>/dev/null')

# The cluster, in the foreground of a Python process that stops it on SIGTERM.
python3 "$BENCH_SRC/tests/integration/cephrgw.py" >"$T/rgw.out" 2>&1 &
RPID=$!
for _ in $(seq 900); do
	grep -q '^endpoint=' "$T/rgw.out" 2>/dev/null && break
	kill -0 "$RPID" 2>/dev/null || { cat "$T/rgw.out" >&2; exit 1; }
	sleep 0.1
done
read -r ENDPOINT AK SK < <(sed -n 's/^endpoint=\(.*\) access_key=\(.*\) secret_key=\(.*\)$/\1 \2 \3/p' "$T/rgw.out")
[ -n "$ENDPOINT" ] || { cat "$T/rgw.out" >&2; exit 1; }
export AWS_ACCESS_KEY_ID=$AK AWS_SECRET_ACCESS_KEY=$SK

s3() { # method path [file]
	curl -fsS -o /dev/null -X "$1" --aws-sigv4 aws:amz:us-east-1:s3 -u "$AK:$SK" \
		-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' ${3:+-T "$3"} "$ENDPOINT$2"
}

now_ms() { date +%s%3N; }

bench_make_file f.bin "$SIZE"
HASH=$(cat "$T/www/f.bin.sha256")
s3 PUT "/$BUCKET"
t0=$(now_ms)
s3 PUT "/$BUCKET/site/blobs/$HASH" "$T/www/f.bin"
echo "store: the object put in $(($(now_ms) - t0)) ms (one PUT, curl)" >&2

# Prints "job_s state s3_bytes cdn_bytes" of one fresh hive's pull.
one_pull() { # data_dir extra serve options...
	local data=$1 id state="" job m
	shift
	mkdir -p "$data"
	# Plain http:// URLs are allowed only while the Hub endpoint is on loopback too.
	HF_ENDPOINT=$BASE "$BUILD/rbee-hive" serve --port "$API_PORT" --data-dir "$data" \
		--hf-cache "$data/hub" --connections 8 --log-level warn "$@" >"$T/daemon.log" 2>&1 &
	DPID=$!
	for _ in $(seq 500); do
		curl -fsS -o /dev/null "http://127.0.0.1:$API_PORT/health" 2>/dev/null && break
		sleep 0.01
	done
	id=$(curl -fsS -H 'Content-Type: application/json' \
		-d "{\"operation\":\"model_download\",\"model\":\"$BASE/capped/f.bin#sha256=$HASH\"}" \
		"http://127.0.0.1:$API_PORT/v1/jobs" | python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])')
	# Bounded: 0.2 s polls for at most 10 minutes.
	for _ in $(seq 3000); do
		job=$(curl -fsS "http://127.0.0.1:$API_PORT/v1/jobs/$id")
		state=$(echo "$job" | python3 -c 'import json,sys; print(json.load(sys.stdin)["state"])')
		case $state in succeeded | failed | cancelled) break ;; esac
		sleep 0.2
	done
	[ "$state" = succeeded ] || { echo "$job" >&2; cat "$T/daemon.log" >&2; }
	m=$(curl -fsS "http://127.0.0.1:$API_PORT/metrics")
	kill "$DPID"
	for _ in $(seq 100); do kill -0 "$DPID" 2>/dev/null || break; sleep 0.05; done
	kill -9 "$DPID" 2>/dev/null || true
	wait "$DPID" 2>/dev/null || true
	DPID=
	echo "$job" | python3 -c 'import json,sys; j=json.load(sys.stdin); print("%.2f" % ((j["updated_ms"] - j["created_ms"]) / 1000))' |
		tr '\n' ' '
	echo "$state $(echo "$m" | awk -F' ' '/^rbee_source_bytes_total\{source="s3"\}/ {s=$2} /^rbee_source_bytes_total\{source="cdn"\}/ {c=$2} END {printf "%d %d", s, c}')"
}

echo "| round | from RGW s | MiB/s | bytes s3 / cdn | from the capped CDN s | MiB/s | bytes s3 / cdn | CDN / RGW | curl -o from RGW s |"
echo "|---|---|---|---|---|---|---|---|---|"
for r in $(seq "$ROUNDS"); do
	sync
	if [ $((r % 2)) = 1 ]; then
		read -r a_s a_st a_s3 a_cdn < <(one_pull "$T/a$r" --blob-store "s3://$BUCKET/site" --s3-endpoint "$ENDPOINT")
		rm -rf "$T/a$r"
		sync
		read -r b_s b_st b_s3 b_cdn < <(one_pull "$T/b$r")
		rm -rf "$T/b$r"
	else
		read -r b_s b_st b_s3 b_cdn < <(one_pull "$T/b$r")
		rm -rf "$T/b$r"
		sync
		read -r a_s a_st a_s3 a_cdn < <(one_pull "$T/a$r" --blob-store "s3://$BUCKET/site" --s3-endpoint "$ENDPOINT")
		rm -rf "$T/a$r"
	fi
	[ "$a_st" = succeeded ] && [ "$b_st" = succeeded ] || echo "round $r: $a_st / $b_st" >&2
	sync
	t0=$(now_ms)
	curl -fsS -o /dev/null --aws-sigv4 aws:amz:us-east-1:s3 -u "$AK:$SK" \
		-H 'x-amz-content-sha256: UNSIGNED-PAYLOAD' "$ENDPOINT/$BUCKET/site/blobs/$HASH"
	c_s=$(awk -v ms="$(($(now_ms) - t0))" 'BEGIN {printf "%.2f", ms / 1000}')
	awk -v r="$r" -v z="$SIZE" -v a="$a_s" -v b="$b_s" -v as="$a_s3" -v ac="$a_cdn" -v bs="$b_s3" -v bc="$b_cdn" -v c="$c_s" \
		'BEGIN {printf "| %d | %.2f | %.0f | %d / %d | %.2f | %.0f | %d / %d | %.2f | %.2f |\n", r, a, z / a, as, ac, b, z / b, bs, bc, b / a, c}'
done
