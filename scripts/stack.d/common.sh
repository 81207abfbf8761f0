# Process supervision shared by the services of scripts/stack (postgres.sh, kafka.sh, daprd.sh) and by
# scripts/daprd: pid files, ports, detached starts, stops with a deadline. Sourced after scripts/lib.sh, not run.
# shellcheck shell=bash

# Used by the files that source this one.
# shellcheck disable=SC2034
{
    STACK_D=$PAKAURA_ROOT/scripts/stack.d
    LOG_DIR=$PAKAURA_STATE_DIR/logs
    RUN_DIR=$PAKAURA_STATE_DIR/run
}

# The first 12 hex digits of the SHA-256 of the given files: keys a cache entry to the files that define it.
short_hash() { cat "$@" | sha256sum | cut -c1-12; }

# Whether the process in pid file $1 is alive and its command line contains $2.
pid_alive() {
    local pidfile=$1 marker=$2 pid
    [[ -f $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -qF -- "$marker"
}

# Whether the process in pid file $1 exists (right after `spawn`, before its exec, its command line is not yet known).
pid_exists() { [[ -f $1 ]] && kill -0 "$(<"$1")" 2>/dev/null; }

# Whether something accepts TCP connections on 127.0.0.1:$1.
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Refuse to start a service on a port that something else already holds.
require_free_port() {
    local svc=$1 port=$2
    if port_open "$port"; then
        die "$svc: port $port on 127.0.0.1 is already in use by another process (see: ss -ltnp 'sport = :$port')"
    fi
}

# Stop the process of pid file $1 (command line containing $2): SIGTERM, wait up to $3 seconds, then SIGKILL.
stop_pid() {
    local pidfile=$1 marker=$2 timeout=$3 pid i
    if ! pid_alive "$pidfile" "$marker"; then
        rm -f "$pidfile"
        return 1
    fi
    pid=$(<"$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "process $pid did not stop within ${timeout}s; killing it"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    rm -f "$pidfile"
}

# Start a long-running process detached from this shell (own session, stdin closed), logging to $1, its pid in $2.
spawn() {
    local logfile=$1 pidfile=$2
    shift 2
    # `setsid` only execs (keeping the pid) when it is not a process group leader, which a background job of a
    # non-interactive shell never is; $! is then the service's own pid.
    # The lock descriptors (7-9) are closed: the service must not hold this script's locks.
    setsid "$@" </dev/null >>"$logfile" 2>&1 7>&- 8>&- 9>&- &
    echo $! >"$pidfile"
}

# Print the last lines of a log after a failure, so that CI output shows the cause.
show_log_tail() {
    local file=$1
    [[ -f $file ]] || return 0
    log "last lines of $file:"
    tail -n "${2:-30}" "$file" | sed 's/^/    /' >&2
}

# Tell scripts/test (through PAKAURA_STACK_STARTED_FILE) that this run started service $1.
note_started() {
    if [[ -n ${PAKAURA_STACK_STARTED_FILE:-} ]]; then echo "$1" >>"$PAKAURA_STACK_STARTED_FILE"; fi
}
