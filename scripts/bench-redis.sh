#!/usr/bin/env bash
# The Redis Cluster location backend against the memory one, side by side in one run
# (issue 15, item 6), on a throw-away cluster from scripts/redis-cluster.sh (3 masters +
# 3 replicas on 127.0.0.1). Per round, alternated:
#   - one node, --location memory, then --location redis (--cpus 1, loadgen on CPU 0):
#     20 000 users registered, refreshes at RATE/s for DURATION s, then closed loop
#     (--window 256) for DURATION s. Figures, for both phases: sipreg CPU per answered
#     REGISTER, the three masters' and three replicas' CPU per answered REGISTER
#     (utime+stime from /proc), and the closed loop's rate;
#   - three --location redis nodes (127.0.0.2-.4, one core each, all on CPU 1), a
#     closed-loop loadgen per node at once (on CPU 0): the aggregate rate.
# Loopback only, bounded: about 4 x DURATION + 10 s per round.
#
# Usage: scripts/bench-redis.sh [--rounds N] [--rate R] [--duration S]
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH_NAME=bench-redis
# shellcheck source=scripts/bench-lib.sh
. "$ROOT/scripts/bench-lib.sh"
SIPREG="$ROOT/target/release/sipreg"
LOADGEN="$ROOT/target/release/sipreg-loadgen"
ROUNDS=2
RATE=10000
DURATION=5
USERS=20000
die() { echo "bench-redis.sh: $*" >&2; exit 2; }
while [ $# -gt 0 ]; do
	case $1 in
	--rounds) ROUNDS=$2; shift 2 ;;
	--rate) RATE=$2; shift 2 ;;
	--duration) DURATION=$2; shift 2 ;;
	*) die "unknown argument $1 (usage: $0 [--rounds N] [--rate R] [--duration S])" ;;
	esac
done
[[ $ROUNDS =~ ^[0-9]+$ ]] && [ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 10 ] || die "--rounds is 1..=10"
[[ $RATE =~ ^[0-9]+$ ]] && [ "$RATE" -ge 100 ] && [ "$RATE" -le 100000 ] || die "--rate is 100..=100000 REGISTER/s"
[[ $DURATION =~ ^[0-9]+$ ]] && [ "$DURATION" -ge 1 ] && [ "$DURATION" -le 30 ] || die "--duration is 1..=30 s"
[ -x "$SIPREG" ] && [ -x "$LOADGEN" ] || die "build first: cargo build --release --workspace"

CLUSTER="$WORK/cluster"
"$ROOT/scripts/redis-cluster.sh" start "$CLUSTER" >/dev/null || die "the Redis Cluster did not start"
stop_cluster() { "$ROOT/scripts/redis-cluster.sh" stop "$CLUSTER" >/dev/null 2>&1 || true; }
trap 'stop_cluster; cleanup' EXIT
mapfile -t PORTS <"$CLUSTER/ports"
SEED="127.0.0.1:${PORTS[0]}"
MASTERS=() REPLICAS=()
for p in "${PORTS[@]}"; do
	pid=$(cat "$CLUSTER/node-$p/redis.pid")
	if redis-cli -p "$p" role | head -1 | grep -q master; then MASTERS+=("$pid"); else REPLICAS+=("$pid"); fi
