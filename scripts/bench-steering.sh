#!/usr/bin/env bash
# Receive steering benchmark (issue 13): the load of one proxy, from ONE source socket (and,
# for comparison, from 64), against
#   sipreg --cores 1 | sipreg --cores 2 --steering hash | sipreg --cores 2 --steering ebpf
#   | Kamailio with 2 UDP children,
# side by side in one run. For each target it measures:
#   (a) server CPU per REGISTER (refresh) at a fixed moderate rate (default 20 000/s), from
#       utime+stime of every server process (/proc/PID/stat, sampled by the loadgen around its
#       measured phase) divided by answered requests;
#   (b) the machine's softirq time per REGISTER over the same phase (/proc/stat), the part of
#       receive work the kernel does (where the steering program runs);
#   (c) requests forwarded between cores and steered to their owner (sipreg's /metrics);
#   (d) the saturation rate: closed loop (--window) for a fixed time, answered per second;
#   (e) server CPU per REGISTER again with sipp (new AORs, scripts/sipp/register.xml) at the
#       same rate from one socket: sipp sends in bursts (per millisecond), the loadgen
#       spreads its sends evenly, and a core's wake-ups differ accordingly;
# then prints the ratios the issue names and writes everything to perf/results/steering-<date>.txt.
#
# The loadgen runs pinned on CPU 0; `--cores 1` runs on CPU 1, two cores on CPUs 0 and 1, so
# on a 2-CPU machine one server core shares its CPU with the loadgen: saturation figures for
# 2 server cores are then a floor, not the server's ceiling. Moderate-rate CPU figures count
# the server's own CPU time only.
#
# Usage: scripts/bench-steering.sh [--rate N] [--duration S] [--users N] [--window N]
#                                  [--no-build] [--no-kamailio] [--port-base N]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

RATE=20000
DURATION=8
USERS=20000
WINDOW=256
BUILD=1
KAMAILIO=1
PORT_BASE=16060
DOMAIN=example.com
SIPREG_BIN="$ROOT/target/release/sipreg"
LOADGEN="$ROOT/target/release/sipreg-loadgen"

usage() { sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "bench-steering.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
	case "$1" in
	--rate) RATE=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	--users) USERS=$2; shift 2 ;;
	--window) WINDOW=$2; shift 2 ;;
	--no-build) BUILD=0; shift ;;
	--no-kamailio) KAMAILIO=0; shift ;;
	--port-base) PORT_BASE=$2; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	*) die "unknown option '$1' (try --help)" ;;
	esac
done
for v in RATE DURATION USERS WINDOW PORT_BASE; do
	[[ ${!v} =~ ^[0-9]+$ ]] && [ "${!v}" -gt 0 ] || die "--$(tr 'A-Z_' 'a-z-' <<<"$v") must be a positive integer"
done
[ "$DURATION" -le 120 ] || die "--duration is at most 120 s"

SIP_PORT=$PORT_BASE
ADMIN_PORT=$((PORT_BASE + 1))
KAM_PORT=$((PORT_BASE + 10))

BENCH_NAME=bench-steering.sh
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"
softirq_ticks() { awk '/^cpu / {print $8}' /proc/stat; }
metric() { # name -> sum of the samples of a sipreg metric (0 when absent, or no sipreg)
	{ curl -s "http://127.0.0.1:$ADMIN_PORT/metrics" 2>/dev/null || true; } |
		awk -v n="$1" '$1 == n || index($1, n "{") == 1 {s += $2} END {printf "%d\n", s}'
}

JSON=
loadgen() {
	local pid
	taskset -c 0 "$LOADGEN" --cpus 0 --json --quiet --domain "$DOMAIN" "$@" >"$WORK/lg.json" 2>"$WORK/lg.err" &
	pid=$!
	STARTED_PIDS+=("$pid")
	wait "$pid" || true
	forget_pid "$pid"
	JSON=$(<"$WORK/lg.json")
}

OUT_LINES=()
say() { echo "$*"; OUT_LINES+=("$*"); }
declare -A CPU SOFT FWD STEER SAT1 SAT64 SIPP

server_ticks() { # pid -> utime+stime ticks of it and its children
	local p t=0
	for p in "$1" $(pgrep -P "$1" 2>/dev/null || true); do
		t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
	done
	echo "$t"
}

