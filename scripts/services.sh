#!/usr/bin/env bash
# Throwaway backing services for Conveyor's integration tests: one PostgreSQL server and one
# Redis server (the online feature store), both on loopback.
#
# Usage: scripts/services.sh start|stop|status|env
#
#   start   initialise (first time) and start PostgreSQL on 127.0.0.1; a no-op when it already
#           runs; then the same for Redis. Progress goes to stderr; stdout ends with
#           CONVEYOR_TEST_PG_URL=... and CONVEYOR_TEST_REDIS_URL=...
#   stop    stop the servers (fast shutdown); safe when they are not running.
#   status  exit 0 when both run, 3 when not (the LSB convention, as pg_ctl status).
#   env     print export lines: eval "$(scripts/services.sh env)"
#
# Environment:
#   CONVEYOR_SERVICES_DIR  state directory (default /tmp/conveyor-services)
#   CONVEYOR_PG_PORT       TCP port on 127.0.0.1 (default 54329)
#   CONVEYOR_REDIS_PORT    TCP port on 127.0.0.1 for Redis (default 63799)
#
# The server is disposable: fsync is off, so a machine crash may corrupt it; `stop`, then
# `rm -rf "$CONVEYOR_SERVICES_DIR"` and `start` again gives a fresh one.
set -euo pipefail

readonly PG_OS_USER=conveyor-pg
readonly DB_NAME=conveyor_test
readonly DB_ROLE=conveyor
readonly DB_PASSWORD=conveyor
readonly START_TIMEOUT_S=30

state_dir=${CONVEYOR_SERVICES_DIR:-/tmp/conveyor-services}
pg_port=${CONVEYOR_PG_PORT:-54329}
redis_port=${CONVEYOR_REDIS_PORT:-63799}

die() {
    echo "services.sh: error: $*" >&2
    exit 1
}

say() {
    echo "services.sh: $*" >&2
}

check_config() {
    if ! [[ $pg_port =~ ^[1-9][0-9]{0,4}$ ]] || ((pg_port < 1024 || pg_port > 65535)); then
        die "CONVEYOR_PG_PORT='$pg_port' is not a port number between 1024 and 65535"
    fi
    if ! [[ $redis_port =~ ^[1-9][0-9]{0,4}$ ]] || ((redis_port < 1024 || redis_port > 65535)); then
        die "CONVEYOR_REDIS_PORT='$redis_port' is not a port number between 1024 and 65535"
    fi
    [[ $state_dir == /* ]] || state_dir=$PWD/$state_dir
    # The path goes verbatim into a quoted postgresql.conf value and into a unix socket name.
    [[ $state_dir =~ ^[A-Za-z0-9_./+@:-]+$ ]] ||
        die "CONVEYOR_SERVICES_DIR='$state_dir' contains characters other than letters, digits and _./+@:-"
    pg_dir=$state_dir/postgres
    pg_data=$pg_dir/data
    pg_log=$pg_dir/postgres.log
    redis_dir=$state_dir/redis
    # sockaddr_un.sun_path holds 107 characters; postgres fails obscurely past that.
    local socket=$pg_dir/.s.PGSQL.$pg_port
    ((${#socket} <= 107)) ||
        die "socket path '$socket' is longer than 107 characters; set a shorter CONVEYOR_SERVICES_DIR"
}

pg_url() {
    echo "postgresql+psycopg://$DB_ROLE:$DB_PASSWORD@127.0.0.1:$pg_port/$DB_NAME"
}

is_root() {
    [[ $EUID -eq 0 ]]
}

# PostgreSQL refuses to run as root; as root we run it as an unprivileged system user, otherwise
# as whoever calls us. From / because the caller's directory may be unreadable to that user.
# With only stdin, stdout and stderr: a postmaster would hold any other inherited descriptor (our
# lock, a CI runner's pipe) open for its whole life.
as_pg() {
    (
        cd /
        local fd
        for fd in /proc/self/fd/*; do
            fd=${fd##*/}
            if ((fd > 2)); then exec {fd}>&-; fi
        done
        if is_root; then
            exec runuser -u "$PG_OS_USER" -- "$@"
        else
            exec "$@"
        fi
    )
}

