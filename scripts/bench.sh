#!/usr/bin/env bash
# Side-by-side benchmark: sipreg vs Kamailio vs a bare UDP echo (the machine's I/O ceiling).
#
# For each target, pinned to one core with the loadgen pinned to another, it measures:
#   (a) the highest REGISTER (refresh) rate with <= 0.1 % failures: a doubling ramp then a
#       bisection over --rate, each step a short bounded open-loop run; then p50/p99/p99.9 at
#       50 % of that rate;
#   (b) server CPU per REGISTER (utime+stime of every server process, /proc/PID/stat, sampled by
#       the loadgen around its measured phase only, divided by answered requests), for new
#       registrations and for refreshes, at 50 % of the max rate;
#   (e) resident memory per binding after N registrations (default 1M);
# then (d) prints ratio tables and writes everything to perf/results/bench-<date>.txt.
#
# It cleans up every process it started (by PID, on EXIT/INT/TERM), refuses to run when its
# ports are taken, and only ever sends to 127.0.0.1.
#
# Usage: scripts/bench.sh [--only sipreg|kamailio|echo]... [--quick] [--no-build]
#                         [--sipreg-bin PATH] [--server-cpu N] [--loadgen-cpu N]
#                         [--mem-users N] [--port-base N]
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

ONLY=()
QUICK=0
BUILD=1
SIPREG_BIN="$ROOT/target/release/sipreg"
LOADGEN="$ROOT/target/release/sipreg-loadgen"
SERVER_CPU=1
LOADGEN_CPU=0
MEM_USERS=1000000
PORT_BASE=15060
DOMAIN=example.com
SIPREG_ARGS=${SIPREG_ARGS:-}

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
die() { echo "bench.sh: $*" >&2; exit 2; }

while [ $# -gt 0 ]; do
	case "$1" in
	--only) [ $# -ge 2 ] || die "--only needs sipreg, kamailio or echo"
		case "$2" in sipreg|kamailio|echo) ONLY+=("$2") ;; *) die "--only: unknown target '$2' (sipreg, kamailio, echo)" ;; esac
		shift 2 ;;
	--quick) QUICK=1; shift ;;
	--no-build) BUILD=0; shift ;;
	--sipreg-bin) SIPREG_BIN=$2; shift 2 ;;
	--server-cpu) SERVER_CPU=$2; shift 2 ;;
	--loadgen-cpu) LOADGEN_CPU=$2; shift 2 ;;
	--mem-users) MEM_USERS=$2; shift 2 ;;
	--port-base) PORT_BASE=$2; shift 2 ;;
	-h|--help) usage; exit 0 ;;
	*) die "unknown option '$1' (try --help)" ;;
	esac
