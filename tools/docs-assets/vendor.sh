#!/usr/bin/env bash
# Vendors swagger-ui-dist for the gateway's /docs page (services/gateway/docs).
#
#   vendor.sh <assets-dir>            re-fetch the version pinned in <assets-dir>/VERSION
#   vendor.sh <assets-dir> <x.y.z>    bump: pin <x.y.z> and record its integrity
#
# It fetches the package tarball with `npm pack` into a temporary directory,
# refuses it unless its sha512 matches the integrity recorded in VERSION (on a
# bump, the one the registry publishes for that version, which is then
# recorded), and copies only the files the page needs, byte for byte. VERSION
# also records each copied file's sha256; the package's tests check them. Run
# it twice and nothing changes: the vendoring is reproducible.
#
# Needs npm and node (node computes the digests).
set -euo pipefail

PACKAGE=swagger-ui-dist
# What the page needs: the bundle, its stylesheet, and their licences
# (Apache-2.0 LICENSE and NOTICE; the bundle's third-party notices).
FILES=(swagger-ui-bundle.js swagger-ui.css LICENSE NOTICE swagger-ui-bundle.js.LICENSE.txt)

die() { echo "docs-assets: $*" >&2; exit 1; }

dir=${1:-}
[[ -n "$dir" && -d "$dir" ]] || die "usage: $0 <assets-dir> [version]"
manifest=$dir/VERSION
for tool in npm node; do
	command -v "$tool" >/dev/null || die "$tool not found: install Node.js with npm (Debian: apt-get install npm)"
done

field() { [[ -f "$manifest" ]] && sed -n "s/^$1=//p" "$manifest" || true; }

version=$(field version)
integrity=$(field integrity)
bump=${2:-}
if [[ -n "$bump" && "$bump" != "$version" ]]; then
	[[ "$bump" =~ ^[0-9]+\.[0-9]+\.[0-9]+$ ]] || die "version must be exact (x.y.z), got '$bump'"
	version=$bump
	integrity=$(npm view --silent "$PACKAGE@$version" dist.integrity)
	echo "docs-assets: bumping to $PACKAGE@$version ($integrity)"
fi
[[ -n "$version" ]] || die "no version pinned in $manifest; pass one: $0 $dir <x.y.z>"
[[ "$integrity" == sha512-* ]] || die "no sha512 integrity recorded for $PACKAGE@$version in $manifest"

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

tarball=$(cd "$tmp" && npm pack --silent --ignore-scripts "$PACKAGE@$version" | tail -n 1)
[[ -f "$tmp/$tarball" ]] || die "npm pack $PACKAGE@$version produced no tarball"

digest() { # <algorithm> <encoding> <file>
	node -e 'const [a, e, f] = process.argv.slice(1);
process.stdout.write(require("crypto").createHash(a).update(require("fs").readFileSync(f)).digest(e))' "$@"
}
got="sha512-$(digest sha512 base64 "$tmp/$tarball")"
if [[ "$got" != "$integrity" ]]; then
	die "$tarball integrity mismatch: recorded $integrity, got $got"
fi

tar -xzf "$tmp/$tarball" -C "$tmp" package/package.json "${FILES[@]/#/package/}"
packed=$(node -p 'const p = require(process.argv[1]); p.name + "@" + p.version' "$tmp/package/package.json")
[[ "$packed" == "$PACKAGE@$version" ]] || die "tarball holds $packed, want $PACKAGE@$version"
license=$(node -p 'require(process.argv[1]).license' "$tmp/package/package.json")

{
	echo "# Vendored from the npm package below by tools/docs-assets/vendor.sh (make docs-assets);"
	echo "# do not edit. Bump with: make docs-assets SWAGGER_UI_VERSION=x.y.z"
	echo "package=$PACKAGE"
	echo "version=$version"
	echo "integrity=$integrity"
	echo "license=$license"
	for f in "${FILES[@]}"; do
		install -m 0644 "$tmp/package/$f" "$dir/$f"
		echo "file=$f sha256=$(digest sha256 hex "$dir/$f")"
	done
} > "$tmp/VERSION"
install -m 0644 "$tmp/VERSION" "$manifest"
echo "docs-assets: $PACKAGE@$version ($integrity) -> $dir: ${FILES[*]}"
