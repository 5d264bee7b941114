#!/usr/bin/env bash
# Real SIP user agents against a real sipreg over TCP (RFC 3261 §18) and, when the
# server has a TLS listener, TLS: baresip 1.0 (libre, with and without RFC 5626
# Outbound, with digest auth), sipsak 0.9.8 (its own TCP code, GnuTLS) and linphonec 5.1
# (belle-sip, mbedTLS). Each UA registers; the management API must list its binding with
# its transport and a flow; the UA's own output must show the 200; then the UA
# unregisters, or is killed, and the binding must be gone (Outbound, RFC 5626 §5.3 /
# README "SIP Outbound") or kept flow-down (no Outbound). baresip's Outbound refresh on
# the same connection must leave one binding on the same flow.
#
#   scripts/ua-interop.sh --install          install the missing UAs from Debian (as root)
#   scripts/ua-interop.sh [SIPREG_BINARY]   run (default: cargo build, target/debug/sipreg)
#
# Loopback only; every wait is bounded (UA_WAIT_S each, default 5) and every process
# this script starts is killed on exit. A UA that is not installed (and, with --install,
# could not be: not root, no network) is skipped with a printed reason, as is TLS when
# the server has no `--tls-cert` option; neither is a failure. Exit status: non-zero if
# any check failed (--install: always 0, it prints what is missing).
#
# Digest: none of baresip 1.0.0, sipsak 0.9.8.1 and sipp 3.6 answers a challenge whose
# first WWW-Authenticate is SHA-256 (sipsak prints "unsupported authentication
# algorithm"), although RFC 7616 §3.7 has the client pick the first one it supports, and
# baresip (libre) gives up ("Register: Function not implemented") on any SHA-256 one,
# also after an MD5 one; the auth checks therefore run with `--auth-algorithms md5`.
#
# TLS: neither UA checks the server's certificate here (baresip registers with no
# sip_cafile, or another CA's; sipsak with another CA's --tls-ca-cert), so the
# throw-away CA they are given is what a checking UA would need, not a test of the chain.
set -uo pipefail
cd "$(dirname "$0")/.."

wait_s=${UA_WAIT_S:-5}
work=$(mktemp -d)
server_pid=""
sip_port=""
admin_port=""
ua_pids=()
results=()
rc=0

