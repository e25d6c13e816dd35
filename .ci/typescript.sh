#!/usr/bin/env bash
# typescript.sh: the tools of the TypeScript client (clients/typescript):
# typescript, openapi-typescript and @types/node, pinned with their
# dependencies in clients/typescript/package.json and package-lock.json,
# installed outside the repository (TestTypeScriptClient links them in).
#
#   .ci/typescript.sh install   install once per machine (npm ci); print
#                               export DELTADB_TS_TOOLS_DIR=DIR
#
#   eval "$(bash .ci/typescript.sh install)" && go test -run TypeScript .
#
# DIR is $DELTADB_TS_TOOLS_DIR or ${XDG_CACHE_HOME:-$HOME/.cache}/deltadb/typescript
# plus a hash of the lock file (npm-tools.sh); DIR/node_modules holds the
# tools. Needs node (18 or later) and npm.
set -euo pipefail
[[ ${1:-} == install ]] || { echo "usage: typescript.sh install" >&2; exit 1; }
ci=$(dirname "$0")
exec bash "$ci/npm-tools.sh" "$ci/../clients/typescript" typescript DELTADB_TS_TOOLS_DIR