done
[ ${#MASTERS[@]} -eq 3 ] || die "expected 3 masters, found ${#MASTERS[@]}"

ticks() { # pids... -> utime+stime summed, in clock ticks
	local t=0 p f
	for p in "$@"; do
		read -ra f <"/proc/$p/stat"
		t=$((t + f[13] + f[14]))
	done
	echo "$t"
}
HZ=$(getconf CLK_TCK)
us_per() { # ticks answers -> µs per answer, one decimal
	awk -v t="$1" -v n="$2" -v hz="$HZ" 'BEGIN { if (n > 0) printf "%.1f", t * 1e6 / hz / n; else print "?" }'
}
lg() { taskset -c 0 "$LOADGEN" --cpus 0 --domain example.com --quiet "$@"; }
start_node() { # ip port location-flags... -> pid in NODE_PID
	local ip=$1 port=$2
	shift 2
	taskset -c 1 "$SIPREG" --listen "$ip:$port" --admin off --cpus 1 --domain example.com \
		--log-level warn --stats-interval 0 --no-persist "$@" >/dev/null 2>&1 &
	NODE_PID=$!
	STARTED_PIDS+=("$NODE_PID")
	wait_bound "$NODE_PID" "$port" || die "sipreg $* did not start"
}
flush_redis() {
	local p
	for p in "${PORTS[@]}"; do redis-cli -p "$p" flushall >/dev/null 2>&1 || true; done
}

one_node() { # label location-flags...
	local label=$1 port=17080
	shift
	flush_redis
	start_node 127.0.0.1 "$port" "$@"
	local pid=$NODE_PID target="127.0.0.1:$port" out answered m0 m1 r0 r1 s0 s1 sat
	lg --target "$target" --scenario register --users "$USERS" --count "$USERS" --window 256 \
		--user-prefix br >/dev/null 2>&1
	s0=$(ticks "$pid") m0=$(ticks "${MASTERS[@]}") r0=$(ticks "${REPLICAS[@]}")
	out=$(lg --target "$target" --scenario refresh --users "$USERS" --user-prefix br --rate "$RATE" \
		--duration "$DURATION" --json)
	s1=$(ticks "$pid") m1=$(ticks "${MASTERS[@]}") r1=$(ticks "${REPLICAS[@]}")
	answered=$(jget ok "$out")
	printf '%-7s at %d/s: answered %s; per REGISTER: sipreg %s us, masters %s us, replicas %s us\n' \
		"$label" "$RATE" "${answered:-0}" "$(us_per $((s1 - s0)) "${answered:-0}")" \
		"$(us_per $((m1 - m0)) "${answered:-0}")" "$(us_per $((r1 - r0)) "${answered:-0}")"
	s0=$(ticks "$pid") m0=$(ticks "${MASTERS[@]}") r0=$(ticks "${REPLICAS[@]}")
	out=$(lg --target "$target" --scenario refresh --users "$USERS" --user-prefix br --window 256 \
		--duration "$DURATION" --json)
	s1=$(ticks "$pid") m1=$(ticks "${MASTERS[@]}") r1=$(ticks "${REPLICAS[@]}")
	answered=$(jget ok "$out")
	stop_pid "$pid"
	printf '%-7s closed loop: %d/s; per REGISTER: sipreg %s us, masters %s us, replicas %s us\n' \
		"$label" $((${answered:-0} / DURATION)) "$(us_per $((s1 - s0)) "${answered:-0}")" \
		"$(us_per $((m1 - m0)) "${answered:-0}")" "$(us_per $((r1 - r0)) "${answered:-0}")"
}

three_nodes() {
	flush_redis
	local i pids=() outs=() total=0
	for i in 2 3 4; do
		start_node "127.0.0.$i" 17080 --location redis --redis-seed "$SEED"
		pids+=("$NODE_PID")
		lg --target "127.0.0.$i:17080" --scenario register --users $((USERS / 3)) \
			--count $((USERS / 3)) --window 256 --user-prefix "n$i-" >/dev/null 2>&1
	done
	for i in 2 3 4; do
		lg --target "127.0.0.$i:17080" --scenario refresh --users $((USERS / 3)) \
			--user-prefix "n$i-" --window 256 --duration "$DURATION" --json >"$WORK/three-$i.json" &
		outs+=($!)
	done
	for i in "${outs[@]}"; do wait "$i"; done
	for i in 2 3 4; do total=$((total + $(jget ok "$(cat "$WORK/three-$i.json")"))); done
	for i in "${pids[@]}"; do stop_pid "$i"; done
	printf '3 nodes (redis, one core each, sharing CPU 1): closed loop, aggregate %d/s\n' $((total / DURATION))
}

echo "bench-redis: $(date -u +%FT%TZ), commit $(git -C "$ROOT" rev-parse --short HEAD), $(nproc) CPUs, load average $(cut -d' ' -f1-3 /proc/loadavg)"
for round in $(seq "$ROUNDS"); do
	echo "round $round"
	one_node memory --location memory
	one_node redis --location redis --redis-seed "$SEED"
	three_nodes
done
