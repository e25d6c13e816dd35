#!/usr/bin/env bash
# npm-tools.sh: install the npm packages that PKGDIR/package.json and
# PKGDIR/package-lock.json pin, once per machine, outside the repository,
# and print export VAR=DIR (DIR/node_modules holds them).
#
#   bash .ci/npm-tools.sh PKGDIR NAME VAR
#
# DIR is $VAR or ${XDG_CACHE_HOME:-$HOME/.cache}/deltadb/NAME plus a hash of
# the two files, so a changed pin installs afresh. Needs node and npm; an
# install takes ~10 s, later runs nothing. Used by oidc.sh and
# typescript.sh.
set -euo pipefail

die() { echo "npm-tools.sh: $*" >&2; exit 1; }

[[ $# == 3 ]] || die "usage: npm-tools.sh PKGDIR NAME VAR"
PKGDIR=$1 NAME=$2 VAR=$3
command -v node >/dev/null || die "node is not installed"
command -v npm >/dev/null || die "npm is not installed"
cd "$PKGDIR"
sum=$(cat package.json package-lock.json | sha256sum | cut -c1-12)
DIR=${!VAR:-${XDG_CACHE_HOME:-$HOME/.cache}/deltadb/$NAME-$sum}
if [[ ! -f $DIR/.installed ]]; then
	mkdir -p "$DIR"
	exec 9>"$DIR.lock"
	flock 9
	if [[ ! -f $DIR/.installed ]]; then
		echo "npm-tools.sh: installing $PKGDIR's packages into $DIR" >&2
		cp package.json package-lock.json "$DIR/"
		(cd "$DIR" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2)
		touch "$DIR/.installed"
	fi
	flock -u 9
fi
echo "export $VAR=$DIR"