find_pg_bin() {
    local candidates=() dir
    for dir in /usr/lib/postgresql/*/bin; do
        [[ -x $dir/pg_ctl && -x $dir/initdb && -x $dir/postgres ]] && candidates+=("$dir")
    done
    if ((${#candidates[@]})); then
        printf '%s\n' "${candidates[@]}" | sort -V | tail -n 1
    fi
}

ensure_pg_bin() {
    pg_bin=$(find_pg_bin)
    [[ -n $pg_bin ]] && return
    is_root || die "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin; run this script as root to install them, or run: sudo apt-get install postgresql"
    command -v apt-get >/dev/null ||
        die "PostgreSQL server binaries not found under /usr/lib/postgresql/*/bin and apt-get is unavailable; install PostgreSQL yourself"
    say "installing PostgreSQL (apt-get install postgresql)..."
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql; } >&2 ||
        die "apt-get could not install the 'postgresql' package (see the output above)"
    pg_bin=$(find_pg_bin)
    [[ -n $pg_bin ]] || die "installed 'postgresql' but found no server binaries under /usr/lib/postgresql/*/bin"
}

ensure_os_user() {
    is_root || return 0
    command -v runuser >/dev/null || die "runuser (util-linux) is required to run PostgreSQL as '$PG_OS_USER'"
    id -u "$PG_OS_USER" >/dev/null 2>&1 && return
    say "creating system user '$PG_OS_USER'"
    useradd --system --user-group --no-create-home --home-dir /nonexistent \
        --shell /usr/sbin/nologin "$PG_OS_USER" ||
        die "could not create system user '$PG_OS_USER'"
}

# Serialises concurrent invocations (parallel CI jobs, pytest-xdist workers) on one state dir.
take_lock() {
    mkdir -p "$state_dir" || die "cannot create state directory '$state_dir'"
    { exec 9>>"$state_dir/.lock"; } 2>/dev/null ||
        die "cannot write '$state_dir/.lock'; if '$state_dir' belongs to another user, set CONVEYOR_SERVICES_DIR to a directory of your own"
    flock -w 60 9 || die "another services.sh has held '$state_dir/.lock' for 60 s"
}

# Prints the pid and port of a running server and succeeds, or fails when none runs.
running_server() {
    [[ -f $pg_data/PG_VERSION ]] || return 1
    as_pg "$pg_bin/pg_ctl" status -D "$pg_data" >/dev/null 2>&1 || return 1
    # postmaster.pid: line 1 is the pid, line 4 the port.
    sed -n '1p;4p' "$pg_data/postmaster.pid" 2>/dev/null | paste -sd ' '
}

port_in_use() {
    (exec 3<>"/dev/tcp/127.0.0.1/$pg_port") 2>/dev/null
}

last_log_error() {
    local line
    line=$(grep -E 'FATAL|PANIC|ERROR' "$pg_log" 2>/dev/null | tail -n 1) || true
    echo "${line:-no error line in the log}"
}