done
[ ${#ONLY[@]} -gt 0 ] || ONLY=(sipreg kamailio echo)
wants() { local t; for t in "${ONLY[@]}"; do [ "$t" = "$1" ] && return 0; done; return 1; }

if [ "$QUICK" = 1 ]; then
	STEP_S=1; LAT_S=2; CPU_S=2; SEARCH_USERS=20000; BISECT=3; CPU_NEW_USERS=20000
	[ "$MEM_USERS" = 1000000 ] && MEM_USERS=100000
else
	STEP_S=3; LAT_S=5; CPU_S=4; SEARCH_USERS=50000; BISECT=5; CPU_NEW_USERS=100000
fi
RATE_START=2000
RATE_MAX=4000000
FAIL_MAX=0.001   # <= 0.1 % failures
STEP_TIMEOUT_MS=1000

NCPU=$(nproc)
[ "$SERVER_CPU" -lt "$NCPU" ] && [ "$LOADGEN_CPU" -lt "$NCPU" ] || die "--server-cpu/--loadgen-cpu must be < $NCPU"
[ "$SERVER_CPU" != "$LOADGEN_CPU" ] || echo "bench.sh: warning: server and loadgen share CPU $SERVER_CPU" >&2

SIPREG_PORT=$PORT_BASE
KAM_PORT=$((PORT_BASE + 10))
ECHO_PORT=$((PORT_BASE + 20))
KAM_CTL=/tmp/kamailio-bench-ctl.sock

# ---------------------------------------------------------------- process bookkeeping
BENCH_NAME=bench.sh
# shellcheck source=scripts/bench-lib.sh
source "$ROOT/scripts/bench-lib.sh"

# Runs the loadgen in the background of *this* shell (never in a $(...) subshell) and waits,
# so INT/TERM reach our trap at once; its JSON result is left in $JSON.
JSON=
loadgen() {
	local pid
	taskset -c "$LOADGEN_CPU" "$LOADGEN" --cpus "$LOADGEN_CPU" --json --quiet --domain "$DOMAIN" "$@" \
		>"$WORK/lg.json" 2>"$WORK/lg.err" &
	pid=$!
	STARTED_PIDS+=("$pid")
	wait "$pid" || true
	forget_pid "$pid"
	JSON=$(<"$WORK/lg.json")
}

rss_kb() { # sum of VmRSS over pids
	local total=0 p v
	for p in "$@"; do
		v=$(awk '/^VmRSS:/ {print $2}' "/proc/$p/status" 2>/dev/null || echo 0)
		total=$((total + ${v:-0}))
	done
	echo "$total"
}

pss_kb() { # sum of Pss over pids (shared pages split between the processes that map them)
	local total=0 p v
	for p in "$@"; do
		v=$(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)
		total=$((total + ${v:-0}))
	done
	echo "$total"
}

OUT_LINES=()
say() { echo "$*"; OUT_LINES+=("$*"); }

declare -A MAXRATE P50 P99 P999 CPU_NEW CPU_REF MEM_B MEM_HOW

# ---------------------------------------------------------------- measurements
# search TARGET PORT PIDFLAGS EXPECTFLAGS...: sets MAXRATE[TARGET]
search() {
	local target=$1 port=$2 pidflags=$3; shift 3
	local lo=0 hi=0 rate=$RATE_START json ok sent fails ratio pass i
	step() { # rate extra... -> 0 pass / 1 fail
		local r=$1; shift
		loadgen --target "127.0.0.1:$port" --scenario refresh --users "$SEARCH_USERS" \
			--user-prefix "s${r}u" --rate "$r" --duration "$STEP_S" --timeout-ms "$STEP_TIMEOUT_MS" "$@"
		json=$JSON
		sent=$(jget sent "$json"); ok=$(jget ok "$json"); fails=$(jget failures "$json")
		if [ -z "$sent" ]; then
			echo "    rate $r/s: loadgen failed: $(head -2 "$WORK/lg.err")" >&2
			return 1
		fi
		# Pass: <= 0.1 % failures, and the loadgen really offered the rate (>= 97 %).
		pass=$(awk -v s="$sent" -v f="$fails" -v r="$r" -v d="$STEP_S" -v m="$FAIL_MAX" \
			'BEGIN { print (s > 0 && f / s <= m && s >= 0.97 * r * d) ? 1 : 0 }')
		echo "    rate $r/s: sent $sent ok $ok failures $fails -> $([ "$pass" = 1 ] && echo pass || echo fail)" >&2
		[ "$pass" = 1 ]
	}
	echo "  [$target] rate search (refresh, $SEARCH_USERS users, ${STEP_S}s steps)" >&2
	while [ "$rate" -le "$RATE_MAX" ]; do
		if step "$rate" "$@"; then lo=$rate; rate=$((rate * 2)); else hi=$rate; break; fi
	done
	[ "$hi" = 0 ] && hi=$((lo * 2))
	if [ "$lo" -gt 0 ]; then
		for i in $(seq "$BISECT"); do
			[ $((hi - lo)) -le $((lo / 20)) ] && break
			rate=$(((lo + hi) / 2))
			if step "$rate" "$@"; then lo=$rate; else hi=$rate; fi
		done
	fi
	MAXRATE[$target]=$lo
}

latency_at_half() { # target port extra...
	local target=$1 port=$2; shift 2
	local rate=$((MAXRATE[$target] / 2)) json
	[ "$rate" -gt 0 ] || { P50[$target]=-; P99[$target]=-; P999[$target]=-; return; }
	loadgen --target "127.0.0.1:$port" --scenario refresh --users "$SEARCH_USERS" \
		--user-prefix "l${rate}u" --rate "$rate" --duration "$LAT_S" "$@"
	json=$JSON
	P50[$target]=$(jget p50 "$json"); P99[$target]=$(jget p99 "$json"); P999[$target]=$(jget p99.9 "$json")
	echo "  [$target] latency at $rate/s: p50 ${P50[$target]} p99 ${P99[$target]} p99.9 ${P999[$target]} µs" >&2
}

cpu_per_register() { # target port pidflags extra...
	local target=$1 port=$2 pidflags=$3; shift 3
	local rate=$((MAXRATE[$target] / 2)) json n
	[ "$rate" -gt 0 ] || rate=1000
	n=$((rate * CPU_S)); [ "$n" -le "$CPU_NEW_USERS" ] || n=$CPU_NEW_USERS
	# shellcheck disable=SC2086
	loadgen --target "127.0.0.1:$port" --scenario register --users "$n" --count "$n" \
		--user-prefix "c$$u" --rate "$rate" $pidflags "$@"
	json=$JSON
	CPU_NEW[$target]=$(jget us_per_answered "$json")
	# shellcheck disable=SC2086
	loadgen --target "127.0.0.1:$port" --scenario refresh --users "$SEARCH_USERS" \
		--user-prefix "r$$u" --rate "$rate" --duration "$CPU_S" $pidflags "$@"
	json=$JSON
	CPU_REF[$target]=$(jget us_per_answered "$json")
	echo "  [$target] server CPU per REGISTER at $rate/s: new ${CPU_NEW[$target]:-?} µs, refresh ${CPU_REF[$target]:-?} µs" >&2
}

memory_per_binding() { # target port pid...
	local target=$1 port=$2; shift 2
	local before after json answered shm_before shm_after
	before=$(rss_kb "$@")
	[ "$target" = kamailio ] && shm_before=$(kam_shm_used)
	loadgen --target "127.0.0.1:$port" --scenario register --users "$MEM_USERS" --count "$MEM_USERS" \
		--user-prefix "m$$u" --window 512 --timeout-ms 5000
	json=$JSON
	answered=$(jget ok "$json")
	sleep 1
	after=$(rss_kb "$@")
	if [ -z "$answered" ] || [ "$answered" = 0 ]; then
		MEM_B[$target]=-; MEM_HOW[$target]="no registration succeeded"; return
	fi
	if [ "$target" = kamailio ] && [ -n "${shm_before:-}" ]; then
		shm_after=$(kam_shm_used)
		MEM_B[$target]=$(((shm_after - shm_before) / answered))
		MEM_HOW[$target]="shm real_used delta (kamcmd core.shmmem, allocator overhead included) / $answered bindings; RSS-sum delta $(((after - before) * 1024 / answered)) B, Pss-sum now $(pss_kb "$@") kB"
	else
		MEM_B[$target]=$(((after - before) * 1024 / answered))
		MEM_HOW[$target]="VmRSS delta $((after - before)) kB / $answered bindings"
	fi
	echo "  [$target] memory per binding: ${MEM_B[$target]} B (${MEM_HOW[$target]})" >&2
}

kam_shm_used() {
	kamcmd -s "unix:$KAM_CTL" core.shmmem 2>/dev/null | awk '/real_used:/ {print $2; exit}'
}

# ---------------------------------------------------------------- targets
run_sipreg() {
	[ -x "$SIPREG_BIN" ] || { say "sipreg: $SIPREG_BIN not found"; return; }
	port_taken "$SIPREG_PORT" && die "port $SIPREG_PORT is taken: refusing to run (use --port-base)"
	# shellcheck disable=SC2086
	taskset -c "$SERVER_CPU" "$SIPREG_BIN" --listen "127.0.0.1:$SIPREG_PORT" --cpus "$SERVER_CPU" \
		--domain "$DOMAIN" --log-level warn --data-dir "$(mktemp -d "$WORK/data.XXXXXX")" $SIPREG_ARGS >"$WORK/sipreg.log" 2>&1 &
	local pid=$!
	STARTED_PIDS+=("$pid")
	if ! wait_bound "$pid" "$SIPREG_PORT"; then
		say "sipreg: did not listen on 127.0.0.1:$SIPREG_PORT (exited? log: $(head -3 "$WORK/sipreg.log" | tr '\n' ' '))"
		stop_pid "$pid"; return
	fi
	local flags; flags=$(server_pid_flags "$pid")
	search sipreg "$SIPREG_PORT" "$flags"
	latency_at_half sipreg "$SIPREG_PORT"
	cpu_per_register sipreg "$SIPREG_PORT" "$flags"
	memory_per_binding sipreg "$SIPREG_PORT" "$pid"
	stop_pid "$pid"
}

run_kamailio() {
	if ! command -v kamailio >/dev/null; then
		echo "bench.sh: installing kamailio (apt-get)" >&2
		(apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq kamailio) >/dev/null 2>&1 \
			|| { say "kamailio: not installed and apt-get failed"; return; }
	fi
	port_taken "$KAM_PORT" && die "port $KAM_PORT is taken: refusing to run (use --port-base)"
	[ -e "$KAM_CTL" ] && ! pgrep -f "$KAM_CTL" >/dev/null 2>&1 && rm -f "$KAM_CTL"
	taskset -c "$SERVER_CPU" kamailio -f "$ROOT/bench/kamailio/kamailio.cfg" -l "udp:127.0.0.1:$KAM_PORT" \
		-DD -E -m 2048 -M 16 -w "$WORK" -P "$WORK/kamailio.pid" >"$WORK/kamailio.log" 2>&1 &
	local pid=$!
	STARTED_PIDS+=("$pid")
	if ! wait_bound "$pid" "$KAM_PORT"; then
		say "kamailio: did not start (log: $(tail -3 "$WORK/kamailio.log" | tr '\n' ' '))"
		stop_pid "$pid"; return
	fi
	sleep 0.5 # let it fork its workers
	local flags pids; flags=$(server_pid_flags "$pid")
	pids="$pid $(pgrep -P "$pid" | tr '\n' ' ')"
	search kamailio "$KAM_PORT" "$flags"
	latency_at_half kamailio "$KAM_PORT"
	cpu_per_register kamailio "$KAM_PORT" "$flags"
	# shellcheck disable=SC2086
	memory_per_binding kamailio "$KAM_PORT" $pids
	stop_pid "$pid"
	rm -f "$KAM_CTL"
}

run_echo() {
	port_taken "$ECHO_PORT" && die "port $ECHO_PORT is taken: refusing to run (use --port-base)"
	taskset -c "$SERVER_CPU" "$LOADGEN" echo --listen "127.0.0.1:$ECHO_PORT" --cpus "$SERVER_CPU" \
		>"$WORK/echo.log" 2>&1 &
	local pid=$!
	STARTED_PIDS+=("$pid")
	wait_bound "$pid" "$ECHO_PORT" || { say "echo: did not start"; stop_pid "$pid"; return; }
	local flags; flags=$(server_pid_flags "$pid")
	search echo "$ECHO_PORT" "$flags" --expect echo
	latency_at_half echo "$ECHO_PORT" --expect echo
	cpu_per_register echo "$ECHO_PORT" "$flags" --expect echo
	MEM_B[echo]=-; MEM_HOW[echo]="(keeps no state)"
	stop_pid "$pid"
}

# ---------------------------------------------------------------- main
if [ "$BUILD" = 1 ]; then
	echo "bench.sh: cargo build --release" >&2
	cargo build --release --workspace >&2
fi
[ -x "$LOADGEN" ] || die "$LOADGEN not built"

DATE=$(date -u +%Y%m%dT%H%M%SZ)
mkdir -p "$ROOT/perf/results"
RESULTS="$ROOT/perf/results/bench-$DATE.txt"
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo unknown)
say "sipreg bench $DATE  commit $COMMIT$( [ -n "$(git -C "$ROOT" status --porcelain 2>/dev/null)" ] && echo ' (dirty)')"
say "host: $(lscpu | awk -F: '/Model name/ {gsub(/^ +/, "", $2); print $2}') x$NCPU, $(uname -r), load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
say "pinning: server on CPU $SERVER_CPU, loadgen on CPU $LOADGEN_CPU; quick=$QUICK; targets: ${ONLY[*]}"
say "rate search: refresh scenario, $SEARCH_USERS users, ${STEP_S}s open-loop steps, pass = <= 0.1 % failures (timeout ${STEP_TIMEOUT_MS} ms) and >= 97 % of the rate offered"

wants sipreg && run_sipreg
wants kamailio && run_kamailio
wants echo && run_echo

fmt() { [ -n "${1:-}" ] && echo "$1" || echo -; }
ratio() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a+0 > 0 && b+0 > 0) printf "%.2f", a / b; else print "-" }'; }

