# Shared settings for the project's scripts: where caches and state live. Sourced, not run.
# shellcheck shell=bash
PAKAURA_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Downloads and builds (Maven jars, the daprd binary, Go caches) are kept across clones and runs here.
PAKAURA_CACHE_DIR=${PAKAURA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/pakaura}
# Data folders, logs and pid files of the running local stack.
PAKAURA_STATE_DIR=${PAKAURA_STATE_DIR:-$PAKAURA_ROOT/.stack}
export PAKAURA_ROOT PAKAURA_CACHE_DIR PAKAURA_STATE_DIR

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
