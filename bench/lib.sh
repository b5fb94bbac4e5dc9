# shellcheck shell=bash
# Shared by the bench/ scripts (sourced, bash): tools check, a temporary
# directory removed at exit, and Debian's nginx serving $BENCH_T/www on
# loopback with its own config and prefix. Callers set PORT and CAP first.

BENCH_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PATH=$PATH:/usr/sbin

bench_tools() {
	local t
	for t in nginx curl aria2c wget2 /usr/bin/time; do
		command -v "$t" >/dev/null 2>&1 || { "$BENCH_SRC/bench/install-deps"; return; }
	done
}

bench_check_build() { # build dir
	[ -x "$1/xfer-get" ] || {
		echo "no $1/xfer-get: cmake -S . -B $1 -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build $1" >&2
		exit 1
	}
	if grep -q 'CMAKE_BUILD_TYPE:STRING=Debug' "$1/CMakeCache.txt" 2>/dev/null; then
		echo "warning: $1 is a Debug build; benchmark figures need RelWithDebInfo" >&2
	fi
}

# Extra cleanup steps a caller adds (e.g. stopping its daemon).
BENCH_CLEANUP=()
bench_cleanup() {
	local c
	for c in "${BENCH_CLEANUP[@]}"; do eval "$c" || true; done
	if [ -f "$BENCH_T/nginx/nginx.pid" ]; then
		kill "$(cat "$BENCH_T/nginx/nginx.pid")" 2>/dev/null || true
		for _ in $(seq 50); do [ -f "$BENCH_T/nginx/nginx.pid" ] || break; sleep 0.1; done
	fi
	rm -rf "$BENCH_T"
}

bench_tmp() { # MiB of free space needed
	BENCH_T=$(mktemp -d "${TMPDIR:-/tmp}/rbee-bench.XXXXXX")
	chmod 755 "$BENCH_T" # nginx's workers run as another user when started by root
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
	local free_mib
	free_mib=$(df -Pm "$BENCH_T" | awk 'NR==2 {print $4}')
	if [ "$free_mib" -lt "$1" ]; then
		echo "need $1 MiB free in $BENCH_T, have $free_mib" >&2
		exit 1
	fi
	mkdir -p "$BENCH_T/www" "$BENCH_T/out" "$BENCH_T/nginx/logs" "$BENCH_T/nginx/tmp"
}

# bench_dir_in VAR DIR: a mktemp directory in DIR (say /dev/shm, to take the
# disk out of a figure), its path in VAR, removed at exit with the rest.
bench_dir_in() {
	mkdir -p "$2"
	printf -v "$1" '%s' "$(mktemp -d "$2/rbee-bench.XXXXXX")"
	BENCH_CLEANUP+=("rm -rf '${!1}'")
}

bench_fs_type() { # path: the type of the file system it is on (ext4, tmpfs)
	df --output=fstype "$1" | tail -n 1
}

bench_make_file() { # name MiB: random bytes, and NAME.sha256 beside them
	head -c $(($2 * 1048576)) /dev/urandom >"$BENCH_T/www/$1"
	sha256sum "$BENCH_T/www/$1" | cut -d' ' -f1 >"$BENCH_T/www/$1.sha256"
}

# /f serves as fast as it can; /capped/ and /resume/ cap each connection at
# $CAP; /resume/ logs the body bytes of every request, as does /resume-open/
# (not capped).
bench_nginx() {
	local t=$BENCH_T
	cat >"$t/nginx/nginx.conf" <<EOF
worker_processes 2;
pid $t/nginx/nginx.pid;
error_log $t/nginx/logs/error.log warn;
events { worker_connections 512; }
http {
	access_log off;
	log_format bytes '\$body_bytes_sent';
	sendfile on;
	tcp_nopush on;
	keepalive_requests 10000;
	client_body_temp_path $t/nginx/tmp;
	proxy_temp_path $t/nginx/tmp;
	fastcgi_temp_path $t/nginx/tmp;
	uwsgi_temp_path $t/nginx/tmp;
	scgi_temp_path $t/nginx/tmp;
	server {
		listen 127.0.0.1:$PORT;
		root $t/www;
		location /capped/ { alias $t/www/; limit_rate $CAP; }
		location /resume/ { alias $t/www/; limit_rate $CAP; access_log $t/nginx/logs/resume.log bytes; }
		location /resume-open/ { alias $t/www/; access_log $t/nginx/logs/resume.log bytes; }
	}
}
EOF
	nginx -p "$t/nginx" -c "$t/nginx/nginx.conf"
	BASE=http://127.0.0.1:$PORT
	for _ in $(seq 50); do
		curl -sS -o /dev/null "$BASE/" 2>/dev/null && return 0 # any answer will do
		sleep 0.1
	done
	echo "nginx did not answer on $BASE" >&2
	exit 1
}