stop_pid() {
    local pid=$1
    kill -0 "$pid" 2>/dev/null || return 0
    kill -TERM "$pid" 2>/dev/null
    local _
    for _ in $(seq 1 50); do
        kill -0 "$pid" 2>/dev/null || return 0
        sleep 0.1
    done
    kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
    local pid
    for pid in "${ua_pids[@]}"; do
        kill -KILL "$pid" 2>/dev/null || true
    done
    [[ -n "$server_pid" ]] && stop_pid "$server_pid"
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pass() {
    results+=("PASS $1")
    echo "PASS $1"
}

fail() {
    results+=("FAIL $1")
    echo "FAIL $1"
    rc=1
}

skip() {
    results+=("SKIP $1")
    echo "SKIP $1"
}

# ensure_cmd COMMAND PACKAGE: install PACKAGE from Debian when COMMAND is missing (as root).
ensure_cmd() {
    local cmd=$1 pkg=$2
    command -v "$cmd" >/dev/null 2>&1 && return 0
    if [[ $(id -u) -ne 0 ]]; then
        echo "$cmd not found and not root (apt-get install $pkg)"
        return 1
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        echo "$cmd not found and no apt-get"
        return 1
    fi
    echo "$cmd not found: installing $pkg"
    export DEBIAN_FRONTEND=noninteractive
    if [[ -z "${apt_updated:-}" ]]; then
        timeout 120 apt-get update -qq >/dev/null 2>&1
        apt_updated=1
    fi
    timeout 300 apt-get install -y -qq --no-install-recommends "$pkg" >/dev/null 2>&1
    command -v "$cmd" >/dev/null 2>&1 || {
        echo "apt-get install $pkg did not provide $cmd"
        return 1
    }
}

# start_server BINARY [sipreg options...]: sipreg on a random loopback port (the SIP
# listeners named by $listen, with PORT replaced) and a random admin port; retried
# until it binds and logs "ready:".
start_server() {
    local bin=$1
    shift
    local attempt i log
    for attempt in 1 2 3 4 5 6; do
        sip_port=$((20000 + RANDOM % 40000))
        admin_port=$((20000 + RANDOM % 40000))
        [[ $admin_port -eq $sip_port ]] && continue
        log="$work/sipreg-$sip_port.log"
        local -a listens=()
        local l
        for l in $listen; do
            listens+=(--listen "${l//PORT/$sip_port}")
        done
        "$bin" "${listens[@]}" --admin "127.0.0.1:$admin_port" --stats-interval 0 \
            --data-dir "$work/data-$sip_port" "$@" </dev/null >"$log" 2>&1 &
        server_pid=$!
        server_log=$log
        for i in $(seq 1 100); do
            if grep -q "ready:" "$log" 2>/dev/null; then
                echo "sipreg (pid $server_pid) ready: ${listen//PORT/$sip_port}, admin 127.0.0.1:$admin_port"
                return 0
            fi
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        echo "sipreg attempt $attempt on port $sip_port failed:"
        tail -5 "$log"
        stop_pid "$server_pid"
        server_pid=""
    done
    return 1
}

stop_server() {
    if [[ -n "$server_pid" ]] && ! kill -0 "$server_pid" 2>/dev/null; then
        fail "sipreg stayed up during the UA runs"
        tail -20 "$server_log"
    fi
    [[ -n "$server_pid" ]] && stop_pid "$server_pid"
    server_pid=""
}

# aor_json AOR: the management API's answer for GET /v1/aors/AOR (HTTP/1.0 over bash's
# /dev/tcp, so no curl is needed); the body on stdout, status 1 unless HTTP 200.
aor_json() {
    local resp
    resp=$(timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$1" &&
        printf "GET /v1/aors/%s HTTP/1.0\r\nHost: localhost\r\nConnection: close\r\n\r\n" "$2" >&3 &&
        cat <&3' _ "$admin_port" "$1") || return 2
    printf '%s\n' "${resp##*$'\r\n\r\n'}"
    [[ $resp == "HTTP/1."?" 200"* ]]
}

# wait_aor AOR PATTERN...: poll the API (bounded) until the AOR's JSON matches every
# extended regex; prints the JSON on the last try.
wait_aor() {
    local aor=$1
    shift
    local deadline=$((SECONDS + wait_s)) json p ok
    while :; do
        json=$(aor_json "$aor")
        ok=1
        for p in "$@"; do
            grep -Eq -- "$p" <<<"$json" || ok=0
        done
        [[ $ok -eq 1 ]] && return 0
        if [[ $SECONDS -ge $deadline ]]; then
            echo "    API for $aor: $json"
            echo "    expected: $*"
            return 1
        fi
        sleep 0.1
    done
}

# wait_aor_gone AOR: poll (bounded) until the API answers 404 for the AOR.
wait_aor_gone() {
    local deadline=$((SECONDS + wait_s)) json
    while :; do
        json=$(aor_json "$1")
        grep -q '"AOR not registered"' <<<"$json" && return 0
        if [[ $SECONDS -ge $deadline ]]; then
            echo "    API for $1 still: $json"
            return 1
        fi
        sleep 0.1
    done
}

# wait_file FILE REGEX: bounded wait until FILE has a line matching REGEX.
wait_file() {
    local deadline=$((SECONDS + wait_s))
    until grep -Eq -- "$2" "$1" 2>/dev/null; do
        [[ $SECONDS -ge $deadline ]] && return 1
        sleep 0.1
    done
}

# wait_file_count FILE REGEX N: bounded wait until FILE has N lines matching REGEX.
wait_file_count() {
    local deadline=$((SECONDS + wait_s))
    until [[ $(sed 's/\x1b\[[0-9;]*m//g' "$1" 2>/dev/null | grep -Ec -- "$2") -ge $3 ]]; do
        [[ $SECONDS -ge $deadline ]] && return 1
        sleep 0.1
    done
}

# show_trace FILE: the header lines worth recording from a baresip -s trace.
show_trace() {
    grep -aE '^(REGISTER |SIP/2.0 |Contact:|Supported:|Require:|WWW-Authenticate:|Authorization:)' "$1" |
        sed 's/\x1b\[[0-9;]*m//g; s/^/    | /'
}

# ---- baresip ------------------------------------------------------------------------

# baresip_start NAME TRANSPORT ACCOUNT_PARAMS [CONFIG_LINES]: a headless baresip (no
# audio device, no console) in its own config dir, with a SIP trace (-s) in NAME.out,
# registering sip:NAME@example.com through our listener. Sets ua_pid and ua_out.
baresip_start() {
    local name=$1 transport=$2 params=$3 extra=${4:-}
    local dir="$work/baresip-$name"
    mkdir -p "$dir"
    # uuid.so gives the account its +sip.instance (required for sipnat=outbound).
    cat >"$dir/config" <<EOF
poll_method		epoll
sip_listen		127.0.0.1:0
module_path		/usr/lib/baresip/modules
module			g711.so
module_tmp		uuid.so
module_tmp		account.so
$extra
EOF
    echo "<sip:$name@example.com;transport=$transport>;outbound=\"sip:127.0.0.1:$sip_port;transport=$transport\"$params" >"$dir/accounts"
    ua_out="$work/baresip-$name.out"
    baresip -f "$dir" -s </dev/null >"$ua_out" 2>&1 &
    ua_pid=$!
    ua_pids+=("$ua_pid")
}

# baresip_registered: bounded wait for baresip's "200 OK (sipreg...) [1 binding]" line.
baresip_registered() {
    if wait_file "$ua_out" '200 OK \(sipreg[^)]*\) \[1 binding\]'; then
        return 0
    fi
    echo "    baresip did not report a 200; its output:"
    sed 's/\x1b\[[0-9;]*m//g; s/^/    | /' "$ua_out" | tail -40
    return 1
}

# baresip_stop_gracefully: SIGTERM makes baresip unregister (Expires 0) before it exits.
baresip_stop_gracefully() {
    kill -TERM "$ua_pid" 2>/dev/null
    local deadline=$((SECONDS + wait_s))
    while kill -0 "$ua_pid" 2>/dev/null; do
        if [[ $SECONDS -ge $deadline ]]; then
            kill -KILL "$ua_pid" 2>/dev/null
            return 1
        fi
        sleep 0.1
    done
}

baresip_kill() {
    kill -KILL "$ua_pid" 2>/dev/null
    wait "$ua_pid" 2>/dev/null
}

# The un-REGISTER is the last REGISTER in the trace: its Contact has expires=0 and it
# got a 200.
baresip_unregistered() {
    local tr
    tr=$(sed 's/\x1b\[[0-9;]*m//g' "$ua_out")
    grep -Eq '^Contact: .*;expires=0' <<<"$tr" &&
        [[ $(grep -Ec '^SIP/2.0 200 OK' <<<"$tr") -ge 2 ]]
}

baresip_tests() {
    local t=$1 label=$2 extra=${3:-}
    local flow='"flow":\{"core":[0-9]+,"generation":[0-9]+,"slot":[0-9]+\}'

    # 1. Plain registration; SIGTERM unregisters.
    local aor="alice"
    baresip_start "$aor" "$t" ";regint=60" "$extra"
    if baresip_registered &&
        wait_aor "sip:$aor@example.com" "\"transport\":\"$t\"" "$flow" '"flow_down":false' '"outbound":false' "\"contact\":\"sip:$aor-[^\"]*;transport=$t\""; then
        show_trace "$ua_out" | head -8
        if baresip_stop_gracefully && baresip_unregistered && wait_aor_gone "sip:$aor@example.com"; then
            pass "baresip $label: register (200, API transport $t + flow), unregister on exit (API 404)"
        else
            show_trace "$ua_out"
            fail "baresip $label: unregister on exit"
        fi
    else
        show_trace "$ua_out"
        fail "baresip $label: register"
    fi
    baresip_kill

    # 2. Outbound (sipnat=outbound: Supported: outbound, +sip.instance, reg-id=1): the
    #    200 must carry Require: outbound, and the binding must go when the UA dies.
    aor="bob"
    baresip_start "$aor" "$t" ";regint=60;sipnat=outbound" "$extra"
    if baresip_registered &&
        wait_aor "sip:$aor@example.com" "\"transport\":\"$t\"" "$flow" '"outbound":true' '"reg_id":1' '"instance":"<urn:uuid:[0-9a-f-]+>"'; then
        show_trace "$ua_out" | head -8
        local tr
        tr=$(sed 's/\x1b\[[0-9;]*m//g' "$ua_out")
        if ! grep -Eq '^Supported:.*outbound' <<<"$tr" || ! grep -Eq '^Contact:.*\+sip\.instance=.*;reg-id=1' <<<"$tr"; then
            fail "baresip $label outbound: REGISTER lacks Supported: outbound or +sip.instance/reg-id"
        elif ! grep -q '^Require: outbound' <<<"$tr"; then
            fail "baresip $label outbound: the 200 lacks Require: outbound"
        else
            baresip_kill
            if wait_aor_gone "sip:$aor@example.com"; then
                pass "baresip $label outbound: 200 with Require: outbound, binding removed when the UA is killed"
            else
                fail "baresip $label outbound: binding kept after its connection closed"
            fi
        fi
    else
        show_trace "$ua_out"
        fail "baresip $label outbound: register"
    fi
    baresip_kill

    # 3. Outbound refresh: with regint=3 (the server allows it: --min-expires 1) libre
    #    re-registers on the same connection before expiry; the API must then show the
    #    one binding (instance + reg-id key, RFC 5626 §6), on the same flow, a higher CSeq.
    aor="dora"
    baresip_start "$aor" "$t" ";regint=3;sipnat=outbound" "$extra"
    if baresip_registered && wait_aor "sip:$aor@example.com" '"outbound":true'; then
        local before after
        before=$(aor_json "sip:$aor@example.com")
        if wait_file_count "$ua_out" '^SIP/2.0 200 OK' 2; then
            after=$(aor_json "sip:$aor@example.com")
            local c1 c2 f1 f2 n
            c1=$(grep -oE '"cseq":[0-9]+' <<<"$before" | cut -d: -f2)
            c2=$(grep -oE '"cseq":[0-9]+' <<<"$after" | cut -d: -f2)
            f1=$(grep -oE '"flow":\{[^}]*\}' <<<"$before")
            f2=$(grep -oE '"flow":\{[^}]*\}' <<<"$after")
            n=$(grep -o '"contact":' <<<"$after" | wc -l)
            if [[ $n -eq 1 && -n "$c1" && -n "$c2" && $c2 -gt $c1 && -n "$f1" && "$f1" == "$f2" ]]; then
                pass "baresip $label outbound refresh: one binding, same flow, CSeq $c1 -> $c2"
            else
                echo "    before: $before"
                echo "    after:  $after"
                fail "baresip $label outbound refresh: bindings $n, CSeq $c1 -> $c2, flow $f1 -> $f2"
            fi
        else
            show_trace "$ua_out"
            fail "baresip $label outbound refresh: no second 200 within ${wait_s} s"
        fi
    else
        show_trace "$ua_out"
        fail "baresip $label outbound refresh: register"
    fi
    baresip_kill

    # 4. No Outbound, UA killed: the binding stays, flow-down.
    aor="carol"
    baresip_start "$aor" "$t" ";regint=60" "$extra"
    if baresip_registered && wait_aor "sip:$aor@example.com" '"flow_down":false'; then
        baresip_kill
        if wait_aor "sip:$aor@example.com" '"flow_down":true' "\"transport\":\"$t\""; then
            pass "baresip $label: killed without unregistering, binding kept flow-down"
        else
            fail "baresip $label: binding not marked flow-down after its connection closed"
        fi
    else
        show_trace "$ua_out"
        fail "baresip $label: register (flow-down case)"
    fi
    baresip_kill
}

# baresip_auth_tests TRANSPORT LABEL: against a server with --auth-file (alice, secret).
baresip_auth_tests() {
    local t=$1 label=$2
    baresip_start alice "$t" ";regint=60;auth_pass=secret"
    if baresip_registered && wait_aor "sip:alice@example.com" "\"transport\":\"$t\""; then
        show_trace "$ua_out" | grep -E 'SIP/2.0|Authorization' | head -4
        if grep -aq '^SIP/2.0 401' "$ua_out" && baresip_stop_gracefully && wait_aor_gone "sip:alice@example.com"; then
            pass "baresip $label digest: 401, then 200 with Authorization; unregister on exit"
        else
            fail "baresip $label digest: no 401 seen, or unregister failed"
        fi
    else
        show_trace "$ua_out"
        fail "baresip $label digest"
    fi
    baresip_kill
}

# ---- sipsak -------------------------------------------------------------------------

# sipsak_run OUT NAME TRANSPORT [sipsak options...]: one usrloc REGISTER for
# sip:NAME@localhost (sipsak connects, sends, reads the answer, closes). The port goes
# in -r: sipsak 0.9.8.1 cuts the last digit of a 5-digit port written in the URI.
sipsak_run() {
    local out=$1 name=$2 t=$3
    shift 3
    local -a tls=() env=()
    if [[ $t == tls ]]; then
        tls=(--tls-ca-cert "$work/pki/ca.pem")
        # TLS 1.2 only: over TLS 1.3 sipsak 0.9.8.1 (GnuTLS) sends the REGISTER and then
        # gives up on reading ("nothing received, select returned error") although the
        # 200 arrives (openssl s_client reads it on the same server); the post-handshake
        # session ticket a TLS 1.3 server sends first is the likely trip.
        printf '[overrides]\ndisabled-version = tls1.3\n' >"$work/gnutls-tls12.cfg"
        env=(env "GNUTLS_SYSTEM_PRIORITY_FILE=$work/gnutls-tls12.cfg")
    fi
    "${env[@]}" timeout "$wait_s" sipsak -vvv -U -i -E "$t" -H 127.0.0.1 -s "sip:$name@localhost" -r "$sip_port" \
        "${tls[@]}" "$@" >"$work/$out" 2>&1
}

sipsak_show() {
    grep -aE '^(REGISTER |SIP/2.0 |Contact:|WWW-Authenticate:|Authorization:|All usrloc|error)' "$1" |
        awk '!seen[$0]++' | sed 's/^/    | /'
}

# sipsak_tests TRANSPORT: register with sipsak's own Contact (its source address, with
# `;transport=TCP` outside angle brackets, so a Contact header parameter, RFC 3261 §20.10),
# then remove it with `Contact: *` and Expires 0 (RFC 3261 §10.2.2) from a new connection.
sipsak_tests() {
    local t=$1 name="dave-$1"
    local out="$work/sipsak-$name.out"
    if sipsak_run "sipsak-$name.out" "$name" "$t" -x 120 &&
        grep -q 'All usrloc tests completed successful' "$out" &&
        wait_aor "sip:$name@localhost" "\"transport\":\"$t\"" '"flow":\{' '"contact":"sip:'"$name"'@127.0.0.1:[0-9]+"'; then
        sipsak_show "$out"
        # sipsak closes its connection once answered; without Outbound the binding stays.
        if wait_aor "sip:$name@localhost" '"flow_down":true'; then
            pass "sipsak $t: register (200, API transport $t + flow), flow-down after sipsak closed"
        else
            fail "sipsak $t: binding not flow-down after sipsak closed its connection"
        fi
        if sipsak_run "sipsak-$name-0.out" "$name" "$t" -x 0 -C '*' && wait_aor_gone "sip:$name@localhost"; then
            pass "sipsak $t: unregister (Contact: *, Expires 0; API 404)"
        else
            sipsak_show "$work/sipsak-$name-0.out"
            fail "sipsak $t: unregister"
        fi
    else
        sipsak_show "$out"
        fail "sipsak $t: register"
    fi
}

# sipsak_auth_tests: against a server with --auth-file (erin, secret2). sipsak takes
# the user part up to the '@' as its digest username unless -u names it.
sipsak_auth_tests() {
    local out="$work/sipsak-erin.out"
    if sipsak_run sipsak-erin.out erin tcp -x 120 -u erin -a secret2 &&
        grep -q '^SIP/2.0 401' "$out" &&
        wait_aor "sip:erin@localhost" '"transport":"tcp"'; then
        pass "sipsak tcp digest: 401, then 200"
    else
        sipsak_show "$out"
        fail "sipsak tcp digest"
    fi
}

# ---- linphonec ----------------------------------------------------------------------

# linphonec_tests TRANSPORT: linphonec (liblinphone/belle-sip 5.1) registers as
# frank-TRANSPORT@example.com; its log must say LinphoneRegistrationOk and the API must
# list the binding with its +sip.instance (linphone sends no reg-id, so no Outbound).
# Its `unregister` command sends nothing in 5.1 and `quit` does not unregister, so after
# quit the binding must stay, flow-down. Headless: a pty from script(1) (linphonec reads
# its commands through readline), commands written to a fifo; the network monitor is
# off (a fresh machine may lack the default route it looks for) and the call database
# directory must exist, or no listening point is made. Over TLS it checks the server's
# certificate against the throw-away CA (root_ca) and the name `localhost`, the only UA
# here that checks it.
#
# linphonec_tests TRANSPORT USER PASSWORD: the same as USER@example.com against a server
# with --auth-file; it must answer the SHA-256 challenge (RFC 8760), the first offered.
linphonec_tests() {
    local t=$1 name="frank-$1" user=${2:-} password=${3:-} label="linphonec $1" auth=""
    if [[ -n "$user" ]]; then
        name=$user
        label="linphonec $t digest"
        auth=$(printf '[auth_info_0]\nusername=%s\npasswd=%s\nrealm=example.com\ndomain=example.com' "$user" "$password")
    fi
    local dir="$work/linphonec-$name"
    mkdir -p "$dir/.local/share/linphone"
    local tcp_port=0 tls_port=0 ca="" host=127.0.0.1
    if [[ $t == tls ]]; then
        tls_port=-1
        ca="root_ca=$work/pki/ca.pem"
        # By name: its mbedTLS matches the certificate's DNS names, not its IP address.
        host=localhost
    else
        tcp_port=-1
    fi
    cat >"$dir/rc" <<EOF
[sip]
auto_net_state_mon=0
register_only_when_network_is_up=0
register_only_when_upnp_is_ok=0
ipv6_enabled=0
sip_port=0
sip_tcp_port=$tcp_port
sip_tls_port=$tls_port
$ca
[proxy_0]
reg_proxy=<sip:$host:$sip_port;transport=$t>
reg_identity=sip:$name@example.com
reg_expires=60
reg_sendregister=1
publish=0
$auth
EOF
    mkfifo "$dir/in"
    exec 7<>"$dir/in"
    HOME="$dir" script -qec "linphonec -c '$dir/rc' -d 6 -l '$dir/log'" /dev/null <"$dir/in" >"$dir/out" 2>&1 &
    ua_pid=$!
    ua_pids+=("$ua_pid")
    if wait_file "$dir/log" 'to \[LinphoneRegistrationOk\]' &&
        wait_aor "sip:$name@example.com" "\"transport\":\"$t\"" '"flow":\{' '"flow_down":false' \
            '"instance":"<urn:uuid:[0-9a-f-]+>"' '"outbound":false' '"reg_id":null' '"user_agent":"Linphonec/'; then
        grep -aE '^(REGISTER |SIP/2.0 |Contact:|Supported:|Require:)' "$dir/log" | awk '!seen[$0]++' | sed 's/^/    | /'
        if [[ -n "$user" ]]; then
            if grep -aq '^SIP/2.0 401' "$dir/log" && grep -aEq '^Authorization: .*algorithm=SHA-256' "$dir/log"; then
                pass "$label: 401 (SHA-256 and MD5 offered), answered with SHA-256, 200"
            else
                grep -aE '^(WWW-Authenticate|Authorization):' "$dir/log" | cut -c1-160 | sed 's/^/    | /'
                fail "$label: no 401, or not answered with SHA-256"
            fi
        fi
        echo quit >&7
        local deadline=$((SECONDS + wait_s))
        while kill -0 "$ua_pid" 2>/dev/null && [[ $SECONDS -lt $deadline ]]; do
            sleep 0.1
        done
        kill -KILL "$ua_pid" 2>/dev/null
        if wait_aor "sip:$name@example.com" '"flow_down":true'; then
            pass "$label: register (RegistrationOk, API transport $t + flow + instance), flow-down after quit"
        else
            fail "$label: binding not flow-down after linphonec quit"
        fi
    else
        grep -aE 'moving from state|listening point|error' "$dir/log" 2>/dev/null | cut -c1-200 | tail -8 | sed 's/^/    | /'
        fail "$label: register"
    fi
    exec 7>&-
    kill -KILL "$ua_pid" 2>/dev/null
    wait "$ua_pid" 2>/dev/null
}

# ---- TLS ----------------------------------------------------------------------------

# make_cert DIR: a throw-away CA and a server certificate for 127.0.0.1 / localhost.
make_cert() {
    local d=$1
    mkdir -p "$d"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=sipreg test CA" \
        -keyout "$d/ca.key" -out "$d/ca.pem" >/dev/null 2>&1 &&
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
            -keyout "$d/server.key" -out "$d/server.csr" >/dev/null 2>&1 &&
        printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' >"$d/ext.cnf" &&
        openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca.key" -CAcreateserial \
            -days 2 -extfile "$d/ext.cnf" -out "$d/server.pem" >/dev/null 2>&1
}

# ---- main ---------------------------------------------------------------------------

if [[ "${1:-}" == --install ]]; then
    ensure_cmd baresip baresip-core || echo "baresip stays missing: its checks will be skipped"
    ensure_cmd sipsak sipsak || echo "sipsak stays missing: its checks will be skipped"
    ensure_cmd linphonec linphone-cli || echo "linphonec stays missing: its checks will be skipped"
    ensure_cmd openssl openssl || echo "openssl stays missing: the TLS checks will be skipped"
    exit 0
fi

bin=${1:-}
if [[ -z "$bin" ]]; then
    cargo build --bin sipreg || exit 1
    bin=target/debug/sipreg
fi

have_baresip=0 have_sipsak=0 have_linphonec=0
if command -v baresip >/dev/null 2>&1; then
    have_baresip=1
    baresip -h 2>&1 | head -1
else
    skip "baresip: not installed (apt-get install baresip-core, or --install as root)"
fi
if command -v sipsak >/dev/null 2>&1; then
    have_sipsak=1
    sipsak -V 2>&1 | head -1
else
    skip "sipsak: not installed (apt-get install sipsak, or --install as root)"
fi
if ! command -v linphonec >/dev/null 2>&1; then
    skip "linphonec: not installed (apt-get install linphone-cli, or --install as root)"
elif ! command -v script >/dev/null 2>&1; then
    skip "linphonec: no script(1) to give it a terminal"
else
    have_linphonec=1
    linphonec -v 2>&1 | head -1
fi

if [[ $have_baresip -eq 1 || $have_sipsak -eq 1 || $have_linphonec -eq 1 ]]; then
    # TCP, two cores: an AOR the other core owns is answered across the mesh.
    listen="tcp:127.0.0.1:PORT"
    if start_server "$bin" --cores 2 --min-expires 1; then
        [[ $have_baresip -eq 1 ]] && baresip_tests tcp tcp
        [[ $have_sipsak -eq 1 ]] && sipsak_tests tcp
        [[ $have_linphonec -eq 1 ]] && linphonec_tests tcp
        stop_server
    else
        fail "sipreg with a TCP listener did not start"
    fi

    # Digest auth over TCP (RFC 3261 §22.2), MD5 only (see the header comment).
    printf 'alice@example.com secret\nerin@localhost secret2\n' >"$work/subscribers.txt"
    if start_server "$bin" --cores 1 --auth-file "$work/subscribers.txt" --auth-algorithms md5; then
        [[ $have_baresip -eq 1 ]] && baresip_auth_tests tcp tcp
        [[ $have_sipsak -eq 1 ]] && sipsak_auth_tests
        stop_server
    else
        fail "sipreg --auth-file with a TCP listener did not start"
    fi

    # Digest with the default algorithms (SHA-256 first, then MD5): linphonec only.
    if [[ $have_linphonec -eq 1 ]]; then
        printf 'ivy@example.com secret3\n' >"$work/subscribers-sha.txt"
        if start_server "$bin" --cores 1 --auth-file "$work/subscribers-sha.txt"; then
            linphonec_tests tcp ivy secret3
            stop_server
        else
            fail "sipreg --auth-file (default algorithms) with a TCP listener did not start"
        fi
    fi
fi

# TLS (RFC 3261 §26.2): both UAs trust the throw-away CA.
if ! "$bin" --help 2>/dev/null | grep -q -- --tls-cert; then
    skip "tls: server has no TLS listener"
elif [[ $have_baresip -eq 0 && $have_sipsak -eq 0 && $have_linphonec -eq 0 ]]; then
    skip "tls: no UA"
elif ! command -v openssl >/dev/null 2>&1; then
    skip "tls: no openssl to make a test certificate"
elif ! make_cert "$work/pki"; then
    fail "tls: openssl could not make the test certificate"
else
    listen="tls:127.0.0.1:PORT"
    if start_server "$bin" --cores 2 --min-expires 1 --tls-cert "$work/pki/server.pem" --tls-key "$work/pki/server.key"; then
        [[ $have_baresip -eq 1 ]] && baresip_tests tls tls "sip_cafile		$work/pki/ca.pem"
        [[ $have_sipsak -eq 1 ]] && sipsak_tests tls
        [[ $have_linphonec -eq 1 ]] && linphonec_tests tls
        stop_server
    else
        fail "sipreg with a TLS listener did not start"
    fi
fi

echo
printf '    %s\n' "${results[@]}"
exit $rc
