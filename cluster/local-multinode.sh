#!/usr/bin/env bash
# Several Ray nodes on one machine: a head and N worker nodes, each a
# `ray start --block` in its own process group, with its own ports, temp dir
# and custom resources. For trying multi-node placement and node loss
# without a cluster (tests/rl/test_cluster.py uses it).
#
#   cluster/local-multinode.sh start STATE_DIR [HEAD_RESOURCES [NODE_RESOURCES ...]]
#   cluster/local-multinode.sh add   STATE_DIR NODE_RESOURCES     # one more worker node
#   cluster/local-multinode.sh kill  STATE_DIR NODE_INDEX         # lose a node (SIGKILL, as a crash)
#   cluster/local-multinode.sh stop  STATE_DIR                    # stop every node this script started
#
# Resources are JSON, e.g. '{"learner_node": 2}'; CPUs per node come from
# NUM_CPUS (default 2; logical, so they may exceed the machine's cores).
# BASE_PORT (default 26379) is the head's GCS port; each node takes ports
# from BASE_PORT + 10 * (index + 1), workers from BASE_PORT + 1000 + 200 * index.
# The head serves the dashboard (Ray Jobs) on BASE_PORT + 1. `start` prints
# the addresses and waits until every node has joined. `stop` ends only the
# nodes in STATE_DIR (never `ray stop`, which ends every Ray process of the
# user on the machine); STOP_GRACE_S (default 30) is how long a node gets
# to exit after SIGTERM before SIGKILL.
set -euo pipefail

BASE_PORT=${BASE_PORT:-26379}
NUM_CPUS=${NUM_CPUS:-2}
RAY=${RAY:-ray}
# Ray 2.60 turns token authentication on for a new head; every node and
# driver must then run in token mode with the same token (~/.ray/auth_token,
# or RAY_AUTH_TOKEN_PATH / RAY_AUTH_TOKEN). One machine shares one file.
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}
PYTHON=${PYTHON:-python}
STOP_GRACE_S=${STOP_GRACE_S:-30}  # seconds a node's processes get to exit after SIGTERM, then SIGKILL

die() { echo "local-multinode: $*" >&2; exit 2; }

start_node() {  # start_node STATE INDEX RESOURCES
  local state=$1 index=$2 resources=$3 base port_args
  base=$((BASE_PORT + 10 * (index + 1)))
  port_args=(--node-manager-port "$base" --object-manager-port "$((base + 1))"
             --metrics-export-port "$((base + 2))" --dashboard-agent-grpc-port "$((base + 3))"
             --dashboard-agent-listen-port "$((base + 4))" --runtime-env-agent-port "$((base + 5))"
             --min-worker-port "$((BASE_PORT + 1000 + 200 * index))"
             --max-worker-port "$((BASE_PORT + 1199 + 200 * index))")
  mkdir -p "$state/n$index"
  echo "$resources" >"$state/n$index/resources"
  if [ "$index" -eq 0 ]; then
    setsid "$RAY" start --head --block --node-ip-address 127.0.0.1 --port "$BASE_PORT" \
      --dashboard-host 127.0.0.1 --dashboard-port "$((BASE_PORT + 1))" --include-dashboard true \
      --ray-client-server-port "$((BASE_PORT + 2))" --num-cpus "$NUM_CPUS" --resources "$resources" \
      --temp-dir "$state/n$index/tmp" "${port_args[@]}" >"$state/n$index/log" 2>&1 &
  else
    setsid "$RAY" start --block --address "127.0.0.1:$BASE_PORT" --node-ip-address 127.0.0.1 \
      --num-cpus "$NUM_CPUS" --resources "$resources" \
      --temp-dir "$state/n$index/tmp" "${port_args[@]}" >"$state/n$index/log" 2>&1 &
  fi
  echo $! >"$state/n$index/pid"
}

alive_nodes() {
  "$PYTHON" - "$BASE_PORT" <<'EOF' 2>/dev/null || echo 0
import sys, ray
ray.init(address=f"127.0.0.1:{sys.argv[1]}", log_to_driver=False, logging_level="ERROR")
print(sum(1 for n in ray.nodes() if n["Alive"]))
EOF
}

wait_nodes() {  # wait_nodes STATE COUNT
  # A loaded machine can make a raylet miss Ray's fixed 30 s registration
  # window (`ray start` then exits); such a node is started again, 5 times at most.
  local state=$1 want=$2 tries=0 have pidfile dir idx
  while :; do
    have=$(alive_nodes | tail -1)
    [ "$have" = "$want" ] && return 0
    for pidfile in "$state"/n*/pid; do
      kill -0 "$(cat "$pidfile")" 2>/dev/null && continue
      dir=$(dirname "$pidfile"); idx=${dir##*/n}
      [ ! -f "$dir/restarts" ] || [ "$(wc -l <"$dir/restarts")" -lt 5 ] || die "node $idx failed to start 5 times: $dir/log"
      echo "restart" >>"$dir/restarts"
      echo "local-multinode: node $idx exited while starting; starting it again" >&2
      if [ "$idx" -eq 0 ]; then sleep 5; fi
      start_node "$state" "$idx" "$(cat "$dir/resources")"
    done
    tries=$((tries + 1))
    if [ "$tries" -gt 300 ]; then
      tail -5 "$state"/n*/log >&2 || true
      die "only $have of $want nodes joined after 300 tries"
    fi
    sleep 2
  done
}

node_count() { find "$1" -maxdepth 2 -name pid | wc -l; }

kill_node() {  # kill_node STATE INDEX SIGNAL
  local pidfile=$1/n$2/pid pid
  [ -f "$pidfile" ] || return 0
  pid=$(cat "$pidfile")
  kill "-$3" -- "-$pid" 2>/dev/null || true
  for _ in $(seq 1 "$STOP_GRACE_S"); do
    kill -0 -- "-$pid" 2>/dev/null || break
    sleep 1
  done
  kill -KILL -- "-$pid" 2>/dev/null || true
  rm -f "$pidfile"
}

cmd=${1:-}; state=${2:-}
if [ -z "$cmd" ] || [ -z "$state" ]; then die "usage: $0 start|add|kill|stop STATE_DIR [...]"; fi
case "$cmd" in
  start)
    [ -e "$state/n0/pid" ] && die "$state already holds a cluster; stop it first"
    mkdir -p "$state"
    head_resources=${3:-'{}'}
    start_node "$state" 0 "$head_resources"
    shift 3 || shift $#
    i=1
    for res in "$@"; do start_node "$state" "$i" "$res"; i=$((i + 1)); done
    wait_nodes "$state" "$i"
    echo "head: 127.0.0.1:$BASE_PORT  dashboard (Ray Jobs): http://127.0.0.1:$((BASE_PORT + 1))  nodes: $i"
    ;;
  add)
    [ -n "${3:-}" ] || die "usage: $0 add STATE_DIR NODE_RESOURCES"
    i=$(node_count "$state")
    start_node "$state" "$i" "$3"
    wait_nodes "$state" "$((i + 1))"
    echo "node $i joined"
    ;;
  kill)
    [ -n "${3:-}" ] || die "usage: $0 kill STATE_DIR NODE_INDEX"
    kill_node "$state" "$3" KILL
    ;;
  stop)
    for pidfile in $(find "$state" -maxdepth 2 -name pid | sort -r); do
      idx=$(basename "$(dirname "$pidfile")"); kill_node "$state" "${idx#n}" TERM
    done
    ;;
  *) die "unknown command $cmd (start, add, kill, stop)" ;;
esac
