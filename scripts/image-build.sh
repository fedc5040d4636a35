#!/usr/bin/env bash
# Build firstword's two container images with buildah (daemonless, a Debian package; no Docker
# daemon needed):  localhost/firstword-worker and localhost/firstword-web, from the Dockerfile.
#   scripts/image-build.sh                  # bases from the registry (python:3.11-slim-bookworm, node:20-bookworm-slim)
#   scripts/image-build.sh --local-bases    # bases made here from Debian's packages (CI: no image registry)
# With --local-bases the same Dockerfile is built; only its PYTHON_BASE / NODE_BASE arguments
# change, to bases that mmdebstrap makes from the Debian mirror and that look like the official
# ones where the Dockerfile relies on it (`python` and `pip` on PATH, pip allowed to install).
# They also carry this machine's extra CA certificates (/usr/local/share/ca-certificates), as a
# company's own base image would, so that uv and npm inside the build reach their registries
# through this machine's TLS proxy.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

local_bases=0
[[ "${1:-}" == "--local-bases" ]] && local_bases=1

packages=(buildah)
[[ $local_bases == 1 ]] && packages+=(mmdebstrap)
scripts/os-packages.sh "${packages[@]}"

# vfs and chroot: what works without a daemon, overlay support or user namespaces (a container
# or a CI sandbox); on a workstation buildah's own defaults are faster.
export STORAGE_DRIVER="${STORAGE_DRIVER:-vfs}" BUILDAH_ISOLATION="${BUILDAH_ISOLATION:-chroot}"

# One local base: a root file system of Debian packages, then an image of it. Rebuilt only when its recipe (the
# packages and this script) changes: the recipe's hash is a label on the image.
local_base() {
  local name="$1" env_lines="$2"
  shift 2
  local include
  include="$(IFS=,; echo "$*")"
  local recipe
  recipe="$( (echo "$include"; cat "${BASH_SOURCE[0]}") | sha256sum | cut -c1-16)"
  if [[ "$(buildah inspect --type image --format '{{index .OCIv1.Config.Labels "firstword.recipe"}}' "$name" 2>/dev/null || true)" == "$recipe" ]]; then
    return
  fi
  local work
  work="$(mktemp -d)"
  # A `python` like the official image's, pip allowed to install (Debian marks its Python
  # externally managed; the official image does not), and this machine's extra CAs.
  mmdebstrap --quiet --variant=minbase --include="$include" \
    --customize-hook='[ -e "$1/usr/bin/python3" ] && ln -sf /usr/bin/python3 "$1/usr/local/bin/python" || true' \
    --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
    --customize-hook='cp -r /usr/local/share/ca-certificates/. "$1/usr/local/share/ca-certificates/" 2>/dev/null || true' \
    --customize-hook='chroot "$1" update-ca-certificates >/dev/null' \
    bookworm "$work/rootfs.tar" "deb http://deb.debian.org/debian bookworm main"
  printf 'FROM scratch\nADD rootfs.tar /\nENV LANG=C.UTF-8 %s\nCMD ["bash"]\n' "$env_lines" >"$work/Containerfile"
  buildah build --quiet --format docker --label "firstword.recipe=$recipe" \
    -f "$work/Containerfile" -t "$name" "$work" >/dev/null
  rm -rf "$work"
  echo "built base $name"
}

args=()
if [[ $local_bases == 1 ]]; then
  certs="SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"
  local_base localhost/firstword-python-base "$certs" python3 python3-pip python3-venv ca-certificates
  local_base localhost/firstword-node-base "$certs NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt" \
    nodejs npm ca-certificates
  args+=(--build-arg PYTHON_BASE=localhost/firstword-python-base --build-arg NODE_BASE=localhost/firstword-node-base)
fi

# --format docker keeps the HEALTHCHECK (the OCI format has none). No --layers: with vfs every
# kept layer is a whole copy of the file system; the wheels are kept in the build cache instead.
for target in worker web; do
  buildah build --quiet --format docker --target "$target" "${args[@]}" \
    -t "localhost/firstword-$target" . >/dev/null
  echo "built localhost/firstword-$target"
done
# What the previous build of the same tags left behind.
buildah rmi --prune >/dev/null 2>&1 || true
