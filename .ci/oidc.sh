#!/usr/bin/env bash
# oidc.sh: the real OpenID provider of the OIDC tests (oidc_provider_test.go):
# node's oidc-provider, pinned with its dependencies in .ci/oidc/package.json
# and package-lock.json, run by .ci/oidc/provider.mjs (the tests start it).
#
#   .ci/oidc.sh install   install once per machine (npm ci); print
#                         export DELTADB_OIDC_PROVIDER_DIR=DIR
#
#   eval "$(bash .ci/oidc.sh install)" && go test -run RealOIDCProvider .
#
# DIR is $DELTADB_OIDC_PROVIDER_DIR or ${XDG_CACHE_HOME:-$HOME/.cache}/deltadb/oidc-provider
# plus a hash of the lock file, so a changed pin installs afresh. Needs node (20.19 or
# later; oidc-provider 9 prints a warning on node 20 and runs) and npm; an install
# takes ~10 s, later runs nothing.
set -euo pipefail
[[ ${1:-} == install ]] || { echo "usage: oidc.sh install" >&2; exit 1; }
ci=$(dirname "$0")
exec bash "$ci/npm-tools.sh" "$ci/oidc" oidc-provider DELTADB_OIDC_PROVIDER_DIR
