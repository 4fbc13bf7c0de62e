#!/usr/bin/env bash
# The trust tiers depend one way only (DESIGN.md §7): the agent and the plugin never link a
# database driver, the agent never a Kubernetes client, core neither. Checked on the normal
# (non-dev) dependency graph with `cargo tree`.
set -euo pipefail
cd "$(dirname "$0")/.."

db_crates='^(sqlx|sqlx-core|sqlx-postgres|sqlx-sqlite|sqlx-mysql|postgres|tokio-postgres|postgres-types|rusqlite|libsqlite3-sys|redis|diesel|sea-orm|mysql|mysql_async) '
kube_client='^(kube-client|kube-runtime) '

fail=0
check() { # crate, pattern, what
  local deps
  deps=$(cargo tree -p "$1" -e normal --prefix none --no-dedupe 2>/dev/null | sort -u)
  local hits
  hits=$(grep -E "$2" <<<"$deps" || true)
  if [[ -n "$hits" ]]; then
    echo "boundary violated: $1 depends on $3:" >&2
    sed 's/^/    /' <<<"$hits" >&2
    fail=1
  else
    echo "ok: $1 has no $3 in its dependencies"
  fi
}

check sb-agent "$db_crates" "database driver"
check kubectl-sb "$db_crates" "database driver"
check sb-core "$db_crates" "database driver"
check sb-agent "$kube_client" "a Kubernetes client"
check sb-core "$kube_client" "a Kubernetes client"
exit $fail
