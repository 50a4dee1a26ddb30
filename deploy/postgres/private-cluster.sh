#!/usr/bin/env bash
# A private PostgreSQL 15 cluster with logical replication on, in a folder of
# its own: its own port, its own socket folder, nothing shared with the
# machine's clusters (pg_ctlcluster's 15/main keeps 5432 and
# /var/run/postgresql). For the tests (test/cluster/harness/pg.ts) and for
# trying cluster mode on one machine; production runs the distribution's own
# cluster with the settings of docs/cluster.md.
#
#   private-cluster.sh install
#       installs Debian's postgresql-15 when its binaries are missing (root, apt)
#   private-cluster.sh start <dir> <port> [--listen ADDR,...] [--allow CIDR,...]
#                            [--wal-segsize MB] [--set name=value]...
#       initdb in <dir>/data (first time only) and start; socket in <dir>/sock,
#       server log in <dir>/log. Listens on 127.0.0.1 plus --listen (those
#       addresses must exist already). Connections are trusted, without a
#       password, from loopback and from the --allow networks only.
#   private-cluster.sh stop <dir> [fast|immediate]
#   private-cluster.sh remove <dir>
#       stops it (immediate) and deletes <dir>: only a folder this script made.
#
# As root, initdb and postgres run as the postgres user (both refuse root);
# otherwise as the caller. Exit status: 0 done; 1 impossible here (the message
# says why); 2 bad usage.
set -euo pipefail

bin=${VNUM_PG_BIN:-/usr/lib/postgresql/15/bin}
marker=.vnum-private-cluster

fail() { echo "private-cluster: $*" >&2; exit 1; }
usage() { echo "private-cluster: $*" >&2; sed -n '9,19p' "$0" >&2; exit 2; }

# Run a PostgreSQL binary as the user that owns the cluster.
as_owner() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

cmd_install() {
  if [[ -x $bin/initdb && -x $bin/postgres && -x $bin/pg_ctl ]]; then
    return 0
  fi
  [[ $(id -u) -eq 0 ]] || fail "PostgreSQL 15 is not installed ($bin/initdb is missing) and installing it needs root"
  command -v apt-get >/dev/null || fail "PostgreSQL 15 is not installed and there is no apt-get to install it with"
  echo "private-cluster: installing postgresql-15 with apt" >&2
  export DEBIAN_FRONTEND=noninteractive
  # Another run may be installing at the same moment: wait for dpkg's lock rather than fail.
  apt-get -o DPkg::Lock::Timeout=300 update -qq || fail "apt-get update failed: is the Debian mirror reachable?"
  # policy-rc.d or no systemd: the package starts nothing here, which is what we want.
  apt-get -o DPkg::Lock::Timeout=300 install -y -qq --no-install-recommends postgresql-15 >/dev/null ||
    fail "could not install postgresql-15"
  [[ -x $bin/initdb ]] || fail "postgresql-15 installed but $bin/initdb is missing"
}

cmd_start() {
  (($# >= 2)) || usage "start needs <dir> <port>"
  local dir=$1 port=$2
  shift 2
  [[ $port =~ ^[0-9]+$ ]] && ((port > 0 && port < 65536)) || usage "bad port: $port"
  local listen=127.0.0.1 allow='' segsize='' settings=()
  while (($# > 0)); do
    case $1 in
      --listen) listen="127.0.0.1,${2:?--listen needs addresses}"; shift 2 ;;
      --allow) allow=${2:?--allow needs networks}; shift 2 ;;
      --wal-segsize) segsize=${2:?--wal-segsize needs a size in MB}; shift 2 ;;
      --set) [[ ${2:-} == *=* ]] || usage "--set needs name=value"; settings+=("$2"); shift 2 ;;
      *) usage "unknown option $1" ;;
    esac
  done
  [[ -x $bin/initdb ]] || fail "PostgreSQL 15 is not installed ($bin/initdb is missing): run '$0 install' as root"
  if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || fail "no postgres user to run the server as (postgresql-common creates it)"
  fi

  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  local data=$dir/data
  if [[ ! -f $data/PG_VERSION ]]; then
    [[ ! -e $data ]] || fail "$data exists and holds no cluster: refusing to initdb there"
    touch "$dir/$marker"
    mkdir -p "$dir/sock"
    if [[ $(id -u) -eq 0 ]]; then chown -R postgres: "$dir"; fi
    chmod 700 "$dir"
    local initdb_args=(-D "$data" -A trust -U postgres --no-sync -E UTF8 --locale=C.UTF-8)
    [[ -n $segsize ]] && initdb_args+=(--wal-segsize="$segsize")
    as_owner "$bin/initdb" "${initdb_args[@]}" >"$dir/initdb.log" 2>&1 ||
      { cat "$dir/initdb.log" >&2; fail "initdb failed"; }
    {
      echo "# vnum private cluster (deploy/postgres/private-cluster.sh)"
      echo "local   all          all                trust"
      echo "local   replication  all                trust"
      echo "host    all          all  127.0.0.1/32  trust"
      echo "host    replication  all  127.0.0.1/32  trust"
      local net
      for net in ${allow//,/ }; do
        echo "host    all          all  $net  trust"
        echo "host    replication  all  $net  trust"
      done
    } | as_owner tee "$data/pg_hba.conf" >/dev/null
    echo "include_if_exists = 'vnum.conf'" | as_owner tee -a "$data/postgresql.conf" >/dev/null
  fi

  # Written on every start, so a restart may change port, addresses and settings.
  {
    echo "port = $port"
    echo "listen_addresses = '$listen'"
    echo "unix_socket_directories = '$dir/sock'"
    echo "wal_level = logical"
    echo "max_replication_slots = 20"
    echo "max_wal_senders = 20"
    echo "max_slot_wal_keep_size = 1GB"
    echo "log_replication_commands = on"
    local s
    for s in "${settings[@]}"; do echo "${s%%=*} = '${s#*=}'"; done
  } | as_owner tee "$data/vnum.conf" >/dev/null

  as_owner "$bin/pg_ctl" -D "$data" -l "$dir/log" -w -t 60 start >/dev/null ||
    { tail -n 20 "$dir/log" >&2 || true; fail "the server did not start (port $port taken?)"; }
}

cmd_stop() {
  (($# >= 1)) || usage "stop needs <dir>"
  local dir=$1 mode=${2:-fast}
  [[ $mode == fast || $mode == immediate ]] || usage "stop mode is fast or immediate"
  [[ -f $dir/data/postmaster.pid ]] || return 0
  as_owner "$bin/pg_ctl" -D "$dir/data" -m "$mode" -w -t 60 stop >/dev/null
}

cmd_remove() {
  (($# == 1)) || usage "remove needs <dir>"
  local dir=$1
  [[ -d $dir ]] || return 0
  [[ -f $dir/$marker ]] || fail "$dir was not made by this script: not removing it"
  cmd_stop "$dir" immediate || true
  rm -rf --one-file-system "$dir"
}

(($# >= 1)) || usage "which command?"
command=$1
shift
case $command in
  install) cmd_install "$@" ;;
  start) cmd_start "$@" ;;
  stop) cmd_stop "$@" ;;
  remove) cmd_remove "$@" ;;
  *) usage "unknown command $command" ;;
esac