init_cluster() {
    if is_root; then
        install -d -m 0700 -o "$PG_OS_USER" -g "$PG_OS_USER" "$pg_dir" ||
            die "cannot create '$pg_dir'"
    else
        [[ -d $pg_dir ]] || mkdir -m 0700 "$pg_dir" || die "cannot create '$pg_dir'"
    fi
    local who=$PG_OS_USER
    is_root || who=$(id -un)
    as_pg test -w "$pg_dir" ||
        die "user '$who' cannot write '$pg_dir' (a parent directory is not searchable, or it belongs to someone else); choose another CONVEYOR_SERVICES_DIR, e.g. under /tmp"
    [[ -f $pg_data/PG_VERSION ]] && return
    say "initialising a new cluster in $pg_data"
    # A half-made data dir from an interrupted initdb would make initdb refuse.
    rm -rf "$pg_data"
    as_pg "$pg_bin/initdb" -D "$pg_data" -U postgres --encoding=UTF8 --no-locale \
        --auth-local=trust --auth-host=scram-sha-256 >"$pg_dir/initdb.log" 2>&1 ||
        die "initdb failed; see $pg_dir/initdb.log"
    # Speed over durability: this server is thrown away after the tests.
    as_pg tee -a "$pg_data/postgresql.conf" >/dev/null <<EOF

# --- added by scripts/services.sh ---
listen_addresses = '127.0.0.1'
unix_socket_directories = '$pg_dir'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
}

wait_until_ready() {
    local started=$SECONDS
    until "$pg_bin/pg_isready" -q -h "$pg_dir" -p "$pg_port" -d postgres -t 1; do
        # pg_ctl status looks for the pid file, which the postmaster writes only once it is
        # under way, so a missing one means "died" only after a moment.
        if ((SECONDS - started >= 2)) && ! as_pg "$pg_bin/pg_ctl" status -D "$pg_data" >/dev/null 2>&1; then
            die "postgres exited during start-up: $(last_log_error); full log: $pg_log"
        fi
        ((SECONDS - started < START_TIMEOUT_S)) ||
            die "postgres did not accept connections within ${START_TIMEOUT_S} s; see $pg_log"
        sleep 0.2
    done
}

ensure_database() {
    "$pg_bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$pg_dir" -p "$pg_port" -U postgres -d postgres \
        >/dev/null <<EOF || die "could not create role '$DB_ROLE' and database '$DB_NAME'; see $pg_log"
SELECT 'CREATE ROLE $DB_ROLE LOGIN CREATEDB PASSWORD ''$DB_PASSWORD'''
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$DB_ROLE')\gexec
SELECT 'CREATE DATABASE $DB_NAME OWNER $DB_ROLE'
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$DB_NAME')\gexec
EOF
}

redis_url() {
    echo "redis://127.0.0.1:$redis_port/0"
}

ensure_redis_bin() {
    command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return
    is_root || die "redis-server not found; run this script as root to install it, or run: sudo apt-get install redis-server"
    command -v apt-get >/dev/null || die "redis-server not found and apt-get is unavailable; install Redis yourself"
    say "installing Redis (apt-get install redis-server)..."
    export DEBIAN_FRONTEND=noninteractive
    { apt-get install -y -qq --no-install-recommends redis-server ||
        { apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server; }; } >&2 ||
        die "apt-get could not install the 'redis-server' package (see the output above)"
}

redis_ping() {
    [[ $(redis-cli -h 127.0.0.1 -p "$redis_port" ping 2>/dev/null) == PONG ]]
}

start_redis() {
    ensure_redis_bin
    if redis_ping; then
        say "redis already running on 127.0.0.1:$redis_port"
        return
    fi
    (exec 3<>"/dev/tcp/127.0.0.1/$redis_port") 2>/dev/null &&
        die "127.0.0.1:$redis_port is in use by something that is not Redis; set CONVEYOR_REDIS_PORT to a free port"
    mkdir -p "$redis_dir" || die "cannot create '$redis_dir'"
    say "starting redis on 127.0.0.1:$redis_port"
    # No persistence: the data is thrown away with the tests. Closed descriptors, as for postgres.
    (
        cd /
        for fd in /proc/self/fd/*; do
            fd=${fd##*/}
            if ((fd > 2)); then exec {fd}>&-; fi
        done
        exec redis-server --port "$redis_port" --bind 127.0.0.1 --daemonize yes \
            --pidfile "$redis_dir/redis.pid" --logfile "$redis_dir/redis.log" --dir "$redis_dir" \
            --save "" --appendonly no
    ) || die "redis-server could not start; see $redis_dir/redis.log"
    local started=$SECONDS
    until redis_ping; do
        ((SECONDS - started < START_TIMEOUT_S)) ||
            die "redis did not answer within ${START_TIMEOUT_S} s; see $redis_dir/redis.log"
        sleep 0.1
    done
}

