#!/bin/bash
# Server on CPU 1 and loadgen on CPU 0, 8 s closed loop; with `poll`, the admin API is polled every 100 ms.
# usage: perf/admin-poll.sh poll|nopoll
cd "$(dirname "$0")/.."
S=target/release/sipreg; L=target/release/sipreg-loadgen
taskset -c 1 $S --listen 127.0.0.1:15060 --cpus 1 --domain example.com --log-level warn --admin 127.0.0.1:19060 &
SP=$!
sleep 1
POLLER=
if [ "$1" = poll ]; then
  ( while true; do
      curl -s -o /dev/null http://127.0.0.1:19060/metrics
      curl -s -o /dev/null "http://127.0.0.1:19060/v1/aors?limit=1000"
      curl -s -o /dev/null http://127.0.0.1:19060/v1/stats
      curl -s -o /dev/null http://127.0.0.1:19060/v1/aors/user1@example.com
      sleep 0.1
    done ) &
  POLLER=$!
fi
$L --target 127.0.0.1:15060 --cpus 0 --scenario register --users 100k --window 256 --duration 8 2>&1 | tail -12
[ -n "$POLLER" ] && kill $POLLER
curl -s -o /dev/null -w "final GET /v1/stats: %{http_code} in %{time_total}s\n" http://127.0.0.1:19060/v1/stats
kill $SP; wait $SP 2>/dev/null
