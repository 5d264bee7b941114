# Shared by the benchmark scripts (sourced, not run): the bookkeeping of the processes a
# benchmark starts, so every one of them is stopped on exit or interrupt, and the few
# helpers they all use. The caller sets BENCH_NAME (for messages) before sourcing; WORK
# is a fresh temporary directory, removed on exit.
# shellcheck shell=bash

STARTED_PIDS=()
WORK=$(mktemp -d "/tmp/sipreg-${BENCH_NAME:-bench}.XXXXXX")
cleanup() {
	local pid
	for pid in "${STARTED_PIDS[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${STARTED_PIDS[@]}"; do
		for _ in $(seq 30); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	STARTED_PIDS=()
	rm -rf "$WORK"
}
trap cleanup EXIT
trap 'echo "${BENCH_NAME:-bench}: interrupted" >&2; exit 130' INT TERM

forget_pid() {
	local keep=() p
	for p in "${STARTED_PIDS[@]}"; do [ "$p" = "$1" ] || keep+=("$p"); done
	STARTED_PIDS=("${keep[@]+"${keep[@]}"}")
}

stop_pid() { # stop one process we started, and its direct children
	local pid=$1 kids
	kids=$(pgrep -P "$pid" 2>/dev/null || true)
	kill -TERM "$pid" 2>/dev/null || true
	for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
	# shellcheck disable=SC2086
	kill -KILL "$pid" $kids 2>/dev/null || true
	wait "$pid" 2>/dev/null || true
	forget_pid "$pid"
}

port_taken() { [ -n "$(ss -Huln "sport = :$1" 2>/dev/null)" ]; }

wait_bound() { # pid port: wait until the process listens on the UDP port
	for _ in $(seq 100); do
		kill -0 "$1" 2>/dev/null || return 1
		port_taken "$2" && return 0
		sleep 0.1
	done
	return 1
}

jget() { # key json -> first numeric value of "key":
	{ grep -o "\"$1\":[0-9.]*" <<<"$2" || true; } | head -1 | cut -d: -f2
}

server_pid_flags() { # pid -> --server-pid flags for it and its children
	local p
	printf -- '--server-pid %s ' "$1"
	for p in $(pgrep -P "$1" 2>/dev/null || true); do printf -- '--server-pid %s ' "$p"; done
}