say ""
say "$(printf '%-9s %12s %9s %9s %9s %13s %13s %14s' target max_rate/s p50_us p99_us p99.9_us cpu_new_us cpu_refr_us mem_B/binding)"
for t in sipreg kamailio echo; do
	wants "$t" || continue
	say "$(printf '%-9s %12s %9s %9s %9s %13s %13s %14s' "$t" "$(fmt "${MAXRATE[$t]:-}")" "$(fmt "${P50[$t]:-}")" \
		"$(fmt "${P99[$t]:-}")" "$(fmt "${P999[$t]:-}")" "$(fmt "${CPU_NEW[$t]:-}")" "$(fmt "${CPU_REF[$t]:-}")" "$(fmt "${MEM_B[$t]:-}")")"
done
say ""
say "ratios (rate: higher is better for sipreg; cpu and memory: other / sipreg, higher is better for sipreg)"
for other in kamailio echo; do
	wants sipreg && wants "$other" || continue
	say "$(printf 'sipreg / %-8s rate %6s   cpu/new %6s   cpu/refresh %6s   memory %6s' "$other" \
		"$(ratio "${MAXRATE[sipreg]:-}" "${MAXRATE[$other]:-}")" \
		"$(ratio "${CPU_NEW[$other]:-}" "${CPU_NEW[sipreg]:-}")" \
		"$(ratio "${CPU_REF[$other]:-}" "${CPU_REF[sipreg]:-}")" \
		"$(ratio "${MEM_B[$other]:-}" "${MEM_B[sipreg]:-}")")"
done
say ""
say "memory method:"
for t in sipreg kamailio; do
	wants "$t" && say "  $t: ${MEM_HOW[$t]:-not measured}"
done
say "server CPU: utime+stime of every server process (main + children) from /proc/PID/stat, read by the"
say "  loadgen (--server-pid) right before and after its measured phase (prime phase excluded), / answered."
say "load average at end: $(cut -d' ' -f1-3 /proc/loadavg) (other work on this host makes every figure noisier)"

printf '%s\n' "${OUT_LINES[@]}" >"$RESULTS"
echo "bench.sh: results written to $RESULTS" >&2
