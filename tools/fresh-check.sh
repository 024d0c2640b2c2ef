#!/usr/bin/env bash
# Part of `make test`: proves that every tool the tests and make targets use
# installs from nothing through the project's own files, so that a missing or
# broken install step fails here and not on a new user's machine.
#  1. No tool is pinned by a release name or `latest`: every `go install` /
#     `go run` of a module names a module version vX.Y.Z.
#  2. With a GOPATH of its own and an empty GOBIN (module cache shared, so it
#     costs no download), and no GOPATH/bin on PATH: the go.mod tools
#     (`go tool staticcheck`) resolve and run, and every `go install X@vX.Y.Z`
#     of the Makefile installs.
#  3. Every Debian package name of tools/debian-packages.txt is known to apt.
set -euo pipefail
cd "$(dirname "$0")/.."
fail() { echo "fresh-check: $*" >&2; exit 1; }

files=$(git ls-files 2>/dev/null | grep -E '(^|/)(Makefile|run|[^/]*\.sh|[^/]*\.go|[^/]*\.md|[^/]*\.toml)$' | grep -v '^tools/fresh-check.sh$' || true)
[ -n "$files" ] || files=$(find . -name Makefile -o -name '*.sh' -o -name '*.go' -o -name '*.md' | grep -v fresh-check.sh)
# go install / go run / go get of a module at a version that is not vX.Y.Z.
bad=$(grep -nE 'go (install|run|get)( -[a-z]+)* [a-z0-9.-]+\.[a-z]+/[^ @]+@' $files | grep -vE '@v[0-9]+\.[0-9]+\.[0-9]+([ ;|&`"]|$)' || true)
[ -z "$bad" ] || fail "tool versions must be module versions vX.Y.Z:"$'\n'"$bad"
latest=$(grep -nE '@latest\b' $files || true)
[ -z "$latest" ] || fail "no tool may be pinned to latest:"$'\n'"$latest"

tmp=$(mktemp -d)
trap 'chmod -R u+w "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
gopath_bin="$(go env GOPATH)/bin"
clean_path=$(printf '%s' "$PATH" | tr ':' '\n' | grep -vxF "$gopath_bin" | paste -sd: -)
run_fresh() {
	env GOPATH="$tmp/gopath" GOBIN="$tmp/bin" GOMODCACHE="$(go env GOMODCACHE)" GOFLAGS= PATH="$clean_path" "$@"
}
# Both spellings of go.mod's tool directive: `tool X` and a `tool ( … )` block.
# Go flag tools answer -version, cobra ones (nfpm) only --version.
for tool in $(awk '/^tool[[:space:]]*\(/{b=1;next} b&&/^\)/{b=0;next} b&&NF{print $1;next} /^tool[[:space:]]/{print $2}' go.mod); do
	run_fresh go tool "${tool##*/}" -version >/dev/null 2>&1 || run_fresh go tool "${tool##*/}" --version >/dev/null ||
		fail "go tool ${tool##*/} (go.mod tool $tool) does not build from nothing"
done
for pin in $(grep -ohE 'go install [^ ;|&]+@v[0-9]+\.[0-9]+\.[0-9]+' Makefile .ci/run 2>/dev/null | awk '{print $3}' | sort -u); do
	run_fresh go install "$pin" || fail "go install $pin fails with an empty GOBIN"
done

if command -v apt-cache >/dev/null 2>&1; then
	while read -r cmd pkg _; do
		[[ -z "$cmd" || "$cmd" == \#* ]] && continue
		apt-cache show --no-all-versions "$pkg" >/dev/null 2>&1 ||
			fail "tools/debian-packages.txt: $pkg (for $cmd) is not a package apt knows"
	done <tools/debian-packages.txt
fi
echo "fresh-check: tools install from nothing"
