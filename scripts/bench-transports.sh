#!/usr/bin/env bash
# UDP, TCP and TLS side by side in one run (issue 16 item 5): sipreg --cpus 1 (pinned to
# CPU 1) with a UDP, a TCP and a TLS listener, the loadgen pinned to CPU 0. Per round,
# alternated:
#   - closed loop (--window 256) over each transport: REGISTER/s and sipreg's CPU per
#     answered REGISTER (--server-pid);
#   - TLS closed loop quiet, then with --handshake-flood FLOOD/s (new connections that
#     send a ClientHello and never finish): the rate on the established connections
#     during the flood, against the quiet one (target: at least 80 %). The loadgen's
#     flood thread shares CPU 0 with its load, so the same pair is also run at a fixed
#     RATE/s that neither side saturates: achieved rate and latency, quiet and flooded.
# Then, once, on a fresh server each: resident memory per idle TCP and TLS connection,
# RSS (/proc/PID/status VmRSS) before and during --hold-connections HOLD, divided by
# HOLD (target for TLS: at most 24 KiB per connection). HOLD is bounded by the
# open-file limit (both processes need HOLD descriptors).
# A throw-away CA and P-256 server certificate for 127.0.0.1 are made with openssl.
# Loopback only, bounded: about ROUNDS x (7 x DURATION + 5) + 2 x (HOLD_S + 10) s.
#
# Usage: scripts/bench-transports.sh [--rounds N] [--duration S] [--flood R] [--hold N]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_NAME=bench-transports
# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
SIPREG="$ROOT/target/release/sipreg"
LOADGEN="$ROOT/target/release/sipreg-loadgen"
ROUNDS=2
DURATION=5
FLOOD=2000
HOLD=10000
HOLD_S=8
RATE_FIXED=100000
USERS=20000
die() { echo "bench-transports.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--flood) FLOOD=$2; shift 2 ;;
	--hold) HOLD=$2; shift 2 ;;
	*) die "unknown argument $1 (usage: $0 [--rounds N] [--duration S] [--flood R] [--hold N])" ;;
	esac
done
[[ $ROUNDS =~ ^[0-9]+$ ]] && [ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 10 ] || die "--rounds is 1..=10"
[[ $DURATION =~ ^[0-9]+$ ]] && [ "$DURATION" -ge 1 ] && [ "$DURATION" -le 20 ] || die "--duration is 1..=20 s"
[[ $FLOOD =~ ^[0-9]+$ ]] && [ "$FLOOD" -ge 1 ] && [ "$FLOOD" -le 50000 ] || die "--flood is 1..=50000 connections/s"
[[ $HOLD =~ ^[0-9]+$ ]] && [ "$HOLD" -ge 100 ] && [ "$HOLD" -le 100000 ] || die "--hold is 100..=100000 connections"
[ -x "$SIPREG" ] && [ -x "$LOADGEN" ] || die "build first: cargo build --release --workspace"
command -v openssl >/dev/null || die "openssl is needed for the test certificate"
# Every descriptor the hard limit allows: the server and the loadgen each hold HOLD.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$HOLD" -le $(($(ulimit -n) - 200)) ] || die "--hold $HOLD needs more than the open-file limit $(ulimit -n) allows"

openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/ca-key.pem" 2>/dev/null
openssl req -x509 -new -key "$WORK/ca-key.pem" -subj /CN=bench-ca -days 2 -out "$WORK/ca.pem" 2>/dev/null
openssl ecparam -name prime256v1 -genkey -noout -out "$WORK/key.ec.pem" 2>/dev/null
openssl pkcs8 -topk8 -nocrypt -in "$WORK/key.ec.pem" -out "$WORK/key.pem"
openssl req -new -key "$WORK/key.pem" -subj /CN=127.0.0.1 -out "$WORK/cert.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1\n' >"$WORK/san.ext"
openssl x509 -req -in "$WORK/cert.csr" -CA "$WORK/ca.pem" -CAkey "$WORK/ca-key.pem" -CAcreateserial \
	-days 2 -extfile "$WORK/san.ext" -out "$WORK/cert.pem" 2>/dev/null

