#!/usr/bin/env bash
# bench-cluster.sh — what do three keyway nodes give next to one, on this
# machine, when they share PostgreSQL and Redis? One run measures, with wrk,
# keyway's api_key route (key check, per-key limit shared through Redis that
# never triggers: a hot key, proxy to the same plain-HTTP upstream):
#
#   one     one node, wrk -t3 -c$C
#   three   three nodes, one wrk -t1 -c$C/3 per node at once, req/s summed
#           (the same three load threads either way)
#
# The cases are interleaved in --rounds rounds; the table shows medians, the
# ratio three/one, and the Redis calls per request on the hot key (from the
# nodes' keyway_redis_limiter_calls_total). All processes share the
# machine's cores, wrk included: on 2 cores three nodes cannot be faster than
# one; the figure says what a node costs in a cluster, not how one scales.
#
# PostgreSQL: $BENCH_POSTGRES (default postgres://postgres@127.0.0.1:5432/postgres
# ?sslmode=disable); the script makes a fresh database there and drops it on
# exit. Redis: $BENCH_REDIS (default 127.0.0.1:6379), under a key prefix of
# its own. Everything binds to 127.0.0.1; every process started is stopped.
#
# Usage: scripts/bench-cluster.sh [-d 8s] [-c 63] [-r 3] [--port-base 18500]
set -euo pipefail

DURATION=8s
CONNECTIONS=63
ROUNDS=3
PORT_BASE=18500
while [ $# -gt 0 ]; do
  case "$1" in
    -d|--duration) DURATION=$2; shift 2 ;;
    -c|--connections) CONNECTIONS=$2; shift 2 ;;
    -r|--rounds) ROUNDS=$2; shift 2 ;;
    --port-base) PORT_BASE=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "bench-cluster: unknown argument $1" >&2; exit 2 ;;
  esac
done
[[ $DURATION =~ ^[1-9][0-9]*s$ ]] || { echo "bench-cluster: -d wants seconds, such as 8s" >&2; exit 2; }
for t in wrk curl psql go; do
  command -v "$t" >/dev/null || { echo "bench-cluster: $t is required (apt-get install -y wrk curl postgresql-client)" >&2; exit 1; }
done
PG_BASE=${BENCH_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}
REDIS=${BENCH_REDIS:-127.0.0.1:6379}
log() { printf '[bench-cluster] %s\n' "$*" >&2; }

