#!/usr/bin/env bash
# Checks the deployment files under deploy/ the way they are used:
#   - builds the container image with deploy/container/build.sh (podman)
#     and inspects it: a non-root user, /keyway as entrypoint, a
#     healthcheck, no executable but keyway (so no shell), a static binary
#     that runs;
#   - runs `keyway check` with that binary on every keyway config under
#     deploy/ (container, systemd, compose, the Kubernetes ConfigMap);
#   - verifies deploy/keyway.service and rates its sandboxing with
#     `systemd-analyze security` (at worst "OK");
#   - tests deploy/compose/nginx.conf with nginx -t, on certificates made
#     by deploy/compose/setup.sh.
# go test ./deploy checks the YAML shapes and docs/deploy.md's snippets.
# Exit status 1, with the reason, on the first failed check; the image and
# every temporary file are removed in any case.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
  echo "check-deploy: FAIL: $*" >&2
  exit 1
}
need() { # program, Debian package
  command -v "$1" >/dev/null && return
  echo "check-deploy: installing $2 (for $1)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$2" >/dev/null
  command -v "$1" >/dev/null || fail "$1 is missing and apt-get could not install $2"
}
need podman podman
need systemd-analyze systemd
need nginx nginx
need openssl openssl
need readelf binutils

work=$(mktemp -d)
# A private storage root: the check neither reads nor leaves anything in
# the machine's own image store, and cleaning up is removing a directory.
# Podman needs no other option here: a FROM scratch build runs no
# container, so neither rlimits nor cgroups get in the way.
podman=(podman --root "$work/storage" --runroot "$work/run")
image=localhost/keyway-check:$$
container=keyway-check-$$
cleanup() {
  "${podman[@]}" rm --force --ignore "$container" >/dev/null 2>&1 || true
  "${podman[@]}" rmi --force "$image" >/dev/null 2>&1 || true
  # Overlay layers may still be mounted under the storage root.
  "${podman[@]}" system reset --force >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT

echo "== container image"
ENGINE="${podman[*]}" bash deploy/container/build.sh "$image" >"$work/build.log" 2>&1 ||
  { cat "$work/build.log" >&2; fail "podman build of deploy/Containerfile"; }

user=$("${podman[@]}" image inspect --format '{{.Config.User}}' "$image")
case ${user%%:*} in
"" | 0 | root) fail "the image runs as root (USER is \"$user\")" ;;
esac
entrypoint=$("${podman[@]}" image inspect --format '{{json .Config.Entrypoint}}' "$image")
[ "$entrypoint" = '["/keyway"]' ] || fail "the entrypoint is $entrypoint, want [\"/keyway\"]"
health=$("${podman[@]}" image inspect --format '{{json .HealthCheck}}' "$image")
grep -q '"/keyway","healthcheck"' <<<"$health" ||
  fail "the image has no healthcheck running keyway healthcheck (got $health)"
volumes=$("${podman[@]}" image inspect --format '{{json .Config.Volumes}}' "$image")
grep -q '"/data"' <<<"$volumes" || fail "the image declares no /data volume (got $volumes)"

# podman create runs nothing, so it works where podman run is refused;
# --no-healthcheck keeps it from asking systemd for a timer.
"${podman[@]}" create --no-healthcheck --name "$container" "$image" >/dev/null
mkdir "$work/rootfs"
"${podman[@]}" export "$container" | tar -x -C "$work/rootfs"
executables=$(cd "$work/rootfs" && find . \( -type f -o -type l \) -perm /111 | sort)
[ "$executables" = "./keyway" ] ||
  fail "the image holds executables besides /keyway (a shell is one): $(echo "$executables" | tr '\n' ' ')"
for name in sh bash ash dash zsh busybox; do
  found=$(find "$work/rootfs" -name "$name" | head -n 1)
  [ -z "$found" ] || fail "the image holds $name: ${found#"$work/rootfs"}"
done
data_owner=$(stat -c '%u:%g %a' "$work/rootfs/data")
[ "$data_owner" = "65532:65532 700" ] || fail "/data is $data_owner in the image, want 65532:65532 700"

keyway=$work/rootfs/keyway
# Static: no program interpreter (dynamic loader) and no shared library.
interp=$(readelf --program-headers --wide "$keyway" | grep -c 'INTERP' || true)
needed=$(readelf --dynamic --wide "$keyway" | grep -c '(NEEDED)' || true)
[ "$interp" = 0 ] && [ "$needed" = 0 ] || fail "/keyway is dynamically linked"
"$keyway" version >"$work/version" || fail "/keyway version does not run"
echo "image: $(cat "$work/version"), user $user, static, no shell, size $("${podman[@]}" image inspect --format '{{.Size}}' "$image" | numfmt --to=iec-i --suffix=B)"