UDP_PORT=17160 TCP_PORT=17160 TLS_PORT=17161
lg() { taskset -c 0 "$LOADGEN" --cpus 0 --domain example.com --quiet "$@"; }
start_server() { # extra flags... -> pid in SERVER_PID
	taskset -c 1 "$SIPREG" --cpus 1 --admin off --domain example.com --log-level warn \
		--stats-interval 0 --no-persist --listen "127.0.0.1:$UDP_PORT" \
		--listen "tcp:127.0.0.1:$TCP_PORT" --listen "tls:127.0.0.1:$TLS_PORT" \
		--tls-cert "$WORK/cert.pem" --tls-key "$WORK/key.pem" "$@" >"$WORK/sipreg.log" 2>&1 &
	SERVER_PID=$!
	STARTED_PIDS+=("$SERVER_PID")
	wait_bound "$SERVER_PID" "$UDP_PORT" || { cat "$WORK/sipreg.log" >&2; die "sipreg did not start"; }
}
transport_flags() { # udp|tcp|tls -> the loadgen's flags for it
	case $1 in
	udp) echo "--target 127.0.0.1:$UDP_PORT --sockets 4" ;;
	tcp) echo "--target 127.0.0.1:$TCP_PORT --transport tcp --connections 4" ;;
	tls) echo "--target 127.0.0.1:$TLS_PORT --transport tls --tls-ca $WORK/ca.pem --connections 4" ;;
	esac
}
closed_loop() { # label transport extra-loadgen-flags... -> prints a line; rate in RATE
	local label=$1 t=$2 out ok us
	shift 2
	# shellcheck disable=SC2046
	out=$(lg $(transport_flags "$t") --users "$USERS" --window 256 --duration "$DURATION" \
		--user-prefix "$t" --json $(server_pid_flags "$SERVER_PID") "$@")
	ok=$(jget ok "$out") us=$(jget us_per_answered "$out")
	RATE=$((${ok:-0} / DURATION))
	printf '%-24s %7d REGISTER/s, sipreg %s us per REGISTER, p50/p99 %s/%s us, failures %s, loadgen CPU %s s\n' \
		"$label" "$RATE" "${us:-?}" "$(jget p50 "$out")" "$(jget p99 "$out")" "$(jget failures "$out")" \
		"$(jget loadgen_cpu_s "$out")"
	LAST_OUT=$out
}
rss_kib() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
hold() { # tcp|tls: fresh server, RSS before and during the hold
	local t=$1 before during out up
	start_server --tcp-connections-max $((HOLD + 1000)) --tls-handshakes-max 1024
	sleep 0.5
	before=$(rss_kib "$SERVER_PID")
	# shellcheck disable=SC2046
	lg $(transport_flags "$t") --hold-connections "$HOLD" --hold-s "$HOLD_S" --json \
		>"$WORK/hold.json" 2>"$WORK/hold.err" &
	local lg_pid=$!
	STARTED_PIDS+=("$lg_pid")
	sleep $((HOLD_S - 2))
	during=$(rss_kib "$SERVER_PID")
	wait "$lg_pid" || true
	forget_pid "$lg_pid"
	out=$(cat "$WORK/hold.json")
	up=$(jget up_at_end "$out")
	stop_pid "$SERVER_PID"
	printf '%-4s hold %d: up %s (all up after %s s, TLS handshakes %s, resumed %s); sipreg RSS %d -> %d KiB: %s KiB per connection\n' \
		"$t" "$HOLD" "${up:-?}" "$(jget all_up_s "$out")" "$(jget tls_handshakes "$out")" "$(jget tls_resumed "$out")" \
		"$before" "$during" \
		"$(awk -v a="$before" -v b="$during" -v n="${up:-0}" 'BEGIN { if (n > 0) printf "%.1f", (b - a) / n; else print "?" }')"
}

echo "bench-transports: $(date -u +%FT%TZ), commit $(git -C "$ROOT" rev-parse --short HEAD), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
	echo "round $round"
	start_server
	for t in udp tcp tls; do closed_loop "$t closed loop" "$t"; done
	closed_loop "tls quiet" tls
	quiet=$RATE
	closed_loop "tls + flood $FLOOD/s" tls --handshake-flood "$FLOOD"
	printf '%-24s %s%% of the quiet rate; flood: %s\n' "" "$((RATE * 100 / (quiet > 0 ? quiet : 1)))" \
		"$(grep -o '"flood":{[^}]*}' <<<"$LAST_OUT" || echo '?')"
	closed_loop "tls quiet at $RATE_FIXED/s" tls --rate "$RATE_FIXED"
	quiet=$RATE
	closed_loop "tls + flood at $RATE_FIXED/s" tls --rate "$RATE_FIXED" --handshake-flood "$FLOOD"
	printf '%-24s %s%% of the quiet rate\n' "" "$((RATE * 100 / (quiet > 0 ? quiet : 1)))"
	stop_pid "$SERVER_PID"
done
hold tcp
hold tls
