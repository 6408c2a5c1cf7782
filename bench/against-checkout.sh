#!/usr/bin/env bash
# The fast paths (bare /api and /healthcheck) of this checkout against another checkout of
# users-api (e.g. main before a change), side by side in alternating wrk rounds, both serving
# copies of one SQLite file. Prints one JSON line per path: req/s of each and the ratio.
#
#   git worktree add /tmp/base <commit> && (cd /tmp/base && npm ci && npm run build)
#   npm run build && bench/against-checkout.sh /tmp/base [USERS=10000] [ROUNDS=6] [SECONDS=5]
set -euo pipefail
base=${1:?usage: bench/against-checkout.sh BASE_CHECKOUT [USERS] [ROUNDS] [SECONDS]}
users=${2:-10000}
rounds=${3:-6}
seconds=${4:-5}
here=$(cd "$(dirname "$0")/.." && pwd)
command -v wrk > /dev/null || { echo 'needs wrk (apt-get install -y wrk)' >&2; exit 2; }
[ -f "$base/dist/main.js" ] || { echo "$base/dist/main.js missing: build the base checkout" >&2; exit 2; }
dir=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2> /dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

npx --prefix "$here" tsx "$here/scripts/generate-users.ts" "$users" > "$dir/users.csv"
DATABASE_URL="sqlite:$dir/base.db" node "$base/dist/main.js" import --create "$dir/users.csv" > /dev/null
cp "$dir/base.db" "$dir/this.db"

free_port() { node -e "const s=require('net').createServer().listen(0,'127.0.0.1',()=>{console.log(s.address().port);s.close()})"; }
serve() { # checkout, database file: starts the service on a free port, left in $port
  port=$(free_port)
  (cd "$1" && DATABASE_URL="sqlite:$2" PORT=$port HOST=127.0.0.1 LOG_LEVEL=warn \
    IMPORT_ON_START=never exec node --enable-source-maps --min-semi-space-size=16 dist/main.js serve) \
    > "$dir/$(basename "$2").log" 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/livez" > /dev/null && break; sleep 0.1; done
  curl -sf -o /dev/null "http://127.0.0.1:$port/api"
}
serve "$base" "$dir/base.db"
base_port=$port
serve "$here" "$dir/this.db"
this_port=$port

rate() { wrk -t2 -c32 -d"${seconds}s" "$1" | awk '/Requests\/sec/ { print $2 }'; }
for path in /api /healthcheck; do
  this_total=0 base_total=0 ratios=()
  rate "http://127.0.0.1:$this_port$path" > /dev/null # warm-up
  rate "http://127.0.0.1:$base_port$path" > /dev/null
  for round in $(seq "$rounds"); do
    if ((round % 2)); then
      t=$(rate "http://127.0.0.1:$this_port$path"); b=$(rate "http://127.0.0.1:$base_port$path")
    else
      b=$(rate "http://127.0.0.1:$base_port$path"); t=$(rate "http://127.0.0.1:$this_port$path")
    fi
    this_total=$(echo "$this_total + $t" | bc -l)
    base_total=$(echo "$base_total + $b" | bc -l)
    ratios+=("$(echo "scale=3; $t / $b" | bc -l)")
  done
  printf '{"path":"%s","users":%s,"rounds":%s,"secondsPerRound":%s,"thisRequestsPerSecond":%.0f,"baseRequestsPerSecond":%.0f,"ratio":%.3f,"roundRatios":[%s],"load":"%s"}\n' \
    "$path" "$users" "$rounds" "$seconds" "$(echo "$this_total / $rounds" | bc -l)" \
    "$(echo "$base_total / $rounds" | bc -l)" "$(echo "$this_total / $base_total" | bc -l)" \
    "$(IFS=,; echo "${ratios[*]}")" "$(cut -d' ' -f1-3 /proc/loadavg)"
done
