# daprd, the one place that knows how to build, find and start it: the `daprd` service of scripts/stack, and what
# scripts/daprd (used by examples/run-with-daprd and the e2e tests) runs. daprd is built from the
# github.com/dapr/dapr Go module at the version pinned in scripts/stack.d/daprd/go.mod, with only the components
# listed in scripts/stack.d/daprd/components.go.txt compiled in.
# Defines daprd_build, daprd_find, daprd_resources, daprd_argv, up_daprd, down_daprd, status_daprd and env_daprd.
# Sourced after scripts/lib.sh and common.sh, not run.
# shellcheck shell=bash

DAPR_VERSION=$(sed -n 's:^require github.com/dapr/dapr v\(.*\)$:\1:p' "$STACK_D/daprd/go.mod")
# The stack's sidecar: the app id the service publishes as.
DAPR_APP_ID=pakaura-api
GO_ENV=(GOMODCACHE="$PAKAURA_CACHE_DIR/go/mod" GOCACHE="$PAKAURA_CACHE_DIR/go/build" GOPATH="$PAKAURA_CACHE_DIR/go/path"
    GOFLAGS="-modcacherw -buildvcs=false" GOTOOLCHAIN=local)
DAPRD_DIR=$PAKAURA_CACHE_DIR/daprd/$DAPR_VERSION-$(short_hash "$STACK_D/daprd/go.mod" "$STACK_D/daprd/go.sum" \
    "$STACK_D/daprd/components.go.txt")
# The pinned build, the binary the stack runs.
DAPRD_BIN=$DAPRD_DIR/daprd
DAPRD_PIDFILE=$RUN_DIR/daprd.pid
DAPRD_BUILD_PIDFILE=$RUN_DIR/daprd-build.pid

# ---------------------------------------------------------------------------------------------------------------
# Building

# Build daprd into the cache (blocking). The build runs in a copy of the dapr module in which dapr's component list
# (cmd/daprd/components/zz_notag.go, which otherwise panics without the allcomponents/stablecomponents tags) is
# replaced by ours; go.mod points github.com/dapr/dapr at that copy.
daprd_build() {
    [[ -x $DAPRD_BIN ]] && return 0
    command -v go >/dev/null || die "daprd: go is not installed (Go $(sed -n 's/^go //p' "$STACK_D/daprd/go.mod") or newer is needed)"
    mkdir -p "$PAKAURA_CACHE_DIR/daprd" "$LOG_DIR"
    exec 9>"$PAKAURA_CACHE_DIR/daprd/build.lock"
    flock 9
    if [[ ! -x $DAPRD_BIN ]]; then
        local start=$SECONDS src=$DAPRD_DIR.src dapr_dir
        log "daprd: building daprd $DAPR_VERSION from the Go module proxy (downloads, then compiles)"
        rm -rf "$src"
        mkdir -p "$src"
        cp "$STACK_D/daprd/go.mod" "$STACK_D/daprd/go.sum" "$src/"
        log "daprd: downloading github.com/dapr/dapr@v$DAPR_VERSION"
        (cd "$src" && env "${GO_ENV[@]}" go mod download github.com/dapr/dapr) ||
            die "daprd: go mod download github.com/dapr/dapr@v$DAPR_VERSION failed"
        dapr_dir=$(cd "$src" && env "${GO_ENV[@]}" go list -m -f '{{.Dir}}' github.com/dapr/dapr)
        cp -r "$dapr_dir" "$src/dapr"
        chmod -R u+w "$src/dapr"
        rm -f "$src/dapr/cmd/daprd/components/zz_notag.go"
        cp "$STACK_D/daprd/components.go.txt" "$src/dapr/cmd/daprd/components/zz_pakaura.go"
        (cd "$src" && env "${GO_ENV[@]}" go mod edit -replace github.com/dapr/dapr=./dapr)
        log "daprd: downloading the modules it needs and compiling (log: $LOG_DIR/daprd-build.log)"
        # -v lists each package as it is compiled: the progress shown by `up`.
        if ! (cd "$src" && env "${GO_ENV[@]}" go build -v -mod=readonly -trimpath \
            -ldflags "-s -w -X github.com/dapr/dapr/pkg/buildinfo.version=$DAPR_VERSION" \
            -o "$src/daprd" github.com/dapr/dapr/cmd/daprd) >"$LOG_DIR/daprd-build.log" 2>&1; then
            show_log_tail "$LOG_DIR/daprd-build.log"
            die "daprd: go build failed"
        fi
        mkdir -p "$DAPRD_DIR"
        mv "$src/daprd" "$DAPRD_BIN"
        rm -rf "$src"
        log "daprd: built in $((SECONDS - start)) s ($DAPRD_BIN, $(du -sh "$DAPRD_BIN" | cut -f1))"
    fi
    exec 9>&-
}

