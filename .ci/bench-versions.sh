#!/usr/bin/env bash
# bench-versions.sh: what a durable PUT with entity versions on costs
# (BENCHMARKS.md, "Entity versions: what a write with versions on
# costs"), side by side in one run. Each round runs every configuration
# once, in turn, on a fresh storage directory: -role=all with
# -max-versions=0 (off) and -max-versions=10 (on), of this tree and of
# the commit BEFORE (default main), each driven by this binary's
# -role=bench -ops=put at c=1 then c=32 (1000 keys of ~1 KiB). Lines are
# "NAME-off|NAME-on <bench output>".
# Usage: [BEFORE=main] [PORT=18181] .ci/bench-versions.sh [ROUNDS] [SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; secs=${2:-4}
before=${BEFORE:-main}
work=$(mktemp -d)
trap 'pkill -P $$ || true; git worktree remove --force "$work/src-before" 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/ddb-this" .
git worktree add -f --detach "$work/src-before" "$before" >/dev/null 2>&1
(cd "$work/src-before" && go build -o "$work/ddb-before" .)
export MASTER_KEY=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f ADMIN_KEY=bench-admin-key-0123456789
port=${PORT:-18181}
addr=127.0.0.1:$port
wait_up() { for _ in $(seq 200); do curl -fs -o /dev/null "http://$1/health" && return 0; sleep 0.1; done; return 1; }

# one BIN VERSIONS: start BIN with -max-versions=VERSIONS, drive it at
# c=1 and c=32, stop it
one() {
  local bin=$1 versions=$2 dir="$work/d-$RANDOM"
  local name="$bin-off"; [ "$versions" != 0 ] && name="$bin-on"
  "$work/ddb-$bin" -role=all -rest-addr="$addr" -grpc-addr=127.0.0.1:$((port + 1)) -shared-fs="$dir" \
    -max-versions="$versions" -log-level=warn 2>"$work/$name.log" &
  local pid=$!
  wait_up "$addr"
  for c in 1 32; do
    echo "$name $("$work/ddb-this" -role=bench -target="http://$addr" -token="$ADMIN_KEY" -concurrency=$c -keys=1000 -duration="${secs}s" -ops=put)"
  done
  kill "$pid"
  wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}

printf '# load before: %s\n' "$(cut -d' ' -f1-3 /proc/loadavg)"
for r in $(seq "$rounds"); do
  for bin in before this; do
    for v in 0 10; do one "$bin" "$v"; done
  done
  printf '# round %s done, load: %s\n' "$r" "$(cut -d' ' -f1-3 /proc/loadavg)"
done
