#!/usr/bin/env bash
# A throw-away Redis Cluster on 127.0.0.1 for sipreg's tests (SCALE-OUT-NOTES.md, appendix B).
#
#   scripts/redis-cluster.sh start DIR   3 masters + 3 replicas; ports written to DIR/ports
#                                        (one a line, masters first as created)
#   scripts/redis-cluster.sh stop DIR    kill exactly the servers DIR's pid files name
#   scripts/redis-cluster.sh install     install redis-server + redis-tools if missing
#
# Settings are the notes' recommendations: cluster-require-full-coverage no (a failing
# shard does not take the healthy ones down), appendonly yes (a restarted master never
# comes back empty and wipes its replica), cluster-replica-validity-factor 0 (a replica
# always takes over), hash-max-listpack-value 512 (a hash per AOR stays a listpack), and a
# short cluster-node-timeout for tests.
#
# Split brain is bounded with min-replicas-to-write 1 and min-replicas-max-lag (seconds):
# a master that has not heard from a replica for that long (cut off from it, or on the
# minority side of a partition) refuses writes (NOREPLICAS, sipreg answers 503), so it
# cannot acknowledge bindings that the replica taking over will never have. The price:
# a master left without any replica (its replica died, or it is a replica promoted after
# its master died) refuses writes too, until a replica is attached again. Override with
# REDIS_MIN_REPLICAS_TO_WRITE=0 for a cluster without replicas.
#
# start is idempotent (a DIR whose cluster answers cluster_state:ok is left running) and
# clean on failure (whatever it started is stopped again). Every wait is bounded.
set -uo pipefail

NODES=6
NODE_TIMEOUT_MS=${REDIS_CLUSTER_NODE_TIMEOUT_MS:-2000}
MIN_REPLICAS_TO_WRITE=${REDIS_MIN_REPLICAS_TO_WRITE:-1}
MIN_REPLICAS_MAX_LAG_S=${REDIS_MIN_REPLICAS_MAX_LAG_S:-5}
START_WAIT_TENTHS=100   # 10 s for a server to answer PING
OK_WAIT_TENTHS=200      # 20 s for cluster_state:ok with every slot covered
STOP_WAIT_TENTHS=50     # 5 s for the servers to exit after SIGTERM, then SIGKILL

die() { echo "redis-cluster: $*" >&2; exit 1; }

ensure_redis() {
    command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1 && return 0
    echo "redis-server not found: installing redis-server redis-tools" >&2
    [[ $(id -u) -eq 0 ]] || { echo "not root: apt-get install redis-server redis-tools" >&2; return 1; }
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null &&
        apt-get install -y -qq --no-install-recommends redis-server redis-tools >/dev/null &&
        command -v redis-server >/dev/null && command -v redis-cli >/dev/null
}