# Start the build in the background (it is the slowest step), so that Kafka and PostgreSQL come up meanwhile.
daprd_build_start() {
    [[ -x $DAPRD_BIN ]] && return 0
    log "daprd: building daprd $DAPR_VERSION in the background (first time only; log: $LOG_DIR/daprd-build.log)"
    # Its own process group, so that a failed or interrupted `up` (or `down`) can stop the whole build. Its log
    # lines are shown when it is waited for; the path it prints is not needed.
    setsid "$PAKAURA_ROOT/scripts/daprd" build </dev/null >/dev/null 2>"$LOG_DIR/stack-daprd-build.out" 7>&- &
    DAPRD_BUILD_PID=$!
    echo "$DAPRD_BUILD_PID" >"$DAPRD_BUILD_PIDFILE"
}

# Stop a background build (the whole process group: the script, go and its compilers).
daprd_build_stop() {
    [[ -f $DAPRD_BUILD_PIDFILE ]] || return 0
    local pid
    pid=$(<"$DAPRD_BUILD_PIDFILE")
    if [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null; then
        log "daprd: stopping the unfinished build"
        kill -TERM -- "-$pid" 2>/dev/null || true
    fi
    rm -f "$DAPRD_BUILD_PIDFILE" "$LOG_DIR/stack-daprd-build.out"
}

# Wait for a background build started by daprd_build_start, printing progress now and then.
daprd_build_wait() {
    # Not started by this process: build here (this waits for any other process's build through the lock).
    [[ -n ${DAPRD_BUILD_PID:-} ]] || { daprd_build; return 0; }
    local pid=$DAPRD_BUILD_PID last=$SECONDS status=0
    DAPRD_BUILD_PID=
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS - last >= 60)); then
            last=$SECONDS
            log "daprd: still building ($(grep -cv '^go: ' "$LOG_DIR/daprd-build.log" 2>/dev/null) packages compiled so far)"
        fi
        sleep 1
    done
    wait "$pid" || status=$?
    # 127: the pid was not our child (a build another process left running); its result is the binary itself.
    if ((status == 127)) && [[ -x $DAPRD_BIN ]]; then status=0; fi
    rm -f "$DAPRD_BUILD_PIDFILE"
    # The build's own log lines (what it did, how long it took) go to the terminal too.
    cat "$LOG_DIR/stack-daprd-build.out" >&2
    rm -f "$LOG_DIR/stack-daprd-build.out"
    ((status == 0)) || die "daprd: the build failed (see above)"
}

# ---------------------------------------------------------------------------------------------------------------
# Finding and starting one

# The daprd binary to run, without building one: $PAKAURA_DAPRD_BIN, else the binary of the stack's running daprd,
# else the newest build in the cache, else `daprd` on PATH, else ~/.dapr/bin/daprd (Dapr CLI users).
daprd_find() {
    local candidate newest=""
    if [[ -n ${PAKAURA_DAPRD_BIN:-} ]]; then
        [[ -x $PAKAURA_DAPRD_BIN ]] || die "PAKAURA_DAPRD_BIN=$PAKAURA_DAPRD_BIN is not an executable"
        echo "$PAKAURA_DAPRD_BIN"
        return
    fi
    # Only while the pid is still the stack's daprd: a stale pid file may name another process by now.
    if daprd_running && candidate=$(readlink "/proc/$(<"$DAPRD_PIDFILE")/exe" 2>/dev/null) &&
        [[ -x $candidate ]]; then
        echo "$candidate"
        return
    fi
    for candidate in "$PAKAURA_CACHE_DIR"/daprd/*/daprd; do
        # A folder ending in .src is a build under way.
        [[ -x $candidate && $candidate != */*.src/daprd ]] || continue
        if [[ -z $newest || $candidate -nt $newest ]]; then newest=$candidate; fi
    done
    if [[ -n $newest ]]; then
        echo "$newest"
        return
    fi
    if candidate=$(command -v daprd); then
        echo "$candidate"
        return
    fi
    if [[ -x $HOME/.dapr/bin/daprd ]]; then
        echo "$HOME/.dapr/bin/daprd"
        return
    fi
    die "no daprd found: run scripts/stack up (it builds one), or set PAKAURA_DAPRD_BIN"
}

