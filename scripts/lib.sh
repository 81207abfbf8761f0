# Shared settings for the project's scripts: where caches and state live, and the local stack's ports. Sourced, not
# run.
# shellcheck shell=bash
PAKAURA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Downloads and builds (Maven jars, the daprd binary, Go caches) are kept across clones and runs here.
PAKAURA_CACHE_DIR=${PAKAURA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pakaura}
# Data folders, logs and pid files of the running local stack.
PAKAURA_STATE_DIR=${PAKAURA_STATE_DIR:-$PAKAURA_ROOT/.stack}
export PAKAURA_ROOT PAKAURA_CACHE_DIR PAKAURA_STATE_DIR

# The local stack's ports on 127.0.0.1 (docs/LOCAL-STACK.md). A second stack runs beside the first with its own
# PAKAURA_STATE_DIR and other ports. The Kafka default is also the one deploy/dapr/local/pubsub-kafka.yaml names;
# for another port, scripts/daprd gives daprd a copy of that folder naming it.
PAKAURA_PG_PORT=${PAKAURA_PG_PORT:-54320}
PAKAURA_KAFKA_PORT=${PAKAURA_KAFKA_PORT:-19092}
PAKAURA_KAFKA_CONTROLLER_PORT=${PAKAURA_KAFKA_CONTROLLER_PORT:-19093}
PAKAURA_DAPR_HTTP_PORT=${PAKAURA_DAPR_HTTP_PORT:-3500}
PAKAURA_DAPR_GRPC_PORT=${PAKAURA_DAPR_GRPC_PORT:-35001}
PAKAURA_DAPR_METRICS_PORT=${PAKAURA_DAPR_METRICS_PORT:-35090}

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
