#!/usr/bin/env bash
# bench-proxy.sh — what does keyway cost next to a bare Go reverse proxy and
# nginx? One run measures, on this machine, with wrk:
#
#   direct        the upstream itself, plain HTTP (bench/upstream, GOMAXPROCS=1)
#   bare          httputil.NewSingleHostReverseProxy, default Transport, TLS 1.3
#                 with an ECDSA P-256 certificate (bench/bareproxy)
#   nginx         nginx as a plain TLS 1.3 terminating proxy, upstream keepalive on
#   keyway        keyway on a `public` route, access log on (as in production)
#   keyway-nolog  the same with the access log off (extra information)
#   keyway-key-nolog  keyway-key's route on the keyway-nolog instance
#   keyway-session  the keyway instance of "keyway", on a `session` route, with
#                 the cookie of a person signed up by bench/signup (a software
#                 passkey through the portal's endpoints)
#   keyway-key    the keyway instance of "keyway", on an `api_key` route with a
#                 scoped key whose rate limit never triggers (Bearer header)
#   keyway-key-std  the same instance and key on a route whose upstream has
#                 standard_proxy: true (httputil.ReverseProxy + http.Transport
#                 instead of keyway's direct path): what the direct path gains
#   keyway-post, keyway-post-std  optional (--cases): keyway-key and
#                 keyway-key-std with a 1 KiB JSON POST: the direct path's gain
#                 for small bodies
#   bare-tuned    optional (--cases): bare + sync.Pool buffers + 256 idle conns
#   nginx-auth    nginx TLS + auth_request to a trivial always-allow Go service
#                 over TLS with keep-alive (bench/bareproxy -allow), on /key/hello
#   nginx-keyway  the same nginx, auth_request to keyway's forward auth
#                 (/.keyway/verify/nginx) on keyway's api_key route, with the key
#   keyway-redis  optional (--cases): keyway-key's route on a second keyway whose
#                 key limit is shared through Redis ($BENCH_REDIS, default
#                 127.0.0.1:6379): the cost of the cluster limiter
#
# Then, paced (when keyway-key and nginx-auth both run): the two under the
# same offered load, half of nginx-auth's saturated req/s, each connection
# waiting a random while after each answer; their tails are compared there.
#
# Then, unloaded (wrk -c1, one connection): the upstream direct and keyway's
# api_key route, for the latency keyway adds to one request; for scale, the
# same for nginx, the bare ReverseProxy and a Go TLS server answering alone.
#
# Targets (issue 11), judged on the medians; the script exits 3 when one is
# missed (--no-targets: report only):
#   keyway-key / nginx-auth  >= 1.2   keyway's api_key route against nginx +
#                                      auth_request to a trivial Go check
#   keyway-key / nginx       >= 0.6   the same route against nginx as a plain proxy
#   keyway-key p99 <= nginx-auth p99  under the same offered load (paced);
#                                      the saturated p99s are printed too
#   c=1 p50 added by keyway-key over direct <= 100 us
#
# Every proxy terminates TLS 1.3 with an ECDSA P-256 certificate and forwards
# to the same upstream over plain HTTP/1.1 with keep-alive. The cases are
# interleaved in --rounds rounds (the second one in reverse order), each round
# starts with the direct case and one more direct run closes the series; the
# table shows medians. Everything binds to 127.0.0.1 and every process the
# script starts is stopped on exit, failure included.
#
# Usage: scripts/bench-proxy.sh [-d 10s] [-c 64] [-r 2] [--nginx-workers 1|auto]
#                               [--cases "bare nginx keyway keyway-key keyway-nolog"]
#                               [--port-base 18400] [--wait-idle SECONDS] [--keep] [--no-targets]
#
# --wait-idle N: before each run, wait up to N seconds for one second in which
# the machine is idle (under 10% of one CPU busy), for shared machines where
# other work comes and goes. The "other" column tells how much CPU other
# processes took during each run either way.
# See docs/performance.md for the method and the figures.
set -euo pipefail

DURATION=10s
CONNECTIONS=64
ROUNDS=2
NGINX_WORKERS=1
CASES="bare nginx keyway keyway-key keyway-key-std keyway-nolog keyway-key-nolog keyway-session nginx-auth nginx-keyway"
PORT_BASE=18400
KEEP=0
WAIT_IDLE=0
WARMUP=2s
TARGETS=1

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

while [ $# -gt 0 ]; do
  case "$1" in
    -d|--duration) DURATION=$2; shift 2 ;;
    -c|--connections) CONNECTIONS=$2; shift 2 ;;
    -r|--rounds) ROUNDS=$2; shift 2 ;;
    --nginx-workers) NGINX_WORKERS=$2; shift 2 ;;
    --cases) CASES=$2; shift 2 ;;
    --port-base) PORT_BASE=$2; shift 2 ;;
    --wait-idle) WAIT_IDLE=$2; shift 2 ;;
    --keep) KEEP=1; shift ;;
    --no-targets) TARGETS=0; shift ;;
    -h|--help) usage; exit 0 ;;
    *) echo "bench-proxy: unknown argument: $1 (see --help)" >&2; exit 2 ;;
  esac
