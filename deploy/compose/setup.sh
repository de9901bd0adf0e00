#!/usr/bin/env bash
# Makes what compose.yaml needs and must not be in git: certs/ (a private
# CA, the nodes' certificate and nginx's) and .env (the secrets). Run it
# once; it refuses to overwrite either, since new secrets would orphan
# every key and sealed field the cluster holds.
set -euo pipefail
cd "$(dirname "$0")"
umask 077
if [ -e .env ] || [ -e certs ]; then
  echo "setup.sh: .env or certs/ exists already; remove both to start a new cluster from nothing" >&2
  exit 1
fi
mkdir certs

secret() { openssl rand -base64 32; }
cat >.env <<ENV
KEYWAY_PEPPER=$(secret)
KEYWAY_KEK=$(secret)
KEYWAY_AUDIT_KEY=$(secret)
POSTGRES_PASSWORD=$(openssl rand -hex 24)
REDIS_PASSWORD=$(openssl rand -hex 24)
ENV

# A CA that lives only as long as this script: the certificates it signs
# are all it is for, so its key is never written to disk.
ca_key=$(openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256)
openssl req -x509 -new -key <(printf '%s\n' "$ca_key") -sha256 -days 825 \
  -subj "/CN=keyway compose CA" -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign" -out certs/ca.pem
issue() { # name SANs
  openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "certs/$1.key"
  openssl req -new -key "certs/$1.key" -subj "/CN=$1" -out "certs/$1.csr"
  openssl x509 -req -in "certs/$1.csr" -CA certs/ca.pem -CAkey <(printf '%s\n' "$ca_key") \
    -CAcreateserial -days 397 -sha256 -out "certs/$1.crt" \
    -extfile <(printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\n' "$2")
  rm "certs/$1.csr"
}
# nginx reaches the nodes as "keyway"; keyway healthcheck, inside each
# node, as localhost (server.hosts).
issue node "DNS:keyway,DNS:localhost"
issue public "DNS:localhost"
rm -f certs/ca.srl
chmod 0755 certs && chmod 0644 certs/*.crt certs/ca.pem

# keyway runs as uid 65532 and reads node.key through a bind mount, which
# keeps the host's owner.
if [ "$(id -u)" = 0 ]; then
  chown 65532:65532 certs/node.key
else
  echo "setup.sh: now give certs/node.key to the container's user:"
  echo "  sudo chown 65532:65532 $(pwd)/certs/node.key          # docker, rootful podman"
  echo "  podman unshare chown 65532:65532 $(pwd)/certs/node.key  # rootless podman"
fi
echo "setup.sh: wrote $(pwd)/.env and $(pwd)/certs/"