# measure TARGET PORT PID: fills CPU/SOFT/FWD/STEER/SAT1/SAT64 for TARGET
measure() {
	local target=$1 port=$2 pid=$3 flags ticks0 ticks1 hz answered f0 f1 s0 s1 json
	flags=$(server_pid_flags "$pid")
	hz=$(getconf CLK_TCK)
	# Register everyone first (not measured), from one socket.
	loadgen --target "127.0.0.1:$port" --sockets 1 --scenario register --users "$USERS" \
		--count "$USERS" --user-prefix "st" --window 256 --timeout-ms 5000
	f0=$(metric sipreg_forwards_total); s0=$(metric 'sipreg_steering_received_total{placement="owner"}')
	ticks0=$(softirq_ticks)
	# shellcheck disable=SC2086
	loadgen --target "127.0.0.1:$port" --sockets 1 --scenario refresh --users "$USERS" \
		--user-prefix "st" --rate "$RATE" --duration "$DURATION" $flags
	ticks1=$(softirq_ticks)
	json=$JSON
	f1=$(metric sipreg_forwards_total); s1=$(metric 'sipreg_steering_received_total{placement="owner"}')
	answered=$(jget ok "$json")
	CPU[$target]=$(jget us_per_answered "$json")
	SOFT[$target]=$(awk -v t="$((ticks1 - ticks0))" -v hz="$hz" -v n="${answered:-0}" \
		'BEGIN { if (n > 0) printf "%.2f", t / hz * 1e6 / n; else print "-" }')
	FWD[$target]=$((f1 - f0)); STEER[$target]=$((s1 - s0))
	echo "  [$target] $RATE/s from 1 socket: answered ${answered:-?}, server CPU ${CPU[$target]:-?} µs/REGISTER, softirq ${SOFT[$target]} µs/REGISTER, forwarded ${FWD[$target]}, steered ${STEER[$target]}" >&2
	for sockets in 1 64; do
		loadgen --target "127.0.0.1:$port" --sockets "$sockets" --scenario refresh --users "$USERS" \
			--user-prefix "st" --window "$WINDOW" --duration "$DURATION" --timeout-ms 2000
		json=$JSON
		local rate
		rate=$(awk -v n="$(jget ok "$json")" -v d="$DURATION" 'BEGIN { printf "%d", n / d }')
		if [ "$sockets" = 1 ]; then SAT1[$target]=$rate; else SAT64[$target]=$rate; fi
		echo "  [$target] saturation from $sockets socket(s): $rate answered/s" >&2
	done
	command -v sipp >/dev/null || { SIPP[$target]=-; return; }
	local calls=$((RATE * DURATION)) t0 t1 ok
	t0=$(server_ticks "$pid")
	taskset -c 0 timeout $((DURATION * 4 + 30)) sipp -sf "$ROOT/scripts/sipp/register.xml" -i 127.0.0.1 \
		-p 0 -nostdin -r "$RATE" -rp 1000 -m "$calls" -l 5000 -timeout "$((DURATION * 4 + 20))s" \
		"127.0.0.1:$port" >"$WORK/sipp-$target.out" 2>&1 || true
	t1=$(server_ticks "$pid")
	ok=$(awk '/Successful call/ {v = $NF} END {print v + 0}' "$WORK/sipp-$target.out")
	SIPP[$target]=$(awk -v t="$((t1 - t0))" -v hz="$hz" -v n="$ok" \
		'BEGIN { if (n > 0) printf "%.2f", t / hz * 1e6 / n; else print "-" }')
	echo "  [$target] sipp $RATE/s from 1 socket: $ok of $calls answered 200, server CPU ${SIPP[$target]} µs/REGISTER" >&2
}

run_sipreg() { # target args...
	local target=$1; shift
	port_taken "$SIP_PORT" && die "port $SIP_PORT is taken (use --port-base)"
	"$SIPREG_BIN" --listen "127.0.0.1:$SIP_PORT" --admin "127.0.0.1:$ADMIN_PORT" --domain "$DOMAIN" --domain sipreg.test \
		--log-level warn --stats-interval 0 --no-persist "$@" >"$WORK/$target.log" 2>&1 &
	local pid=$!
	STARTED_PIDS+=("$pid")
	if ! wait_bound "$pid" "$SIP_PORT"; then
		say "$target: did not start ($(head -3 "$WORK/$target.log" | tr '\n' ' '))"
		stop_pid "$pid"; return
	fi
	sleep 0.5
	measure "$target" "$SIP_PORT" "$pid"
	grep -i "warn" "$WORK/$target.log" | head -3 | sed "s/^/  [$target] log: /" >&2 || true
	stop_pid "$pid"
}