done
[[ $CONNECTIONS =~ ^[1-9][0-9]*$ ]] || { echo "bench-proxy: -c wants a positive integer" >&2; exit 2; }
[[ $ROUNDS =~ ^[1-9][0-9]*$ ]] || { echo "bench-proxy: -r wants a positive integer" >&2; exit 2; }
[[ $DURATION =~ ^[1-9][0-9]*[smh]?$ ]] || { echo "bench-proxy: -d wants a wrk duration such as 10s" >&2; exit 2; }
[[ $WAIT_IDLE =~ ^[0-9]+$ ]] || { echo "bench-proxy: --wait-idle wants seconds" >&2; exit 2; }
[[ $NGINX_WORKERS =~ ^([1-9][0-9]*|auto)$ ]] || { echo "bench-proxy: --nginx-workers wants a number or auto" >&2; exit 2; }
for c in $CASES; do
  case "$c" in bare|bare-tuned|nginx|keyway|keyway-key|keyway-key-std|keyway-post|keyway-post-std|keyway-nolog|keyway-key-nolog|keyway-session|nginx-auth|nginx-keyway|keyway-redis) ;; *) echo "bench-proxy: unknown case $c" >&2; exit 2 ;; esac
done

cd "$(dirname "$0")/.."
log() { printf '[bench-proxy] %s\n' "$*" >&2; }

# --- tools --------------------------------------------------------------------
NGINX=$(command -v nginx || true)
[ -z "$NGINX" ] && [ -x /usr/sbin/nginx ] && NGINX=/usr/sbin/nginx
missing=()
[ -z "$NGINX" ] && missing+=(nginx-light)
command -v wrk >/dev/null || missing+=(wrk)
command -v curl >/dev/null || missing+=(curl)
command -v openssl >/dev/null || missing+=(openssl)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "bench-proxy: missing ${missing[*]}; run as root (apt-get install -y ${missing[*]})" >&2
    exit 1
  fi
  log "installing ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
  NGINX=$(command -v nginx || echo /usr/sbin/nginx)
fi
command -v go >/dev/null || { echo "bench-proxy: go is required" >&2; exit 1; }

