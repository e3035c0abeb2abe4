#!/usr/bin/env bash
# A full rolling restart of a local three-node Lightkeeper cluster under load; reports failed
# requests (expected: zero) and exits non-zero if any failed.
#
#   examples/rolling-restart.sh            # needs a Kafka-protocol broker at $KAFKA
#
# Environment: KAFKA (default 127.0.0.1:9092), SHARED (default ../shared, the alert data).
# Builds `lightkeeper` and the `rolling_restart` example, starts nodes a, b, c on
# 127.0.0.1:18081-18083 with fresh topics (2 partitions, every node a replica of each), loads
# ZTF21abiuvdk's 22 alerts, then runs `rolling_restart`: drain, SIGTERM, restart, wait caught
# up — node after node — while clients read that object and post more alerts through all nodes.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

restart_node() { # ID WORKDIR: SIGTERM the node, wait for it to exit, start it again
    local id=$1 work=$2 pid
    pid=$(cat "$work/$id.pid")
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do sleep 0.05; done
    start_node "$id" "$work"
}

start_node() { # ID WORKDIR
    local id=$1 work=$2
    "$work/lightkeeper" serve --config "$work/$id.toml" --data-dir "$work/$id" \
        >>"$work/$id.out" 2>>"$work/$id.log" &
    echo $! >"$work/$id.pid"
}

if [[ "${1:-}" == restart ]]; then
    restart_node "$2" "$3"
    exit 0
fi

KAFKA=${KAFKA:-127.0.0.1:9092}
SHARED=${SHARED:-$ROOT/../shared}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
cargo build --release -p lightkeeper-gateway -p lightkeeper-examples
WORK=$(mktemp -d)
cp "$TARGET/release/lightkeeper" "$WORK/lightkeeper"
trap 'for p in "$WORK"/*.pid; do kill -TERM "$(cat "$p")" 2>/dev/null || true; done; echo "logs: $WORK"' EXIT

TOPIC=rolling-$$
for id in a b c; do
    port=$((18080 + $(printf '%d' "'$id") - 96))
    cat >"$WORK/$id.toml" <<TOML
node_id = "$id"
listen = "127.0.0.1:$port"
[kafka]
bootstrap = "$KAFKA"
[topics]
input = "$TOPIC-alerts"
changelog = "$TOPIC-changelog"
dead_letter = "$TOPIC-dlq"
partitions = 2
[cluster]
admin_token = "rolling-restart-demo"
[cluster.peers]
a = "http://127.0.0.1:18081"
b = "http://127.0.0.1:18082"
c = "http://127.0.0.1:18083"
TOML
    start_node "$id" "$WORK"
done
for port in 18081 18082 18083; do
    until curl -sf "http://127.0.0.1:$port/readyz" >/dev/null; do sleep 0.1; done
done
"$WORK/lightkeeper" ingest --kafka "$KAFKA" --topic "$TOPIC-alerts" \
    "$SHARED/data/ztf/alerts/pitt-google-broker/lightcurve_ZTF21abiuvdk"
until curl -sf http://127.0.0.1:18081/v1/objects/ztf:ZTF21abiuvdk >/dev/null; do sleep 0.1; done

"$TARGET/release/rolling_restart" --token rolling-restart-demo \
    --restart "$ROOT/examples/rolling-restart.sh restart {id} $WORK" \
    --key ztf:ZTF21abiuvdk --ingest "$SHARED/data/ztf/alerts/fink-alert-simulator" --rate 50 \
    a=http://127.0.0.1:18081 b=http://127.0.0.1:18082 c=http://127.0.0.1:18083
