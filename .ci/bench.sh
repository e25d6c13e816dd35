#!/usr/bin/env bash
# bench.sh: the side-by-side load measurements of BENCHMARKS.md, in one run.
# Builds the binary, then for each round runs every configuration once, in
# turn, so that machine noise spreads over all of them; prints one line per
# (round, configuration, operation). Usage: .ci/bench.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}
secs=${2:-4}
work=$(mktemp -d)
trap 'pkill -P $$ || true; rm -rf "$work"' EXIT
go build -o "$work/ddb" .
export MASTER_KEY=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f ADMIN_KEY=bench-admin-key-0123456789
# main and workers prove this join token to each other (README, Several workers)
export DELTADB_JOIN_TOKEN=$(od -An -tx1 -N32 /dev/urandom | tr -d " \n")
bench() { "$work/ddb" -role=bench -duration="${secs}s" -keys=1000 "$@"; }
wait_up() { for _ in $(seq 100); do curl -fs "http://$1/health" >/dev/null && return 0; sleep 0.1; done; return 1; }
wait_workers() { for _ in $(seq 200); do [ "$(curl -fs -H "Authorization: Bearer $ADMIN_KEY" "http://$1/admin/workers" | grep -o Available | wc -l)" = "$2" ] && return 0; sleep 0.1; done; return 1; }

# run_cluster NAME WORKERS: 0 workers = -role=all
run_cluster() {
  local name=$1 nw=$2 dir="$work/$1-$RANDOM" pids=()
  if [ "$nw" = 0 ]; then
    "$work/ddb" -role=all -rest-addr=127.0.0.1:18181 -grpc-addr=127.0.0.1:18182 -shared-fs="$dir" -log-level=warn & pids+=($!)
    wait_up 127.0.0.1:18181
  else
    "$work/ddb" -role=main -rest-addr=127.0.0.1:18181 -grpc-addr=127.0.0.1:18182 -cluster-addr=127.0.0.1:18183 -shared-fs="$dir" -log-level=warn & pids+=($!)
    wait_up 127.0.0.1:18181
    for i in $(seq "$nw"); do
      MASTER_KEY= "$work/ddb" -role=proc -worker-id="w$i" -main-addr=127.0.0.1:18183 -cache-size=2048 -shared-fs="$dir" -log-level=warn & pids+=($!)
    done
    wait_workers 127.0.0.1:18181 "$nw"
  fi
  for c in 1 32; do
    bench -target=http://127.0.0.1:18181 -token="$ADMIN_KEY" -concurrency=$c -ops=put,get | sed "s/^/$name /"
  done
  kill "${pids[@]}"; wait "${pids[@]}" 2>/dev/null || true
}

for r in $(seq "$rounds"); do
  echo "# round $r"
  for c in 1 32; do
    bench -ceiling=http -concurrency=$c | sed "s/^/raw /"
    bench -ceiling=fsync -ceiling-dir="$work" -concurrency=$c | sed "s/^/raw /"
  done
  run_cluster all 0
  run_cluster main+1 1
  run_cluster main+2 2
done