run_kamailio() {
	command -v kamailio >/dev/null || {
		echo "bench-steering.sh: installing kamailio (apt-get)" >&2
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kamailio) >/dev/null 2>&1 ||
			{ say "kamailio: not installed and apt-get failed"; return; }
	}
	port_taken "$KAM_PORT" && die "port $KAM_PORT is taken (use --port-base)"
	kamailio -f "$ROOT/bench/kamailio/kamailio.cfg" -l "udp:127.0.0.1:$KAM_PORT" -n 2 \
		-DD -E -m 2048 -M 16 -w "$WORK" -P "$WORK/kamailio.pid" >"$WORK/kamailio.log" 2>&1 &
	local pid=$!
	STARTED_PIDS+=("$pid")
	if ! wait_bound "$pid" "$KAM_PORT"; then
		say "kamailio: did not start ($(tail -3 "$WORK/kamailio.log" | tr '\n' ' '))"
		stop_pid "$pid"; return
	fi
	sleep 1
	measure kamailio2 "$KAM_PORT" "$pid"
	stop_pid "$pid"
}

if [ "$BUILD" = 1 ]; then
	echo "bench-steering.sh: cargo build --release" >&2
	cargo build --release --workspace >&2
fi
[ -x "$SIPREG_BIN" ] && [ -x "$LOADGEN" ] || die "build sipreg and sipreg-loadgen first"

DATE=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$ROOT/perf/results"
RESULTS="$ROOT/perf/results/steering-$DATE.txt"
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
say "sipreg steering bench $DATE  commit $COMMIT$( [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ] && echo ' (dirty)')"
say "host: $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}') x$(nproc), $(uname -r), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
say "load: refresh, $USERS users, $RATE/s for ${DURATION}s from one source socket; saturation: --window $WINDOW for ${DURATION}s from 1 and 64 sockets"

run_sipreg cores1 --cpus 1
run_sipreg hash2 --cpus 0,1 --steering hash
run_sipreg ebpf2 --cpus 0,1 --steering ebpf
[ "$KAMAILIO" = 1 ] && run_kamailio

say ""
say "$(printf '%-10s %14s %14s %10s %10s %12s %12s %14s' target 'cpu µs/REG' 'softirq µs' forwarded steered 'sat 1 sock' 'sat 64 sock' 'sipp cpu µs')"
for t in cores1 hash2 ebpf2 kamailio2; do
	[ -n "${CPU[$t]+x}" ] || continue
	say "$(printf '%-10s %14s %14s %10s %10s %12s %12s %14s' "$t" "${CPU[$t]:--}" "${SOFT[$t]:--}" "${FWD[$t]:--}" "${STEER[$t]:--}" "${SAT1[$t]:--}" "${SAT64[$t]:--}" "${SIPP[$t]:--}")"
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0 && b > 0) printf "%.2f", a / b; else print "-" }'; }
say ""
say "cpu per REGISTER, ebpf2 / cores1 (target <= 1.15): $(ratio "${CPU[ebpf2]:-0}" "${CPU[cores1]:-0}")"
say "cpu per REGISTER, hash2 / cores1: $(ratio "${CPU[hash2]:-0}" "${CPU[cores1]:-0}")"
say "cpu per REGISTER, kamailio2 / ebpf2 (target >= 3): $(ratio "${CPU[kamailio2]:-0}" "${CPU[ebpf2]:-0}")"
say "with sipp: ebpf2 / cores1 $(ratio "${SIPP[ebpf2]:-0}" "${SIPP[cores1]:-0}"), hash2 / cores1 $(ratio "${SIPP[hash2]:-0}" "${SIPP[cores1]:-0}"), kamailio2 / ebpf2 $(ratio "${SIPP[kamailio2]:-0}" "${SIPP[ebpf2]:-0}")"
say "saturation 1 socket, ebpf2 / cores1 (target >= 1.7): $(ratio "${SAT1[ebpf2]:-0}" "${SAT1[cores1]:-0}")"
say "saturation 64 sockets, ebpf2 / cores1 (target >= 1.7): $(ratio "${SAT64[ebpf2]:-0}" "${SAT64[cores1]:-0}")"
printf '%s\n' "${OUT_LINES[@]}" >"$RESULTS"
echo "written to ${RESULTS#"$ROOT"/}" >&2