# --- ports ----------------------------------------------------------------------
P_UP=$PORT_BASE
P_BARE=$((PORT_BASE + 1))
P_TUNED=$((PORT_BASE + 2))
P_NGINX=$((PORT_BASE + 3))
P_KW=$((PORT_BASE + 4))
P_KWNL=$((PORT_BASE + 5))
P_KW_ADMIN=$((PORT_BASE + 6))
P_KWNL_ADMIN=$((PORT_BASE + 7))
P_ALLOW=$((PORT_BASE + 8))
P_NGINX_AUTH=$((PORT_BASE + 9))
P_NGINX_KW=$((PORT_BASE + 10))
P_KWR=$((PORT_BASE + 11))
P_KWR_ADMIN=$((PORT_BASE + 12))
P_FLOOR=$((PORT_BASE + 13))
P_FLOOR1=$((PORT_BASE + 14))
for p in $(seq "$P_UP" "$P_KWR_ADMIN"); do
  if (exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null; then
    echo "bench-proxy: 127.0.0.1:$p is already in use (try --port-base)" >&2
    exit 1
  fi
done

# --- processes and cleanup ------------------------------------------------------
TMP=$(mktemp -d /tmp/bench-proxy.XXXXXX)
PIDS=()
WRK_PID=
cleanup() {
  local rc=$? pid i
  trap - EXIT INT TERM
  [ -n "$WRK_PID" ] && { kill -TERM "$WRK_PID" 2>/dev/null || true; }
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for i in $(seq 50); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ $alive -eq 0 ] && break
    sleep 0.1
  done
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  if [ "$KEEP" -eq 1 ]; then log "kept $TMP"; else rm -rf "$TMP"; fi
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# start NAME CMD... runs CMD in the background, its output in $TMP/NAME.log,
# and leaves its PID in LAST_PID.
LAST_PID=
start() {
  local name=$1; shift
  "$@" >"$TMP/$name.log" 2>&1 &
  LAST_PID=$!
  PIDS+=("$LAST_PID")
}

# ready URL NAME waits until URL answers 200 with the upstream's body, or
# fails with NAME's log.
ready() {
  local url=$1 name=$2 header=${3:-} i body
  local hdr=()
  [ -n "$header" ] && hdr=(-H "$header")
  for i in $(seq 100); do
    body=$(curl -skf --max-time 2 "${hdr[@]}" "$url" 2>/dev/null || true)
    [[ $body == *'"service":"upstream"'* ]] && return 0
    sleep 0.1
  done
  echo "bench-proxy: $name did not answer the upstream's 200 at $url; its log:" >&2
  tail -n 20 "$TMP/$name.log" >&2 || true
  exit 1
}

# --- build ----------------------------------------------------------------------
log "building keyway and bench/ into $TMP/bin"
mkdir -p "$TMP/bin"
go build -o "$TMP/bin/keyway" ./cmd/keyway
go build -o "$TMP/bin/upstream" ./bench/upstream
go build -o "$TMP/bin/bareproxy" ./bench/bareproxy
go build -o "$TMP/bin/signup" ./bench/signup

# --- start everything -------------------------------------------------------------
UP_URL="http://127.0.0.1:$P_UP"
start upstream env GOMAXPROCS=1 "$TMP/bin/upstream" -addr "127.0.0.1:$P_UP"
PID_UPSTREAM=$LAST_PID
ready "$UP_URL/hello" upstream

declare -A URL PIDOF LABEL
URL[direct]="$UP_URL/hello"
LABEL[direct]="direct (plain HTTP)"
LABEL[bare]="bare ReverseProxy"
LABEL[bare-tuned]="bare + pool + 256 idle"
LABEL[nginx]="nginx ($NGINX_WORKERS worker$([ "$NGINX_WORKERS" = 1 ] || echo s))"
LABEL[keyway]="keyway (access log)"
LABEL[keyway-nolog]="keyway (no access log)"
LABEL[keyway-key-nolog]="keyway api_key, no log"
LABEL[keyway-session]="keyway session route"
LABEL[keyway-key]="keyway api_key route"
LABEL[keyway-key-std]="keyway api_key, standard"
LABEL[keyway-post]="keyway api_key, 1K POST"
LABEL[keyway-post-std]="keyway 1K POST, standard"
LABEL[nginx-auth]="nginx auth_request trivial"
LABEL[nginx-keyway]="nginx auth_request keyway"
LABEL[keyway-redis]="keyway api_key, Redis"
declare -A HDR SCRIPT

has_case() { [[ " $CASES " == *" $1 "* ]]; }

if has_case bare; then
  start bare "$TMP/bin/bareproxy" -listen "127.0.0.1:$P_BARE" -upstream "$UP_URL"
  URL[bare]="https://127.0.0.1:$P_BARE/hello"; PIDOF[bare]=$LAST_PID
fi
if has_case bare-tuned; then
  start bare-tuned "$TMP/bin/bareproxy" -tuned -listen "127.0.0.1:$P_TUNED" -upstream "$UP_URL"
  URL[bare-tuned]="https://127.0.0.1:$P_TUNED/hello"; PIDOF[bare-tuned]=$LAST_PID
fi

if has_case keyway-key; then
  # For the c=1 phase only: the least a Go program does to relay a request
  # over TLS (bareproxy -floor, no HTTP library), with Go's default
  # GOMAXPROCS and with one P: what the hop itself costs on this machine.
  start floor "$TMP/bin/bareproxy" -floor -listen "127.0.0.1:$P_FLOOR" -upstream "$UP_URL"
  URL[go-floor]="https://127.0.0.1:$P_FLOOR/hello"
  start floor1 env GOMAXPROCS=1 "$TMP/bin/bareproxy" -floor -listen "127.0.0.1:$P_FLOOR1" -upstream "$UP_URL"
  URL[go-floor-1p]="https://127.0.0.1:$P_FLOOR1/hello"
  ready "${URL[go-floor]}" floor
  ready "${URL[go-floor-1p]}" floor1
fi

# auth_server PORT URL prints an nginx server block on PORT whose /key/
# location asks URL (auth_request) before proxying: the nginx-auth and
# nginx-keyway cases differ in URL only.
auth_server() {
  cat <<EOF
    server {
        listen 127.0.0.1:$1 ssl;
        ssl_certificate     $TMP/nginx/cert.pem;
        ssl_certificate_key $TMP/nginx/key.pem;
        ssl_protocols TLSv1.3;
        location = /_auth {
            internal;
            proxy_pass $2;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host 127.0.0.1;
            proxy_ssl_session_reuse on;
            proxy_ssl_protocols TLSv1.3;
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_set_header X-Original-URI \$request_uri;
            proxy_set_header X-Original-Method \$request_method;
        }
        location /key/ {
            auth_request /_auth;
            auth_request_set \$kw_subject \$upstream_http_x_keyway_subject;
            auth_request_set \$kw_key \$upstream_http_x_keyway_key_id;
            auth_request_set \$kw_scopes \$upstream_http_x_keyway_scopes;
            proxy_set_header X-Keyway-Subject \$kw_subject;
            proxy_set_header X-Keyway-Key-Id \$kw_key;
            proxy_set_header X-Keyway-Scopes \$kw_scopes;
            proxy_set_header Authorization "";
            proxy_pass http://up/;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
EOF
}

if has_case nginx || has_case nginx-auth || has_case nginx-keyway; then
  mkdir -p "$TMP/nginx/logs"
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
    -subj /CN=bench-nginx -addext subjectAltName=IP:127.0.0.1,DNS:localhost \
    -keyout "$TMP/nginx/key.pem" -out "$TMP/nginx/cert.pem" 2>/dev/null
  cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes $NGINX_WORKERS;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/logs/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    upstream up {
        server 127.0.0.1:$P_UP;
        keepalive 256;
    }
    server {
        listen 127.0.0.1:$P_NGINX ssl;
        ssl_certificate     $TMP/nginx/cert.pem;
        ssl_certificate_key $TMP/nginx/key.pem;
        ssl_protocols TLSv1.3;
        location / {
            proxy_pass http://up;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
    # auth_request to a trivial always-allow service, and to keyway: the
    # same nginx, the same location (identity headers copied, the key
    # dropped), the same TLS and keep-alive to the auth service, the same
    # client request (with the key); only the auth service differs.
    upstream allow {
        server 127.0.0.1:$P_ALLOW;
        keepalive 64;
    }
    upstream keyway {
        server 127.0.0.1:$P_KW;
        keepalive 64;
    }
$(auth_server "$P_NGINX_AUTH" https://allow/allow)
$(auth_server "$P_NGINX_KW" https://keyway/.keyway/verify/nginx)
}
EOF
  start nginx "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf" -e "$TMP/nginx/logs/error.log" -g 'daemon off;'
  URL[nginx]="https://127.0.0.1:$P_NGINX/hello"; PIDOF[nginx]=$LAST_PID
  URL[nginx-auth]="https://127.0.0.1:$P_NGINX_AUTH/key/hello"; PIDOF[nginx-auth]=$LAST_PID
  URL[nginx-keyway]="https://127.0.0.1:$P_NGINX_KW/key/hello"; PIDOF[nginx-keyway]=$LAST_PID
fi
if has_case nginx-auth; then
  start allow "$TMP/bin/bareproxy" -allow -listen "127.0.0.1:$P_ALLOW"
  # The CPU of a request is nginx's and its auth service's together.
  PIDOF[nginx-auth]="${PIDOF[nginx-auth]} $LAST_PID"
fi

# keyway_conf DIR PORT ADMIN ACCESS writes a keyway config to DIR/keyway.yaml.
keyway_conf() {
  mkdir -p "$1"
  cat >"$1/keyway.yaml" <<EOF
data_dir: $1/data
listen: 127.0.0.1:$2
http_listen: "off"
admin_listen: 127.0.0.1:$3
log: {access: $4}
tls: {min_version: "1.3"}
passkeys: {sign_up: open}
forward_auth: {enabled: true}
upstreams:
  up: {url: "$UP_URL"}
  std: {url: "$UP_URL", standard_proxy: true}
routes:
  - {path: /hello, upstream: up, policy: public}
  - {path: /key, upstream: up, policy: api_key, scopes: [bench], strip_prefix: true, methods: [GET, POST]}
  - {path: /std-key, upstream: std, policy: api_key, scopes: [bench], strip_prefix: true, methods: [GET, POST]}
  - {path: /me, upstream: up, policy: session, strip_prefix: true}
EOF
  # The store, before serve starts: keys are made beside it at once.
  "$TMP/bin/keyway" init --config "$1/keyway.yaml" >/dev/null
}
if has_case keyway || has_case keyway-key || has_case keyway-key-std || has_case keyway-post || has_case keyway-post-std ||
  has_case keyway-session || has_case nginx-keyway; then
  keyway_conf "$TMP/keyway" "$P_KW" "$P_KW_ADMIN" true
  start keyway "$TMP/bin/keyway" serve --config "$TMP/keyway/keyway.yaml"
  URL[keyway]="https://127.0.0.1:$P_KW/hello"; PIDOF[keyway]=$LAST_PID
  # A key whose limit never triggers, made by the CLI beside the running server.
  BENCH_KEY=$("$TMP/bin/keyway" keys create --config "$TMP/keyway/keyway.yaml" --name bench --scope bench \
    --rate 1000000/s -o json | sed -n 's/.*"key": "\(.*\)".*/\1/p')
  [ -n "$BENCH_KEY" ] || { echo "bench-proxy: could not create the benchmark API key" >&2; exit 1; }
  URL[keyway-key]="https://127.0.0.1:$P_KW/key/hello"; PIDOF[keyway-key]=$LAST_PID
  HDR[keyway-key]="Authorization: Bearer $BENCH_KEY"
  URL[keyway-key-std]="https://127.0.0.1:$P_KW/std-key/hello"; PIDOF[keyway-key-std]=$LAST_PID
  HDR[keyway-key-std]="Authorization: Bearer $BENCH_KEY"
  URL[keyway-post]="${URL[keyway-key]}"; PIDOF[keyway-post]=$LAST_PID; HDR[keyway-post]="${HDR[keyway-key]}"
  URL[keyway-post-std]="${URL[keyway-key-std]}"; PIDOF[keyway-post-std]=$LAST_PID; HDR[keyway-post-std]="${HDR[keyway-key]}"
  SCRIPT[keyway-post]=post; SCRIPT[keyway-post-std]=post
  HDR[nginx-keyway]="Authorization: Bearer $BENCH_KEY"
  HDR[nginx-auth]="Authorization: Bearer $BENCH_KEY"
  if has_case keyway-session; then
    ready "https://127.0.0.1:$P_KW/hello" keyway   # serving, before anyone signs up
    SESSION=$("$TMP/bin/signup" -addr "127.0.0.1:$P_KW" -ca "$TMP/keyway/data/ca.pem") ||
      { echo "bench-proxy: could not sign up for the session case" >&2; exit 1; }
    URL[keyway-session]="https://127.0.0.1:$P_KW/me/hello"; PIDOF[keyway-session]=$LAST_PID
    HDR[keyway-session]="Cookie: $SESSION"
  fi
  [ -n "${PIDOF[nginx-keyway]:-}" ] && PIDOF[nginx-keyway]="${PIDOF[nginx-keyway]} ${PIDOF[keyway]}"
fi
if has_case keyway-nolog || has_case keyway-key-nolog; then
  keyway_conf "$TMP/keyway-nolog" "$P_KWNL" "$P_KWNL_ADMIN" false
  start keyway-nolog "$TMP/bin/keyway" serve --config "$TMP/keyway-nolog/keyway.yaml"
  URL[keyway-nolog]="https://127.0.0.1:$P_KWNL/hello"; PIDOF[keyway-nolog]=$LAST_PID
  NOLOG_KEY=$("$TMP/bin/keyway" keys create --config "$TMP/keyway-nolog/keyway.yaml" --name bench --scope bench \
    --rate 1000000/s -o json | sed -n 's/.*"key": "\(.*\)".*/\1/p')
  [ -n "$NOLOG_KEY" ] || { echo "bench-proxy: could not create the no-log benchmark API key" >&2; exit 1; }
  URL[keyway-key-nolog]="https://127.0.0.1:$P_KWNL/key/hello"; PIDOF[keyway-key-nolog]=$LAST_PID
  HDR[keyway-key-nolog]="Authorization: Bearer $NOLOG_KEY"
fi
if has_case keyway-redis; then
  keyway_conf "$TMP/keyway-redis" "$P_KWR" "$P_KWR_ADMIN" true
  start keyway-redis "$TMP/bin/keyway" serve --config "$TMP/keyway-redis/keyway.yaml" --redis "${BENCH_REDIS:-127.0.0.1:6379}"
  URL[keyway-redis]="https://127.0.0.1:$P_KWR/key/hello"; PIDOF[keyway-redis]=$LAST_PID
  REDIS_KEY=$("$TMP/bin/keyway" keys create --config "$TMP/keyway-redis/keyway.yaml" --name bench --scope bench \
    --rate 1000000/s -o json | sed -n 's/.*"key": "\(.*\)".*/\1/p')
  [ -n "$REDIS_KEY" ] || { echo "bench-proxy: could not create the Redis benchmark API key" >&2; exit 1; }
  HDR[keyway-redis]="Authorization: Bearer $REDIS_KEY"
fi
for c in $CASES; do
  logname=$c
  case "$c" in nginx-*) logname=nginx ;; keyway-key-nolog) logname=keyway-nolog ;; keyway-key|keyway-key-std|keyway-post*|keyway-session) logname=keyway ;; esac
  ready "${URL[$c]}" "$logname" "${HDR[$c]:-}"
done

# --- measuring ------------------------------------------------------------------------
CLK_TCK=$(getconf CLK_TCK)
# cpu_ticks PID... prints utime+stime of the PIDs and of their children
# (nginx workers).
cpu_ticks() {
  local top pid total=0 t
  for top in "$@"; do
    for pid in "$top" $(pgrep -P "$top" || true); do
      t=$(awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$pid/stat" 2>/dev/null || echo 0)
      total=$((total + t))
    done
  done
  echo "$total"
}

# busy_ticks prints the machine's busy CPU ticks so far (all CPUs).
busy_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
# child_ticks prints the CPU ticks used by this shell's finished children
# (wrk). It must run in this shell, not in a $(...) subshell, whose rusage
# starts at zero: call it as `child_ticks >FILE`.
child_ticks() {
  times >"$TMP/times"
  awk -v hz="$CLK_TCK" 'NR == 2 {
    t = 0
    for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); t += a[1] * 60 + a[2] }
    printf "%.0f\n", t * hz }' "$TMP/times"
}

# wait_idle waits up to $WAIT_IDLE seconds for a quiet second on the machine.
wait_idle() {
  local deadline=$((SECONDS + WAIT_IDLE)) b0 b1
  while [ "$SECONDS" -lt "$deadline" ]; do
    b0=$(busy_ticks); sleep 1; b1=$(busy_ticks)
    [ $(((b1 - b0) * 100)) -lt $((CLK_TCK * 10)) ] && return 0
  done
  log "  the machine stayed busy for ${WAIT_IDLE}s; measuring anyway"
}

# wrk prints p50..p99; its Lua done() hook gives p99.9 (microseconds).
cat >"$TMP/p999.lua" <<'EOF'
done = function(summary, latency, requests)
  io.write(string.format("P99.9: %d\n", latency:percentile(99.9)))
end
EOF
# The POST cases: the same hook, and a 1 KiB JSON body on every request.
{
  cat "$TMP/p999.lua"
  printf 'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
  printf 'wrk.body = \x27{"data":"%s"}\x27\n' "$(printf 'x%.0s' $(seq 1 1014))"
} >"$TMP/post.lua"

RESULTS="$TMP/results.tsv"
: >"$RESULTS"
RUN=0
# measure CASE ROUND runs wrk once and appends a line to $RESULTS:
# case round req/s p50_ms p99_ms cpu_us_per_req errors other_cpu_percent p99.9_ms
measure() {
  local c=$1 round=$2 out c0=0 c1=0 u0 u1 b0 b1 w0 w1 t0 t1 other
  RUN=$((RUN + 1))
  out="$TMP/wrk-$RUN-$c.txt"
  [ "$WAIT_IDLE" -gt 0 ] && wait_idle
  # shellcheck disable=SC2086 # PIDOF holds one or more PIDs
  [ -n "${PIDOF[$c]:-}" ] && c0=$(cpu_ticks ${PIDOF[$c]})
  u0=$(cpu_ticks "$PID_UPSTREAM"); child_ticks >"$TMP/w0"; b0=$(busy_ticks); t0=$(date +%s%N)
  # In the background and waited for, so that a signal interrupts the wait
  # and the cleanup stops wrk too.
  local hdr=()
  [ -n "${HDR[$c]:-}" ] && hdr=(-H "${HDR[$c]}")
  wrk -t1 -c"$CONNECTIONS" -d"$DURATION" --latency -s "$TMP/${SCRIPT[$c]:-p999}.lua" "${hdr[@]}" "${URL[$c]}" >"$out" 2>&1 &
  WRK_PID=$!
  wait "$WRK_PID"
  WRK_PID=
  b1=$(busy_ticks); t1=$(date +%s%N); child_ticks >"$TMP/w1"; u1=$(cpu_ticks "$PID_UPSTREAM")
  w0=$(<"$TMP/w0"); w1=$(<"$TMP/w1")
  # shellcheck disable=SC2086
  [ -n "${PIDOF[$c]:-}" ] && c1=$(cpu_ticks ${PIDOF[$c]})
  # Other: CPU that neither wrk, the upstream nor the proxy used during the
  # run, in % of one CPU: the noise other work on the machine adds.
  other=$(awk -v b=$((b1 - b0)) -v o=$((c1 - c0 + u1 - u0 + w1 - w0)) -v ns=$((t1 - t0)) -v hz="$CLK_TCK" \
    'BEGIN { v = (b - o) / hz / (ns / 1e9) * 100; printf "%.0f", (v < 0 ? 0 : v) }')
  awk -v c="$c" -v round="$round" -v ticks=$((c1 - c0)) -v hz="$CLK_TCK" -v cpu="${PIDOF[$c]:+1}" -v other="$other" '
    function ms(v) {
      if (v ~ /us$/) return v / 1000
      if (v ~ /ms$/) return v + 0
      if (v ~ /s$/) return v * 1000
      if (v ~ /m$/) return v * 60000
      return v + 0
    }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    $1 == "P99.9:" { p999 = $2 / 1000 }
    / requests in / { n = $1 }
    /^Requests\/sec:/ { rps = $2 }
    /Socket errors:/ { gsub(/[^0-9 ]/, ""); err += $1 + $2 + $3 + $4 }
    /Non-2xx or 3xx responses:/ { err += $NF }
    END {
      if (rps == "") { print "bench-proxy: could not parse wrk output" > "/dev/stderr"; exit 1 }
      us = (cpu && n > 0) ? sprintf("%.0f", ticks / hz * 1e6 / n) : "-"
      printf "%s\t%s\t%.0f\t%.3f\t%.3f\t%s\t%d\t%s\t%.3f\n", c, round, rps, p50, p99, us, err, other, p999
    }' "$out" >>"$RESULTS"
  tail -n 1 "$RESULTS" | awk -F'\t' '{ printf "[bench-proxy]   %-16s round %s: %7s req/s  p50 %6.2f ms  p99 %6.2f ms  cpu %s us/req  other %s%%%s\n", $1, $2, $3, $4, $5, $6, $8, ($7 > 0 ? "  ERRORS " $7 : "") }' >&2
  sleep 1
}

runs_direct=$((ROUNDS + 1))
runs_proxy=$(($(wc -w <<<"$CASES") * ROUNDS))
log "cases: direct $CASES; $ROUNDS rounds of wrk -t1 -c$CONNECTIONS -d$DURATION, $((runs_direct + runs_proxy)) runs"
log "warm-up ($WARMUP each)"
for c in direct $CASES; do
  hdr=()
  [ -n "${HDR[$c]:-}" ] && hdr=(-H "${HDR[$c]}")
  wrk -t1 -c"$CONNECTIONS" -d"$WARMUP" -s "$TMP/${SCRIPT[$c]:-p999}.lua" "${hdr[@]}" "${URL[$c]}" >/dev/null 2>&1
done

read -r -a order <<<"$CASES"
for round in $(seq "$ROUNDS"); do
  log "round $round"
  measure direct "$round"
  if [ $((round % 2)) -eq 1 ]; then
    for c in "${order[@]}"; do measure "$c" "$round"; done
  else
    for ((i = ${#order[@]} - 1; i >= 0; i--)); do measure "${order[$i]}" "$round"; done
  fi
done
log "closing direct run"
measure direct end

# Paced: keyway-key and nginx-auth under the same offered load, for the
# p99 target. Saturated (above), each carries what it can, so the faster
# one carries more and the tails are not compared at the same traffic.
# Here every connection waits a random 0..2m ms after each answer (m =
# 64000/RATE, so 64 connections offer about RATE req/s, spread rather
# than in bursts), RATE being half of nginx-auth's saturated median: a
# load both carry with room to spare. Interleaved, max(rounds, 3) times.
PACED_RATE=
if has_case keyway-key && has_case nginx-auth; then
  PACED_RATE=$(awk -F'\t' '$1 == "nginx-auth" { print $3 }' "$RESULTS" | sort -g |
    awk '{ a[NR] = $1 } END { r = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.0f", r / 2 }')
  pace_ms=$(awk -v r="$PACED_RATE" -v c="$CONNECTIONS" 'BEGIN { m = c * 1000 / r; printf "%.0f", (m < 1 ? 1 : m) }')
  {
    cat "$TMP/p999.lua"
    printf 'math.randomseed(os.time())\nfunction delay() return math.random(0, %d) end\n' $((2 * pace_ms))
  } >"$TMP/paced.lua"
  for c in keyway-key nginx-auth; do
    URL[$c@paced]=${URL[$c]}; HDR[$c@paced]=${HDR[$c]:-}; PIDOF[$c@paced]=${PIDOF[$c]:-}; SCRIPT[$c@paced]=paced
  done
  paced_rounds=$((ROUNDS < 3 ? 3 : ROUNDS))
  log "paced load: about $PACED_RATE req/s offered (each connection waits 0..$((2 * pace_ms)) ms), $paced_rounds rounds"
  for round in $(seq "$paced_rounds"); do
    if [ $((round % 2)) -eq 1 ]; then
      measure nginx-auth@paced "$round"; measure keyway-key@paced "$round"
    else
      measure keyway-key@paced "$round"; measure nginx-auth@paced "$round"
    fi
  done
fi

# Unloaded: one connection, the upstream direct and keyway's api_key route
# in turn, three times each: the latency keyway adds to a single request.
# For scale, the same for nginx as a plain proxy, nginx + auth_request, a
# bare Go ReverseProxy, and a Go TLS server answering by itself
# (nginx-auth's auth service): the floor of net/http over TLS here; and
# bareproxy -floor, with two Ps and with one: the floor of any Go hop here.
C1_RESULTS="$TMP/c1.tsv"
: >"$C1_RESULTS"
if has_case nginx-auth; then
  URL[go-tls]="https://127.0.0.1:$P_ALLOW/allow"
fi
if has_case keyway-key; then
  log "unloaded latency (wrk -c1)"
  for i in 1 2 3; do
    for c in direct keyway-key keyway-key-std nginx nginx-auth bare go-tls go-floor go-floor-1p; do
      if [[ $c == go-* ]]; then [ -n "${URL[$c]:-}" ] || continue
      elif [ "$c" != direct ]; then has_case "$c" || continue; fi
      hdr=()
      [ -n "${HDR[$c]:-}" ] && hdr=(-H "${HDR[$c]}")
      wrk -t1 -c1 -d3s --latency "${hdr[@]}" "${URL[$c]}" >"$TMP/c1-$i-$c.txt" 2>&1
      awk -v c="$c" '
        function us(v) {
          if (v ~ /us$/) return v + 0
          if (v ~ /ms$/) return v * 1000
          if (v ~ /s$/) return v * 1e6
          return v + 0
        }
        $1 == "50%" { print c "\t" us($2) }' "$TMP/c1-$i-$c.txt" >>"$C1_RESULTS"
    done
  done
fi

# --- report -------------------------------------------------------------------------------
# median COLUMN CASE prints the median of a column of $RESULTS over CASE's runs.
median() {
  awk -F'\t' -v c="$2" -v k="$1" '$1 == c && $k != "-" { print $k }' "$RESULTS" | sort -g |
    awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
declare -A RPS
echo
echo "== keyway proxy benchmark: $(nproc) CPUs, wrk -t1 -c$CONNECTIONS -d$DURATION, medians of $ROUNDS rounds (direct: $runs_direct runs)"
echo "== $(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(uname -sr), $(go version | awk '{print $3}'), $("$NGINX" -v 2>&1 | sed 's/.*version: //'), nginx worker_processes $NGINX_WORKERS"
echo
printf '%-24s %9s %9s %9s %9s %12s %9s %7s\n' "case" "req/s" "p50 ms" "p99 ms" "p99.9 ms" "CPU us/req" "x direct" "errors"
printf '%-24s %9s %9s %9s %9s %12s %9s %7s\n' "------------------------" "---------" "---------" "---------" "---------" "------------" "---------" "-------"
direct_rps=$(median 3 direct)
for c in direct $CASES; do
  RPS[$c]=$(median 3 "$c")
  errs=$(awk -F'\t' -v c="$c" '$1 == c { e += $7 } END { print e + 0 }' "$RESULTS")
  printf '%-24s %9.0f %9.2f %9.2f %9.2f %12s %9.2f %7s\n' "${LABEL[$c]}" "${RPS[$c]}" "$(median 4 "$c")" "$(median 5 "$c")" "$(median 9 "$c")" \
    "$(median 6 "$c")" "$(awk -v a="${RPS[$c]}" -v b="$direct_rps" 'BEGIN { print a / b }')" "$errs"
done
echo
# ratio A B prints A's median req/s over B's, then the same ratio within each
# round (the two cases ran minutes apart at most, so it drifts less).
ratio() {
  awk -F'\t' -v a="$1" -v b="$2" -v ra="${RPS[$1]}" -v rb="${RPS[$2]}" '
    $1 == a { x[$2] = $3 } $1 == b { y[$2] = $3 }
    END {
      printf "%.2f   (per round:", ra / rb
      for (r = 1; r in x; r++) if (r in y) printf " %.2f", x[r] / y[r]
      print ")"
    }' "$RESULTS"
}
echo "ratios of req/s (medians):"
for kw in keyway keyway-key keyway-nolog keyway-key-nolog keyway-session keyway-redis; do
  has_case "$kw" || continue
  for base in bare bare-tuned nginx keyway; do
    [ "$kw" = "$base" ] && continue
    [ "$base" = keyway ] && [ "$kw" != keyway-key ] && [ "$kw" != keyway-session ] && continue
    [ "$kw" = keyway-key-nolog ] && [ "$base" = bare-tuned ] && continue
    [ "$kw" = keyway-redis ] && [ "$base" != nginx ] && continue
    has_case "$base" || continue
    printf '  %-28s %s\n' "$kw / $base" "$(ratio "$kw" "$base")"
  done
done
if has_case nginx-keyway && has_case nginx-auth; then
  printf '  %-28s %s   target >= 0.90\n' "nginx-keyway / nginx-auth" "$(ratio nginx-keyway nginx-auth)"
fi
if has_case keyway-redis && has_case keyway-key; then
  printf '  %-28s %s   target >= 0.80\n' "keyway-redis / keyway-key" "$(ratio keyway-redis keyway-key)"
fi
if has_case keyway-key-std && has_case keyway-key; then
  printf '  %-28s %s   (the direct path over the standard one)\n' "keyway-key / keyway-key-std" "$(ratio keyway-key keyway-key-std)"
fi
if has_case keyway-post-std && has_case keyway-post; then
  printf '  %-28s %s   (the same, for a 1 KiB POST)\n' "keyway-post / keyway-post-std" "$(ratio keyway-post keyway-post-std)"
fi
echo
echo "runs (other: CPU used by processes outside the benchmark, % of one CPU; above ~10% the run was disturbed):"
printf '  %-16s %-5s %8s %8s %8s %10s %6s %6s\n' case round req/s "p50 ms" "p99 ms" "CPU us/req" errors other
awk -F'\t' '{ printf "  %-16s %-5s %8s %8.2f %8.2f %10s %6s %5s%%\n", $1, $2, $3, $4, $5, $6, $7, $8 }' "$RESULTS"
if awk -F'\t' '$8 > 10 { bad = 1 } END { exit !bad }' "$RESULTS"; then
  echo "WARNING: other processes used over 10% of a CPU during some runs: figures are disturbed"
fi
if awk -F'\t' '{ e += $7 } END { exit !(e > 0) }' "$RESULTS"; then
  echo "WARNING: some runs had socket errors or non-2xx answers (see $TMP/wrk-*.txt with --keep)"
fi

# --- targets (issue 11) -------------------------------------------------------------
# c1_median CASE prints the median c=1 p50 of CASE, in microseconds.
c1_median() {
  awk -F'\t' -v c="$1" '$1 == c { print $2 }' "$C1_RESULTS" | sort -g |
    awk '{ a[NR] = $1 } END { if (NR == 0) print "-"; else if (NR % 2) print a[(NR + 1) / 2]; else print (a[NR / 2] + a[NR / 2 + 1]) / 2 }'
}
missed=0
# target NAME VALUE OP LIMIT prints one line and counts a miss.
target() {
  local name=$1 value=$2 op=$3 limit=$4 verdict
  if [ "$value" = "-" ] || [ -z "$value" ]; then
    printf '  %-44s %10s   (not measured: its cases were not run)\n' "$name" "-"
    return
  fi
  if awk -v v="$value" -v l="$limit" -v op="$op" 'BEGIN { exit !((op == ">=" && v >= l) || (op == "<=" && v <= l)) }'; then
    verdict=met
  else
    verdict=MISSED; missed=$((missed + 1))
  fi
  printf '  %-44s %10s   target %s %s   %s\n' "$name" "$value" "$op" "$limit" "$verdict"
}
echo
echo "targets (issue 11):"
rratio() { has_case "$1" && has_case "$2" && awk -v a="${RPS[$1]}" -v b="${RPS[$2]}" 'BEGIN { printf "%.2f", a / b }' || echo -; }
target "keyway-key / nginx-auth (req/s)" "$(rratio keyway-key nginx-auth)" ">=" 1.2
target "keyway-key / nginx (req/s)" "$(rratio keyway-key nginx)" ">=" 0.6
if [ -n "$PACED_RATE" ]; then
  printf '  paced, about %s req/s offered (medians): keyway-key %.0f req/s, p50 %.2f, p99 %.2f, p99.9 %.2f ms; nginx-auth %.0f req/s, p50 %.2f, p99 %.2f, p99.9 %.2f ms\n' \
    "$PACED_RATE" "$(median 3 keyway-key@paced)" "$(median 4 keyway-key@paced)" "$(median 5 keyway-key@paced)" "$(median 9 keyway-key@paced)" \
    "$(median 3 nginx-auth@paced)" "$(median 4 nginx-auth@paced)" "$(median 5 nginx-auth@paced)" "$(median 9 nginx-auth@paced)"
  printf '  saturated (not judged: each carries what it can): keyway-key p99 %.2f ms at %.0f req/s, nginx-auth p99 %.2f ms at %.0f req/s\n' \
    "$(median 5 keyway-key)" "${RPS[keyway-key]}" "$(median 5 nginx-auth)" "${RPS[nginx-auth]}"
  target "keyway-key p99 - nginx-auth p99, paced (ms)" "$(awk -v a="$(median 5 keyway-key@paced)" -v b="$(median 5 nginx-auth@paced)" 'BEGIN { printf "%.2f", a - b }')" "<=" 0
else
  target "keyway-key p99 - nginx-auth p99, paced (ms)" - "<=" 0
fi
if [ -s "$C1_RESULTS" ]; then
  d=$(c1_median direct); k=$(c1_median keyway-key)
  echo "  unloaded p50 (wrk -c1, medians of 3): direct ${d} us, keyway-key ${k} us, keyway-key-std $(c1_median keyway-key-std) us"
  for c in nginx nginx-auth bare go-tls go-floor go-floor-1p; do
    [ "$(c1_median "$c")" = - ] && continue
    printf '    for scale, added over direct at c=1: %-18s %s us\n' "$c" "$(awk -v a="$(c1_median "$c")" -v b="$d" 'BEGIN { printf "%.0f", a - b }')"
  done
  target "c=1 p50 added by keyway-key (us)" "$(awk -v a="$k" -v b="$d" 'BEGIN { printf "%.0f", a - b }')" "<=" 100
else
  target "c=1 p50 added by keyway-key (us)" - "<=" 100
fi
if [ "$missed" -gt 0 ]; then
  echo "$missed target(s) missed"
  [ "$TARGETS" -eq 1 ] && exit 3
fi
