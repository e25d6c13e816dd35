#!/usr/bin/env bash
# bench-observe.sh: what metrics and the access log cost on warm GET, c=32,
# -role=all (BENCHMARKS.md). Side by side in one run, rounds interleaved:
#   before          commit BASE (default 9cb640d: no metrics, no access log)
#   metrics         this tree, -log-level=warn (metrics on, access log off)
#   metrics+access  this tree, -log-level=info (access log to a file)
# Usage: .ci/bench-observe.sh [ROUNDS] [SECONDS] [BASE]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}; secs=${2:-4}; base=${3:-9cb640d}
work=$(mktemp -d)
trap 'pkill -P $$ || true; git worktree remove --force "$work/src-base" 2>/dev/null || true; rm -rf "$work"' EXIT
git worktree add -f --detach "$work/src-base" "$base" >/dev/null 2>&1
(cd "$work/src-base" && go build -o "$work/ddb-base" .)
go build -o "$work/ddb" .
export MASTER_KEY=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f ADMIN_KEY=bench-admin-key-0123456789
wait_up() { for _ in $(seq 100); do curl -fs "http://$1/health" >/dev/null && return 0; sleep 0.1; done; return 1; }
one() { # NAME BINARY LOG-LEVEL
  local dir="$work/d-$RANDOM"
  "$work/$2" -role=all -rest-addr=127.0.0.1:18191 -grpc-addr=127.0.0.1:18192 -shared-fs="$dir" -log-level="$3" 2>"$work/$1.log" &
  local pid=$!
  wait_up 127.0.0.1:18191
  "$work/ddb" -role=bench -target=http://127.0.0.1:18191 -token="$ADMIN_KEY" -concurrency=32 -keys=1000 -duration="${secs}s" -ops=get | sed "s/^/$1 /"
  kill "$pid"; wait "$pid" 2>/dev/null || true
  rm -rf "$dir"
}
for r in $(seq "$rounds"); do
  echo "# round $r"
  one before ddb-base info
  one metrics ddb warn
  one metrics+access ddb info
done