TMP=$(mktemp -d /tmp/bench-cluster.XXXXXX)
DB="keyway_bench_$$"
PIDS=()
cleanup() {
  local rc=$? pid
  trap - EXIT INT TERM
  for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  sleep 0.5
  for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  psql -q "$PG_BASE" -c "DROP DATABASE IF EXISTS $DB" >/dev/null 2>&1 || true
  rm -rf "$TMP"
  exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

log "building keyway and bench/upstream"
mkdir -p "$TMP/bin"
go build -o "$TMP/bin/keyway" ./cmd/keyway
go build -o "$TMP/bin/upstream" ./bench/upstream
psql -q "$PG_BASE" -c "CREATE DATABASE $DB" >/dev/null
PG_NOQ=${PG_BASE%%\?*}
DSN="${PG_NOQ%/*}/$DB${PG_BASE#"$PG_NOQ"}"
export KEYWAY_STORE_DSN=$DSN KEYWAY_REDIS_ADDR=$REDIS
KEYWAY_PEPPER=$(head -c 32 /dev/urandom | base64)
export KEYWAY_PEPPER

"$TMP/bin/upstream" -addr "127.0.0.1:$PORT_BASE" >"$TMP/upstream.log" 2>&1 &
PIDS+=($!)
for i in 1 2 3; do
  cat >"$TMP/node$i.yaml" <<EOF
data_dir: $TMP/data
listen: 127.0.0.1:$((PORT_BASE + i))
http_listen: "off"
admin_listen: 127.0.0.1:$((PORT_BASE + 10 + i))
tls: {min_version: "1.3"}
redis: {prefix: "keyway-bench-$$:"}
upstreams: {up: {url: "http://127.0.0.1:$PORT_BASE"}}
routes:
  - {path: /key, upstream: up, policy: api_key, scopes: [bench], strip_prefix: true}
EOF
  "$TMP/bin/keyway" serve --config "$TMP/node$i.yaml" >"$TMP/node$i.log" 2>&1 &
  PIDS+=($!)
  # The first node makes the local CA and migrates the schema; wait for it.
  for _ in $(seq 100); do curl -sk -o /dev/null "https://127.0.0.1:$((PORT_BASE + i))/.keyway/readyz" && break; sleep 0.1; done
done
KEY=$("$TMP/bin/keyway" keys create --config "$TMP/node1.yaml" --name bench --scope bench --rate 1000000/s -o json |
  sed -n 's/.*"key": "\(.*\)".*/\1/p')
[ -n "$KEY" ] || { echo "bench-cluster: could not create the benchmark key" >&2; exit 1; }
for i in 1 2 3; do
  for _ in $(seq 100); do
    [ "$(curl -sk -o /dev/null -w '%{http_code}' -H "Authorization: Bearer $KEY" "https://127.0.0.1:$((PORT_BASE + i))/key/hello")" = 200 ] && break
    sleep 0.1
  done
done

calls() { # the Redis limiter calls of every node, summed
  local i n=0 v
  for i in 1 2 3; do
    v=$(curl -s "http://127.0.0.1:$((PORT_BASE + 10 + i))/metrics" | awk '/^keyway_redis_limiter_calls_total/ { s += $2 } END { printf "%d", s }')
    n=$((n + v))
  done
  echo "$n"
}
wrk_rps() { awk '/^Requests\/sec:/ { print $2 }' "$1"; }
wrk_reqs() { awk '/requests in/ { print $1 }' "$1"; }

RESULTS=$TMP/results
: >"$RESULTS"
run() { # run CASE ROUND
  local c=$1 r=$2 before after reqs=0 rps=0 i f
  before=$(calls)
  if [ "$c" = one ]; then
    wrk -t3 -c"$CONNECTIONS" -d"$DURATION" -H "Authorization: Bearer $KEY" "https://127.0.0.1:$((PORT_BASE + 1))/key/hello" >"$TMP/wrk-$c-$r-1" 2>&1
  else
    local wrks=()
    for i in 1 2 3; do
      wrk -t1 -c$((CONNECTIONS / 3)) -d"$DURATION" -H "Authorization: Bearer $KEY" "https://127.0.0.1:$((PORT_BASE + i))/key/hello" >"$TMP/wrk-$c-$r-$i" 2>&1 &
      wrks+=($!)
    done
    wait "${wrks[@]}"
  fi
  after=$(calls)
  for f in "$TMP"/wrk-"$c"-"$r"-*; do
    rps=$(awk -v a="$rps" -v b="$(wrk_rps "$f")" 'BEGIN { printf "%.0f", a + b }')
    reqs=$((reqs + $(wrk_reqs "$f")))
  done
  echo "$c $rps $reqs $((after - before))" >>"$RESULTS"
  log "round $r $c: $rps req/s, $((after - before)) Redis calls for $reqs requests"
}
log "warming up"
wrk -t1 -c"$CONNECTIONS" -d2s -H "Authorization: Bearer $KEY" "https://127.0.0.1:$((PORT_BASE + 1))/key/hello" >/dev/null 2>&1
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then run one "$r"; run three "$r"; else run three "$r"; run one "$r"; fi
done

median() { awk -v c="$1" '$1 == c { print $2 }' "$RESULTS" | sort -n | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
per_req() { awk -v c="$1" '$1 == c { q += $3; k += $4 } END { printf "%.5f", (q ? k / q : 0) }' "$RESULTS"; }
ONE=$(median one)
THREE=$(median three)
echo "== keyway cluster benchmark: $(nproc) CPUs, api_key route, hot key limited through Redis, medians of $ROUNDS rounds, wrk -c$CONNECTIONS -d$DURATION"
printf '  %-34s %10s req/s   %s Redis calls/request\n' "one node" "$ONE" "$(per_req one)"
printf '  %-34s %10s req/s   %s Redis calls/request\n' "three nodes (3 wrk, summed)" "$THREE" "$(per_req three)"
printf '  %-34s %10s\n' "three / one" "$(awk -v a="$THREE" -v b="$ONE" 'BEGIN { printf "%.2f", a / b }')"