# The resources folder daprd loads (`pubsub-kafka`, and daprd-config.yaml beside it): deploy/dapr/local itself when
# the stack's Kafka is on the port that folder names, else a copy under the state folder naming
# $PAKAURA_KAFKA_PORT (rewritten only when it differs, under a lock, so concurrent callers agree).
daprd_resources() {
    local source=$PAKAURA_ROOT/deploy/dapr/local named
    named=$(sed -n 's/.*"127\.0\.0\.1:\([0-9]*\)".*/\1/p' "$source/pubsub-kafka.yaml")
    [[ $named =~ ^[0-9]+$ ]] || die "daprd: $source/pubsub-kafka.yaml names no broker 127.0.0.1:<port>"
    if [[ $named == "$PAKAURA_KAFKA_PORT" ]]; then
        echo "$source"
        return
    fi
    local copy=$PAKAURA_STATE_DIR/dapr/local-kafka-$PAKAURA_KAFKA_PORT tmp file
    mkdir -p "$PAKAURA_STATE_DIR/dapr"
    (
        flock 6
        tmp=$(mktemp -d "$copy.XXXXXX")
        for file in "$source"/*.yaml; do
            sed "s/\"127\.0\.0\.1:$named\"/\"127.0.0.1:$PAKAURA_KAFKA_PORT\"/" "$file" >"$tmp/${file##*/}"
        done
        grep -qF "\"127.0.0.1:$PAKAURA_KAFKA_PORT\"" "$tmp/pubsub-kafka.yaml" ||
            { rm -rf "$tmp"; die "daprd: could not point $tmp/pubsub-kafka.yaml at port $PAKAURA_KAFKA_PORT"; }
        if diff -r "$tmp" "$copy" >/dev/null 2>&1; then
            rm -rf "$tmp"
        else
            rm -rf "$copy"
            mv "$tmp" "$copy"
        fi
    ) 6>"$PAKAURA_STATE_DIR/dapr/copy.lock"
    echo "$copy"
}

# Sets DAPRD_ARGV to the standard command line of daprd binary $1 (standalone mode, the resources of
# daprd_resources, every listener on 127.0.0.1), then the caller's daprd flags ($2...: at least --app-id and the
# ports; more --resources-path folders are loaded beside the stack's).
daprd_argv() {
    local bin=$1 resources
    shift
    [[ " $* " == *" --app-id "* ]] || die "daprd: --app-id is required"
    resources=$(daprd_resources)
    DAPRD_ARGV=("$bin" --mode standalone
        --resources-path "$resources" --config "$resources/daprd-config.yaml"
        --dapr-listen-addresses 127.0.0.1 --dapr-internal-grpc-listen-address 127.0.0.1
        --metrics-listen-address 127.0.0.1 --app-channel-address 127.0.0.1 "$@")
}

# ---------------------------------------------------------------------------------------------------------------
# The stack's sidecar (app id pakaura-api) on $PAKAURA_DAPR_HTTP_PORT

daprd_healthy() {
    curl -fsS -o /dev/null --max-time 2 "http://127.0.0.1:$PAKAURA_DAPR_HTTP_PORT/v1.0/healthz/outbound" 2>/dev/null
}

daprd_running() { pid_alive "$DAPRD_PIDFILE" "--app-id $DAPR_APP_ID"; }

up_daprd() {
    daprd_build_wait
    if daprd_running; then return 0; fi
    require_free_port daprd "$PAKAURA_DAPR_HTTP_PORT"
    require_free_port daprd "$PAKAURA_DAPR_GRPC_PORT"
    require_free_port daprd "$PAKAURA_DAPR_METRICS_PORT"
    log "daprd: starting daprd $DAPR_VERSION (app id $DAPR_APP_ID) on http://127.0.0.1:$PAKAURA_DAPR_HTTP_PORT"
    daprd_argv "$DAPRD_BIN" --app-id "$DAPR_APP_ID" \
        --dapr-http-port "$PAKAURA_DAPR_HTTP_PORT" --dapr-grpc-port "$PAKAURA_DAPR_GRPC_PORT" \
        --metrics-port "$PAKAURA_DAPR_METRICS_PORT" --log-level info
    spawn "$LOG_DIR/daprd.log" "$DAPRD_PIDFILE" "${DAPRD_ARGV[@]}"
    local deadline=$((SECONDS + 60))
    until daprd_healthy; do
        pid_exists "$DAPRD_PIDFILE" || { show_log_tail "$LOG_DIR/daprd.log"; die "daprd: exited during start"; }
        ((SECONDS < deadline)) || { show_log_tail "$LOG_DIR/daprd.log"; die "daprd: not healthy after 60s"; }
        sleep 0.5
    done
    note_started daprd
}

down_daprd() {
    daprd_running || { rm -f "$DAPRD_PIDFILE"; return 0; }
    log "daprd: stopping"
    stop_pid "$DAPRD_PIDFILE" "--app-id $DAPR_APP_ID" 30 || true
}

status_daprd() {
    if daprd_running; then
        local health=unhealthy
        daprd_healthy && health=healthy
        echo "daprd     running  http://127.0.0.1:$PAKAURA_DAPR_HTTP_PORT ($health)  daprd $DAPR_VERSION  pid $(<"$DAPRD_PIDFILE")"
    elif [[ -f $DAPRD_BUILD_PIDFILE ]] && kill -0 "$(<"$DAPRD_BUILD_PIDFILE")" 2>/dev/null; then
        echo "daprd     building"
    else
        echo "daprd     stopped"
    fi
}

env_daprd() {
    if daprd_running; then
        echo "export PAKAURA_DAPR_HTTP_ENDPOINT=http://127.0.0.1:$PAKAURA_DAPR_HTTP_PORT"
    else
        echo "# daprd is not running: scripts/stack up daprd"
    fi
}