port_free() {
    ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# A base port such that base..base+5 and their bus ports (+10000) are all free, all
# below the kernel's ephemeral range when it leaves room: a port in that range can be
# taken by any outgoing connection between this check and the server's bind (seen here
# with several clusters on one machine).
pick_base() {
    local attempt base p ok low span=0
    low=$(cut -f1 /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null) || low=32768
    [[ "$low" =~ ^[0-9]+$ ]] && span=$((low - 20000 - NODES))
    for attempt in $(seq 1 50); do
        if ((span > 1000)); then
            base=$((10000 + RANDOM % span))
        else
            base=$((20000 + RANDOM % 25000))
        fi
        ok=1
        for p in $(seq "$base" $((base + NODES - 1))); do
            port_free "$p" && port_free $((p + 10000)) || { ok=0; break; }
        done
        [[ $ok -eq 1 ]] && { echo "$base"; return 0; }
    done
    return 1
}

stop_cluster() {
    local dir=$1 pidfile pid i
    local pids=()
    # SIGTERM to every node first, then wait for all: a node takes about 2 s to exit.
    for pidfile in "$dir"/node-*/redis.pid; do
        [[ -f "$pidfile" ]] || continue
        pid=$(cat "$pidfile" 2>/dev/null) || continue
        [[ "$pid" =~ ^[0-9]+$ ]] || continue
        # Only a redis-server we started (the pid file is ours; the check guards reuse).
        if kill -0 "$pid" 2>/dev/null && grep -q redis-server "/proc/$pid/cmdline" 2>/dev/null; then
            kill -TERM "$pid" 2>/dev/null && pids+=("$pid")
        fi
        rm -f "$pidfile"
    done
    for pid in "${pids[@]}"; do
        for i in $(seq 1 $STOP_WAIT_TENTHS); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        ! kill -0 "$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
    done
}

cluster_ok() {
    local port=$1 info
    info=$(redis-cli -h 127.0.0.1 -p "$port" cluster info 2>/dev/null) || return 1
    grep -q '^cluster_state:ok' <<<"$info" && grep -q '^cluster_slots_ok:16384' <<<"$info"
}

start_cluster() {
    local dir=$1
    mkdir -p "$dir" || die "cannot create $dir"
    dir=$(cd "$dir" && pwd)
    if [[ -f "$dir/ports" ]] && cluster_ok "$(head -n1 "$dir/ports")"; then
        echo "redis-cluster: already running in $dir (ports $(tr '\n' ' ' <"$dir/ports"))"
        return 0
    fi
    stop_cluster "$dir"
    rm -rf "$dir"/node-* "$dir/ports"
    ensure_redis || die "redis-server is not installed and could not be"
    local base
    base=$(pick_base) || die "no free port range found"
    local ports=() p i
    for i in $(seq 0 $((NODES - 1))); do
        p=$((base + i))
        ports+=("$p")
        mkdir -p "$dir/node-$p"
        cat >"$dir/node-$p/redis.conf" <<CONF
bind 127.0.0.1
port $p
daemonize yes
pidfile $dir/node-$p/redis.pid
logfile $dir/node-$p/redis.log
dir $dir/node-$p
cluster-enabled yes
cluster-config-file nodes.conf
cluster-node-timeout $NODE_TIMEOUT_MS
cluster-require-full-coverage no
cluster-replica-validity-factor 0
hash-max-listpack-value 512
save ""
appendonly yes
appendfsync everysec
min-replicas-to-write $MIN_REPLICAS_TO_WRITE
min-replicas-max-lag $MIN_REPLICAS_MAX_LAG_S
CONF
        redis-server "$dir/node-$p/redis.conf" >/dev/null || return 1
    done
    for p in "${ports[@]}"; do
        for i in $(seq 1 $START_WAIT_TENTHS); do
            [[ $(redis-cli -h 127.0.0.1 -p "$p" ping 2>/dev/null) == PONG ]] && break
            sleep 0.1
        done
        [[ $(redis-cli -h 127.0.0.1 -p "$p" ping 2>/dev/null) == PONG ]] || {
            echo "redis-cluster: node $p did not start:" >&2
            tail -n 20 "$dir/node-$p/redis.log" >&2
            return 1
        }
    done
    local addrs=()
    for p in "${ports[@]}"; do addrs+=("127.0.0.1:$p"); done
    timeout 60 redis-cli --cluster create "${addrs[@]}" --cluster-replicas 1 --cluster-yes \
        >"$dir/create.log" 2>&1 || { cat "$dir/create.log" >&2; return 1; }
    wait_every_node cluster_ok "never reached cluster_state:ok" "${ports[@]}" || return 1
    # cluster_state:ok comes before the replicas have synced: a master killed then
    # would fail over to an empty replica. Wait until every replica's link is up.
    wait_every_node replica_synced "(a replica) never synced with its master" "${ports[@]}" || return 1
    printf '%s\n' "${ports[@]}" >"$dir/ports"
    echo "redis-cluster: ready in $dir (ports ${ports[*]})"
}

# wait_every_node CHECK WHAT PORT...: wait (OK_WAIT_TENTHS) until CHECK holds for every
# port; else name the first port it fails for.
wait_every_node() {
    local check=$1 what=$2 i p all
    shift 2
    for i in $(seq 1 $OK_WAIT_TENTHS); do
        all=1
        for p in "$@"; do "$check" "$p" || { all=0; break; }; done
        [[ $all -eq 1 ]] && return 0
        sleep 0.1
    done
    for p in "$@"; do
        "$check" "$p" || { echo "redis-cluster: node $p $what" >&2; return 1; }
    done
}

# A node is a master, or a replica whose link to its master is up (initial sync done).
replica_synced() {
    local info
    info=$(redis-cli -h 127.0.0.1 -p "$1" info replication 2>/dev/null | tr -d '\r')
    grep -q '^role:master' <<<"$info" || grep -q '^master_link_status:up' <<<"$info"
}

case "${1:-}" in
start)
    [[ $# -eq 2 ]] || die "usage: $0 start DIR"
    # A port taken between the check and the bind fails one attempt, not the start.
    for attempt in 1 2 3; do
        start_cluster "$2" && exit 0
        stop_cluster "$2"
        echo "redis-cluster: start attempt $attempt failed; stopped what was started" >&2
    done
    die "start failed 3 times"
    ;;
stop)
    [[ $# -eq 2 ]] || die "usage: $0 stop DIR"
    [[ -d "$2" ]] || exit 0
    stop_cluster "$2"
    rm -f "$2/ports"
    ;;
install)
    ensure_redis || die "redis-server is not installed and could not be"
    redis-server --version
    ;;
*)
    die "usage: $0 start DIR | stop DIR | install"
    ;;
esac
