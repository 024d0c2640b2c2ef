#!/usr/bin/env bash
# Installs the Debian packages of tools/debian-packages.txt whose command is
# missing, then checks that every command is there. A package name apt does
# not know fails the step loudly (apt-get's own error, exit non-zero).
set -euo pipefail
list="$(dirname "$0")/debian-packages.txt"
missing=()
while read -r cmd pkg _; do
	[[ -z "$cmd" || "$cmd" == \#* ]] && continue
	command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
done <"$list"
if ((${#missing[@]})); then
	echo "deps: installing ${missing[*]}"
	sudo=""
	[[ "$(id -u)" == 0 ]] || sudo=sudo
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
bad=0
while read -r cmd pkg _; do
	[[ -z "$cmd" || "$cmd" == \#* ]] && continue
	if ! command -v "$cmd" >/dev/null 2>&1; then
		echo "deps: $cmd still missing after installing $pkg" >&2
		bad=1
	fi
done <"$list"
exit $bad
