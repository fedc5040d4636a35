#!/usr/bin/env bash
# Install the Debian packages named as arguments, only those not installed yet. The package
# index is refreshed once, only when something is missing. A lock file serialises concurrent
# runs (several test sessions or scripts at once would otherwise race for dpkg's lock).
#   scripts/os-packages.sh redis-server prometheus
set -euo pipefail

missing=()
for pkg in "$@"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
[[ ${#missing[@]} == 0 ]] && exit 0

sudo=""
[[ $(id -u) == 0 ]] || sudo="sudo"
echo "installing Debian packages: ${missing[*]}"
exec 9>/tmp/firstword-os-packages.lock
flock -w 600 9
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
  -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
