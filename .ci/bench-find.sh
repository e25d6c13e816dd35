#!/usr/bin/env bash
# bench-find.sh: the query figures of BENCHMARKS.md (Finding documents),
# side by side in one run. Builds the binary; for -role=all and for
# -role=main with two -role=proc workers, loads 100,000 chat documents of
# about 1 KiB once (each of 5,000 users has 20), then for each round
# restarts the configuration (the workers' index entries are gone) and
# runs the load tool: the index's build, an indexed equality query
# returning 20 documents (c=1), and a query no index serves (a full scan,
# c=1). Usage: .ci/bench-find.sh [ROUNDS] [SECONDS] [DOCS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
secs=${2:-10}
docs=${3:-100000}
work=$(mktemp -d)
trap 'pkill -P $$ || true; rm -rf "$work"' EXIT
go build -o "$work/ddb" .
export MASTER_KEY=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f ADMIN_KEY=bench-admin-key-0123456789
export DELTADB_JOIN_TOKEN=$(od -An -tx1 -N32 /dev/urandom | tr -d " \n")
wait_up() { for _ in $(seq 100); do curl -fs "http://$1/health" >/dev/null && return 0; sleep 0.1; done; return 1; }
wait_workers() { for _ in $(seq 200); do [ "$(curl -fs -H "Authorization: Bearer $ADMIN_KEY" "http://$1/admin/workers" | grep -o Available | wc -l)" = "$2" ] && return 0; sleep 0.1; done; return 1; }
flags=(-find-max-scan=$((2 * docs)) -find-timeout=300s -log-level=warn)

# start NAME WORKERS: 0 workers = -role=all; sets pids
start() {
  local dir="$work/$1" nw=$2
  pids=()
  if [ "$nw" = 0 ]; then
    "$work/ddb" -role=all -rest-addr=127.0.0.1:18181 -grpc-addr=127.0.0.1:18182 -shared-fs="$dir" "${flags[@]}" & pids+=($!)
    wait_up 127.0.0.1:18181
  else
    "$work/ddb" -role=main -rest-addr=127.0.0.1:18181 -grpc-addr=127.0.0.1:18182 -cluster-addr=127.0.0.1:18183 -shared-fs="$dir" "${flags[@]}" & pids+=($!)
    wait_up 127.0.0.1:18181
    for i in $(seq "$nw"); do
      MASTER_KEY= "$work/ddb" -role=proc -worker-id="w$i" -main-addr=127.0.0.1:18183 -shared-fs="$dir" -log-level=warn & pids+=($!)
    done
    wait_workers 127.0.0.1:18181 "$nw"
  fi
}

bench() { "$work/ddb" -role=bench -target=http://127.0.0.1:18181 -token="$ADMIN_KEY" -bench-db=chats -keys="$docs" "$@"; }
rss() { for p in "${pids[@]}"; do awk '/VmRSS/ {printf "%d ", $2/1024}' "/proc/$p/status"; done; echo "MiB"; }

for r in $(seq "$rounds"); do
  for cfg in all:0 main+2:2; do
    name=${cfg%:*}
    start "$name" "${cfg#*:}"
    bench -concurrency=8 -duration=1s -ops=scan >/dev/null # loads once, warms nothing the round needs
    echo "round $r $name rss before index: $(rss)"
    bench -concurrency=1 -duration="${secs}s" -ops=find,scan | sed "s/^/round $r $name /"
    echo "round $r $name rss after: $(rss)"
    kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
  done
done