echo "== keyway check on every config under deploy/"
# Placeholders for what the deployments give by environment: the checks
# need a DSN for driver postgres, and the secrets so that --production
# judges where they really come from.
dummy=$(openssl rand -base64 32)
export KEYWAY_PEPPER=$dummy KEYWAY_KEK=$dummy KEYWAY_AUDIT_KEY=$dummy
# check_config FILE "ALLOWED WARNING CODES" [FLAG…]: exit status 0 and no
# warning outside the list.
check_config() {
  local file=$1 allowed=$2
  shift 2
  local out codes code
  out=$("$keyway" check --config "$file" -o json "$@") || {
    "$keyway" check --config "$file" "$@" >&2 || true
    fail "keyway check refuses $file"
  }
  codes=$({ grep -o '"code":"[^"]*"' <<<"$out" || true; } | cut -d'"' -f4 | sort -u)
  for code in $codes; do
    [[ " $allowed " == *" $code "* ]] || {
      "$keyway" check --config "$file" "$@" >&2 || true
      fail "$file: unexpected warning $code"
    }
  done
  echo "$file: ok${codes:+ (expected warnings: $(echo $codes))}"
}
# The image's own config: local TLS on every interface of the container,
# which check rightly says only localhost trusts.
check_config deploy/container/keyway.yaml "listen-local-ca"
check_config deploy/keyway.yaml "" --production
# The compose cluster reaches PostgreSQL and Redis inside its own network
# without TLS (compose.yaml says so); nothing else may be wrong.
KEYWAY_STORE_DSN='postgres://keyway:dummy@postgres:5432/keyway?sslmode=disable' \
  check_config deploy/compose/keyway.yaml "redis-no-tls dsn-sslmode"
# The ConfigMap's keyway.yaml, a block scalar indented by four spaces.
awk '/^  keyway\.yaml: \|$/ { inside = 1; next }
     inside && /^    / { print substr($0, 5); next }
     inside && /^$/ { print; next }
     inside { exit }' deploy/kubernetes/configmap.yaml >"$work/k8s-keyway.yaml"
grep -q '^data_dir:' "$work/k8s-keyway.yaml" || fail "found no keyway.yaml in deploy/kubernetes/configmap.yaml"
KEYWAY_STORE_DSN='postgres://keyway:dummy@postgres.example.internal:5432/keyway?sslmode=verify-full' \
  KEYWAY_REDIS_ADDR=redis.example.internal:6380 \
  check_config "$work/k8s-keyway.yaml" ""
configs=$(find deploy -name 'keyway.yaml' | wc -l)
[ "$configs" = 3 ] || fail "deploy/ holds $configs keyway.yaml files; check each new one here and in deploy/deploy_test.go"

echo "== systemd unit"
# verify wants every program the unit runs to exist. Rather than edit a
# copy of the unit, install it, keyway at the path it names and /bin/kill
# (ExecReload) in a temporary root, with the stock units it depends on.
root=$work/systemd-root
mkdir -p "$root/usr/local/bin" "$root/etc/systemd/system" "$root/usr/lib/systemd" "$root/bin"
cp "$keyway" "$root/usr/local/bin/keyway"
cp /bin/kill "$root/bin/kill"
cp -a /lib/systemd/system "$root/usr/lib/systemd/"
cp deploy/keyway.service "$root/etc/systemd/system/keyway.service"
# An unknown setting is only a message, with exit status 0: any output fails.
verify=$(systemd-analyze verify --root="$root" keyway.service 2>&1) || true
[ -z "$verify" ] || fail "systemd-analyze verify deploy/keyway.service: $verify"
systemd-analyze security --offline=true --root="$root" keyway.service >"$work/security" 2>&1 ||
  { cat "$work/security" >&2; fail "systemd-analyze security could not rate deploy/keyway.service"; }
grep '^✗' "$work/security" || true
score_line=$(grep 'Overall exposure level' "$work/security") || fail "no overall exposure in: $(cat "$work/security")"
echo "$score_line"
score=$(sed -E 's/.*: ([0-9]+\.[0-9]+) .*/\1/' <<<"$score_line")
# systemd calls up to 3.9 "OK"; above is MEDIUM, EXPOSED, UNSAFE.
awk -v s="$score" 'BEGIN { exit !(s < 4.0) }' || fail "deploy/keyway.service's exposure is $score, worse than OK (below 4.0)"

echo "== nginx config (compose)"
mkdir "$work/nginx"
cp deploy/compose/setup.sh deploy/compose/nginx.conf "$work/nginx/"
bash "$work/nginx/setup.sh" >"$work/setup.log" 2>&1 || { cat "$work/setup.log" >&2; fail "deploy/compose/setup.sh"; }
nginx -t -q -p "$work/nginx" -c "$work/nginx/nginx.conf" || fail "nginx -t refuses deploy/compose/nginx.conf"
echo "deploy/compose/nginx.conf: ok"

echo "check-deploy: all checks passed"
