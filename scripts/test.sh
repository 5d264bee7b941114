#!/usr/bin/env bash
# The one test entry point (CI runs it through .ci/run).
#
#   fmt --check, clippy -D warnings, core purity, redis-server install, cargo test
#   (tests/redis_cluster runs a local Redis Cluster, ~7 s; the integration suite runs
#   again with --steering hash), fuzz build (if any),
#   then sipp interop against the real binary on a loopback port (UDP, then TCP with one
#   connection for all calls, -t t1, and one per call, -t tn),
#   then real UAs (baresip, sipsak, linphonec) over TCP, and TLS once the server has it
#   (scripts/ua-interop.sh: installs them when missing, skips a UA it cannot install).
#
# Every step runs even if an earlier one failed; the summary at the end lists each
# step, and the exit status is non-zero if any failed.
#
# Environment:
#   SKIP_SIPP=1        skip the sipp interop (e.g. while iterating on Rust code)
#   SIPP_RELEASE=1     run sipp against a release build instead of the debug one
#   SIPP_LOAD_CALLS    calls in the load run (default 2000)
#   SIPP_LOAD_RATE     calls per second in the load run (default 500)
#   SKIP_UA=1          skip the real-UA interop
set -uo pipefail
cd "$(dirname "$0")/.."

export CARGO_TERM_COLOR="${CARGO_TERM_COLOR:-never}"
summary=()
failed=0

step() {
    local name=$1
    shift
    echo
    echo "==> $name"
    local start=$SECONDS
    if "$@"; then
        summary+=("PASS  $name ($((SECONDS - start)) s)")
    else
        summary+=("FAIL  $name ($((SECONDS - start)) s)")
        failed=$((failed + 1))
    fi
}

fuzz_build() {
    if [[ -f fuzz/Cargo.toml ]]; then
        cargo build --manifest-path fuzz/Cargo.toml
    else
        echo "no fuzz/Cargo.toml: nothing to build"
    fi
}

ensure_sipp() {
    command -v sipp >/dev/null 2>&1 && return 0
    echo "sipp not found: installing sip-tester"
    if [[ $(id -u) -ne 0 ]]; then
        echo "not root: install sip-tester (apt-get install sip-tester) or set SKIP_SIPP=1" >&2
        return 1
    fi
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null &&
        apt-get install -y -qq --no-install-recommends sip-tester >/dev/null &&
        command -v sipp >/dev/null
}

# ---- sipp interop -------------------------------------------------------------------

server_pid=""
server_log=""
sipp_dir=""

stop_server() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill -TERM "$server_pid" 2>/dev/null
        for _ in $(seq 1 50); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    server_pid=""
}

