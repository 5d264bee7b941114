#!/usr/bin/env bash
# Side-by-side whole-server refresh figures of two (or more) sipreg binaries, alternated
# so both see the same machine: for each binary, one core (--cpus 1) against the loadgen
# pinned to CPU 0, 20 000 users registered, then
#   - server CPU per REGISTER (utime+stime per answer) at 20 000 refreshes/s for 5 s;
#   - answered refreshes per second in closed loop (--window 256) for 5 s.
# Loopback only (127.0.0.1), bounded: about 15 s per binary per round.
#
# Usage: scripts/ab-refresh.sh [--rounds N] LABEL=BINARY LABEL=BINARY...
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
LOADGEN="$ROOT/target/release/sipreg-loadgen"
PORT=17070
ROUNDS=3
die() { echo "ab-refresh.sh: $*" >&2; exit 2; }
[ "${1:-}" = --rounds ] && { ROUNDS=$2; shift 2; }
[[ $ROUNDS =~ ^[0-9]+$ ]] && [ "$ROUNDS" -ge 1 ] && [ "$ROUNDS" -le 20 ] || die "--rounds is 1..=20"
[ $# -ge 1 ] || die "usage: $0 [--rounds N] LABEL=BINARY..."
[ -x "$LOADGEN" ] || die "build the loadgen first: cargo build --release -p sipreg-loadgen"
SP=
trap '[ -n "$SP" ] && kill "$SP" 2>/dev/null; true' EXIT
lg() { taskset -c 0 "$LOADGEN" --cpus 0 --target "127.0.0.1:$PORT" --domain example.com --quiet "$@"; }
run() { # label binary
	"$2" --listen "127.0.0.1:$PORT" --admin off --cpus 1 --domain example.com --log-level warn \
		--stats-interval 0 --no-persist >/dev/null 2>&1 &
	SP=$!
	sleep 0.5
	lg --scenario register --users 20000 --count 20000 --window 256 --user-prefix ab >/dev/null 2>&1
	local cpu sat
	cpu=$(lg --scenario refresh --users 20000 --user-prefix ab --rate 20000 --duration 5 \
		--server-pid "$SP" --json | grep -o '"us_per_answered":[0-9.]*' | cut -d: -f2)
	sat=$(lg --scenario refresh --users 20000 --user-prefix ab --window 256 --duration 5 --json |
		grep -o '"ok":[0-9]*' | head -1 | cut -d: -f2)
	kill "$SP"; wait "$SP" 2>/dev/null || true; SP=
	echo "$1 cpu_us_per_refresh_at_20k=${cpu:-?} saturation_per_s=$(( ${sat:-0} / 5 ))"
}
echo "ab-refresh: $(date -u +%FT%TZ), load average $(cut -d' ' -f1-3 /proc/loadavg)"
for _ in $(seq "$ROUNDS"); do
	for spec in "$@"; do
		[[ $spec == *=* ]] || die "'$spec' is not LABEL=BINARY"
		[ -x "${spec#*=}" ] || die "${spec#*=} is not an executable"
		run "${spec%%=*}" "${spec#*=}"
	done
done
