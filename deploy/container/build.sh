#!/usr/bin/env bash
# Builds keyway's container image from this checkout: compiles a static
# binary, stages a build context with it, the host's CA bundle and the files
# beside this script, and runs the engine on deploy/Containerfile.
#
#   bash deploy/container/build.sh [TAG]          # default localhost/keyway:latest
#   ENGINE=docker bash deploy/container/build.sh
#
# ENGINE is the engine's command with any global options it needs (split on
# spaces); scripts/check-deploy.sh passes a private storage root that way.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
tag=${1:-localhost/keyway:latest}
read -r -a engine <<<"${ENGINE:-podman}"
ca_bundle=${CA_BUNDLE:-/etc/ssl/certs/ca-certificates.crt}

if [ ! -s "$ca_bundle" ]; then
  echo "build.sh: no CA bundle at $ca_bundle (install ca-certificates, or set CA_BUNDLE)" >&2
  exit 1
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT

# Static (no cgo: modernc.org/sqlite is pure Go), reproducible paths, no
# symbol table or DWARF: the image holds nothing it does not run.
(cd "$repo" && CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o "$ctx/keyway" ./cmd/keyway)
cp "$here/passwd" "$here/group" "$here/keyway.yaml" "$ctx/"
cp "$ca_bundle" "$ctx/ca-certificates.crt"
chmod 0644 "$ctx/passwd" "$ctx/group" "$ctx/keyway.yaml" "$ctx/ca-certificates.crt"
# keyway makes its data directory 0700; a volume made from this one starts so.
mkdir -p "$ctx/rootfs" && mkdir -m 0700 "$ctx/rootfs/data"

# Podman and Buildah write OCI images by default, which have no HEALTHCHECK.
format=()
case $(basename "${engine[0]}") in podman | buildah) format=(--format docker) ;; esac
"${engine[@]}" build "${format[@]}" --file "$repo/deploy/Containerfile" --tag "$tag" "$ctx"