cleanup() {
    stop_server
    [[ -n "$sipp_dir" ]] && rm -rf "$sipp_dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Start sipreg on a free loopback port: try random ports until one binds and the
# server logs "ready:". Sets server_pid and sipp_port. Extra arguments go to sipreg.
# With server_tcp=1 it also listens on TCP, on the same port.
server_tcp=""
start_server() {
    local bin=$1
    shift
    local attempt
    for attempt in 1 2 3 4 5 6 7 8; do
        sipp_port=$((20000 + RANDOM % 40000))
        server_log="$sipp_dir/sipreg-$sipp_port.log"
        "$bin" --listen "127.0.0.1:$sipp_port" ${server_tcp:+--listen "tcp:127.0.0.1:$sipp_port"} --stats-interval 0 --data-dir "$sipp_dir/data-$sipp_port" "$@" </dev/null >"$server_log" 2>&1 &
        server_pid=$!
        local i
        for i in $(seq 1 100); do
            if grep -q "ready:" "$server_log" 2>/dev/null; then
                echo "sipreg (pid $server_pid) ready on 127.0.0.1:$sipp_port"
                return 0
            fi
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        echo "attempt $attempt on port $sipp_port failed:"
        cat "$server_log"
        stop_server
    done
    return 1
}

# run_scenario NAME XML [sipp options...]: sipp from a kernel-chosen port.
run_scenario() {
    local name=$1 xml=$2
    shift 2
    local out="$sipp_dir/$name.out"
    echo "--- sipp $name ($xml $*)"
    local rc=0
    timeout 120 sipp -sf "$xml" -i 127.0.0.1 -p 0 -nostdin -timeout_error \
        -trace_err -error_file "$sipp_dir/$name.errors" "$@" "127.0.0.1:$sipp_port" >"$out" 2>&1 || rc=$?
    if [[ $rc -eq 0 ]]; then
        grep -E "Successful call|Failed call" "$out" | sed 's/^/    /'
        return 0
    fi
    echo "sipp $name failed (exit $rc):"
    grep -E "Successful call|Failed call|Total Calls" "$out" | sed 's/^/    /'
    if [[ -f "$sipp_dir/$name.errors" ]]; then
        head -c 800 "$sipp_dir/$name.errors" | sed 's/^/    /'
        echo
    fi
    return 1
}

sipp_interop() {
    ensure_sipp || return 1
    sipp -v 2>/dev/null | grep -m1 -i sipp
    local bin
    if [[ "${SIPP_RELEASE:-0}" == 1 ]]; then
        cargo build --release --bin sipreg || return 1
        bin=target/release/sipreg
    else
        cargo build --bin sipreg || return 1
        bin=target/debug/sipreg
    fi
    sipp_dir=$(mktemp -d)
    start_server "$bin" || return 1
    local rc=0
    local -a results=()
    local name
    for name in register refresh unregister; do
        if run_scenario "$name" "scripts/sipp/$name.xml" -m 1 -l 1 -timeout 20s; then
            results+=("PASS sipp $name")
        else
            results+=("FAIL sipp $name")
            rc=1
        fi
    done
    local calls=${SIPP_LOAD_CALLS:-2000} rate=${SIPP_LOAD_RATE:-500}
    if run_scenario load scripts/sipp/register.xml -m "$calls" -r "$rate" -l 200 -timeout 60s; then
        results+=("PASS sipp load ($calls calls at $rate/s)")
    else
        results+=("FAIL sipp load ($calls calls at $rate/s)")
        rc=1
    fi
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "sipreg died during the sipp runs:"
        cat "$server_log"
        rc=1
    fi
    stop_server
    # SIP over TCP (RFC 3261 §18): the same scenarios on one connection for every call
    # (-t t1) and on a connection per call (-t tn), against a server on 2 cores, so
    # replies for AORs the other core owns cross back to the connection's core.
    server_tcp=1
    if start_server "$bin" --cores 2; then
        local mode
        for mode in t1 tn; do
            for name in register refresh unregister; do
                if run_scenario "tcp_${mode}_$name" "scripts/sipp/$name.xml" -t "$mode" -max_socket 1000 -m 1 -l 1 -timeout 20s; then
                    results+=("PASS sipp tcp -t $mode $name")
                else
                    results+=("FAIL sipp tcp -t $mode $name")
                    rc=1
                fi
            done
            if run_scenario "tcp_${mode}_load" scripts/sipp/register.xml -t "$mode" -max_socket 1000 -m "$calls" -r "$rate" -l 200 -timeout 60s; then
                results+=("PASS sipp tcp -t $mode load ($calls calls at $rate/s)")
            else
                results+=("FAIL sipp tcp -t $mode load ($calls calls at $rate/s)")
                rc=1
            fi
        done
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "sipreg died during the sipp TCP runs:"
            cat "$server_log"
            rc=1
        fi
        stop_server
    else
        results+=("FAIL sipp tcp (sipreg with a TCP listener did not start)")
        rc=1
    fi
    server_tcp=""
    # Digest auth (RFC 3261 §22.2): a second sipreg with a subscriber file for the
    # scenario's user. MD5 only: sipp 3.6 cannot answer SHA-256 and reads the first
    # WWW-Authenticate.
    printf 'sipp@sipreg.test secret\n' >"$sipp_dir/subscribers.txt"
    if start_server "$bin" --auth-file "$sipp_dir/subscribers.txt" --auth-algorithms md5; then
        if run_scenario register_auth scripts/sipp/register_auth.xml -m 1 -l 1 -timeout 20s; then
            results+=("PASS sipp register_auth")
        else
            results+=("FAIL sipp register_auth")
            rc=1
        fi
        if run_scenario auth_load scripts/sipp/register_auth.xml -m 200 -r 100 -l 200 -timeout 60s; then
            results+=("PASS sipp auth load (200 calls at 100/s)")
        else
            results+=("FAIL sipp auth load (200 calls at 100/s)")
            rc=1
        fi
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "sipreg --auth-file died during the sipp runs:"
            cat "$server_log"
            rc=1
        fi
        stop_server
    else
        results+=("FAIL sipp register_auth (sipreg --auth-file did not start)")
        rc=1
    fi
    printf '    %s\n' "${results[@]}"
    return $rc
}

# ---- real UAs ----------------------------------------------------------------------

# baresip, sipsak and linphonec against the debug binary (scripts/ua-interop.sh); the
# run is bounded to 60 s (its checks take ~5 s here), the install before it by apt-get
# timeouts.
ua_interop() {
    scripts/ua-interop.sh --install
    cargo build --bin sipreg || return 1
    timeout -k 5 60 scripts/ua-interop.sh target/debug/sipreg
}

# ---- steps --------------------------------------------------------------------------

step "cargo fmt --check" cargo fmt --all --check
step "cargo clippy -D warnings" cargo clippy --workspace --all-targets -- -D warnings
step "core purity" scripts/check-core-purity.sh
# tests/redis_cluster starts a real Redis Cluster; install the server first so the
# install shows as its own step (the test itself skips only if this fails).
step "redis-server (tests/redis_cluster)" scripts/redis-cluster.sh install
step "cargo test" cargo test --workspace
# The integration suite again with the kernel's 4-tuple hash (issue 13: the fallback when
# the steering program cannot be loaded must keep every behaviour).
step "integration, --steering hash" env SIPREG_TEST_STEERING=hash cargo test --test integration
step "fuzz build" fuzz_build
if [[ "${SKIP_SIPP:-0}" == 1 ]]; then
    summary+=("SKIP  sipp interop (SKIP_SIPP=1)")
else
    step "sipp interop" sipp_interop
fi

if [[ "${SKIP_UA:-0}" == 1 ]]; then
    summary+=("SKIP  UA interop (SKIP_UA=1)")
else
    step "UA interop (baresip, sipsak, linphonec)" ua_interop
fi

echo
echo "==> summary"
printf '  %s\n' "${summary[@]}"
total=${#summary[@]}
echo "$((total - failed)) passed, $failed failed"
[[ $failed -eq 0 ]]
