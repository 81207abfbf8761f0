# The `postgres` service of scripts/stack: Debian's PostgreSQL package, a throwaway cluster owned by the `postgres`
# system user (the server refuses to run as root), on 127.0.0.1:$PAKAURA_PG_PORT, trust authentication.
# Defines up_postgres, down_postgres, status_postgres, env_postgres and clean_postgres. Sourced, not run.
# shellcheck shell=bash

pg_bindir() {
    local initdb
    initdb=$(printf '%s\n' /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)
    [[ -x $initdb ]] && dirname "$initdb"
}

pg_install() {
    pg_bindir >/dev/null && return 0
    [[ $(id -u) -eq 0 ]] || die "postgres: PostgreSQL is not installed; run as root or: sudo apt-get install -y postgresql"
    log "postgres: installing Debian's postgresql package"
    # A fresh machine's package lists may be missing or stale (an old list names versions the mirror no longer
    # has), so refresh them once before the one install.
    apt-get update -qq >"$LOG_DIR/postgres-install.log" 2>&1 ||
        { show_log_tail "$LOG_DIR/postgres-install.log"; die "postgres: apt-get update failed"; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >>"$LOG_DIR/postgres-install.log" 2>&1 ||
        { show_log_tail "$LOG_DIR/postgres-install.log"; die "postgres: apt-get install postgresql failed"; }
    pg_bindir >/dev/null || die "postgres: installed, but no /usr/lib/postgresql/*/bin/initdb found"
}

# The data folder must be reachable by the `postgres` user. The state folder usually is; when it is not (say, a
# clone under /root, which is mode 700), the cluster lives in /var/tmp under a name derived from the state folder.
pg_datadir() {
    local dir=$PAKAURA_STATE_DIR/postgres
    if [[ $(id -u) -ne 0 ]] || runuser -u postgres -- test -x "$PAKAURA_STATE_DIR" 2>/dev/null; then
        echo "$dir"
    else
        echo "/var/tmp/pakaura-stack-$(printf '%s' "$PAKAURA_STATE_DIR" | sha256sum | cut -c1-12)/postgres"
    fi
}

# Run a PostgreSQL server tool as the cluster's owner.
as_pg_owner() {
    if [[ $(id -u) -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_running() {
    local bindir datadir
    bindir=$(pg_bindir) || return 1
    datadir=$(pg_datadir)
    [[ -f $datadir/postmaster.pid ]] && as_pg_owner "$bindir/pg_ctl" -D "$datadir" status >/dev/null 2>&1
}

up_postgres() {
    pg_install
    local bindir datadir port=$PAKAURA_PG_PORT
    bindir=$(pg_bindir)
    datadir=$(pg_datadir)
    if pg_running; then return 0; fi
    if [[ ! -f $datadir/PG_VERSION ]]; then
        log "postgres: creating a cluster in $datadir"
        mkdir -p "$datadir"
        chmod 700 "$datadir"
        case $datadir in
        /var/tmp/pakaura-stack-*) chmod 755 "$(dirname "$datadir")" ;;
        esac
        [[ $(id -u) -ne 0 ]] || chown postgres:postgres "$datadir"
        as_pg_owner "$bindir/initdb" -D "$datadir" -U postgres --auth=trust --encoding=UTF8 --no-locale \
            --no-instructions >"$LOG_DIR/postgres-initdb.log" 2>&1 ||
            { show_log_tail "$LOG_DIR/postgres-initdb.log"; die "postgres: initdb failed"; }
    fi
    require_free_port postgres "$port"
    log "postgres: starting on 127.0.0.1:$port"
    # A throwaway cluster for tests: durability settings off for speed. Unix sockets live in the data folder.
    local opts="-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories='$datadir'"
    opts+=" -c max_connections=200 -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
    local owner=()
    [[ $(id -u) -ne 0 ]] || owner=(runuser -u postgres --)
    # pg_ctl -w waits until the server accepts connections.
    if ! setsid "${owner[@]}" "$bindir/pg_ctl" -D "$datadir" -w -t 60 -o "$opts" start \
        </dev/null >>"$LOG_DIR/postgres.log" 2>&1 7>&- 8>&- 9>&-; then
        show_log_tail "$LOG_DIR/postgres.log"
        die "postgres: did not start"
    fi
    "$bindir/pg_isready" -q -h 127.0.0.1 -p "$port" -U postgres ||
        die "postgres: started but pg_isready fails on 127.0.0.1:$port"
    note_started postgres
}

down_postgres() {
    local bindir datadir
    bindir=$(pg_bindir) || return 0
    datadir=$(pg_datadir)
    pg_running || return 0
    log "postgres: stopping"
    as_pg_owner "$bindir/pg_ctl" -D "$datadir" -m fast -w -t 60 stop >>"$LOG_DIR/postgres.log" 2>&1
}

status_postgres() {
    if pg_running; then
        echo "postgres  running  postgres://postgres@127.0.0.1:$PAKAURA_PG_PORT/postgres  data: $(pg_datadir)"
    else
        echo "postgres  stopped"
    fi
}

env_postgres() {
    if pg_running; then
        echo "export TEST_DATABASE_URL=postgres://postgres@127.0.0.1:$PAKAURA_PG_PORT/postgres"
    else
        echo "# postgres is not running: scripts/stack up postgres"
    fi
}

# After `down`: the data that lives outside the state folder (the /var/tmp fallback of pg_datadir).
clean_postgres() {
    local datadir
    datadir=$(pg_datadir)
    case $datadir in
    /var/tmp/pakaura-stack-*) rm -rf "$(dirname "$datadir")" ;;
    esac
}