stop_redis() {
    command -v redis-cli >/dev/null && redis_ping || {
        say "redis is not running"
        return 0
    }
    redis-cli -h 127.0.0.1 -p "$redis_port" shutdown nosave >/dev/null 2>&1 || true
    say "redis stopped"
}

cmd_start() {
    ensure_pg_bin
    ensure_os_user
    take_lock
    local running
    if running=$(running_server); then
        local pid=${running% *} port=${running#* }
        [[ $port == "$pg_port" ]] ||
            die "postgres already runs from '$pg_data' on port $port, not CONVEYOR_PG_PORT=$pg_port; run 'scripts/services.sh stop' first"
        say "postgres already running (pid $pid) on 127.0.0.1:$pg_port"
    else
        if port_in_use; then
            die "127.0.0.1:$pg_port is already in use by another process (see: ss -ltnp 'sport = :$pg_port'); stop it or set CONVEYOR_PG_PORT to a free port"
        fi
        init_cluster
        say "starting postgres ($pg_bin) on 127.0.0.1:$pg_port"
        # -W: we wait ourselves, bounded, with pg_isready. -l sends the server's output to the
        # log, so it never holds the caller's stdout/stderr pipes open.
        as_pg "$pg_bin/pg_ctl" start -W -s -D "$pg_data" -l "$pg_log" -o "-p $pg_port" ||
            die "pg_ctl could not start postgres; see $pg_log"
        wait_until_ready
    fi
    # Cheap and idempotent; also repairs a start that was interrupted before this step.
    ensure_database
    start_redis
    echo "CONVEYOR_TEST_PG_URL=$(pg_url)"
    echo "CONVEYOR_TEST_REDIS_URL=$(redis_url)"
}

cmd_stop() {
    stop_redis
    pg_bin=$(find_pg_bin)
    if [[ -z $pg_bin || ! -f $pg_data/PG_VERSION ]]; then
        say "postgres is not running"
        return
    fi
    ensure_os_user
    take_lock
    if ! running_server >/dev/null; then
        say "postgres is not running"
        return
    fi
    as_pg "$pg_bin/pg_ctl" stop -s -D "$pg_data" -m fast -w -t "$START_TIMEOUT_S" ||
        die "pg_ctl could not stop postgres within ${START_TIMEOUT_S} s; see $pg_log"
    say "postgres stopped"
}

cmd_status() {
    pg_bin=$(find_pg_bin)
    local running
    if [[ -n $pg_bin ]] && running=$(running_server); then
        echo "postgres: running (pid ${running% *}) on 127.0.0.1:${running#* }, data in $pg_data"
    else
        echo "postgres: not running"
        return 3
    fi
    if command -v redis-cli >/dev/null && redis_ping; then
        echo "redis: running on 127.0.0.1:$redis_port"
    else
        echo "redis: not running"
        return 3
    fi
}

cmd_env() {
    printf 'export CONVEYOR_TEST_PG_URL=%q\n' "$(pg_url)"
    printf 'export CONVEYOR_TEST_REDIS_URL=%q\n' "$(redis_url)"
}

main() {
    [[ $# -eq 1 ]] || {
        echo "usage: ${0##*/} start|stop|status|env" >&2
        exit 2
    }
    check_config
    case $1 in
    start) cmd_start ;;
    stop) cmd_stop ;;
    status) cmd_status ;;
    env) cmd_env ;;
    -h | --help) sed -n '2,17s/^# \{0,1\}//p' "$0" ;;
    *)
        echo "usage: ${0##*/} start|stop|status|env" >&2
        exit 2
        ;;
    esac
}

main "$@"
