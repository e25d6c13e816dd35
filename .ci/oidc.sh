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
cd "$(dirname "$0")/oidc"

die() { echo "oidc.sh: $*" >&2; exit 1; }

[[ ${1:-} == install ]] || die "usage: oidc.sh install"
command -v node >/dev/null || die "node is not installed"
command -v npm >/dev/null || die "npm is not installed"
sum=$(cat package.json package-lock.json | sha256sum | cut -c1-12)
DIR=${DELTADB_OIDC_PROVIDER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/deltadb/oidc-provider-$sum}
if [[ ! -f $DIR/.installed ]]; then
	mkdir -p "$DIR"
	exec 9>"$DIR.lock"
	flock 9
	if [[ ! -f $DIR/.installed ]]; then
		echo "oidc.sh: installing oidc-provider into $DIR" >&2
		cp package.json package-lock.json "$DIR/"
		(cd "$DIR" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2)
		touch "$DIR/.installed"
	fi
	flock -u 9
fi
echo "export DELTADB_OIDC_PROVIDER_DIR=$DIR"
