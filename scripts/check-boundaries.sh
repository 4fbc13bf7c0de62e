#!/usr/bin/env bash
# The trust tiers depend one way only (docs/architecture.md §1): the agent and the plugin never link a
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
check sb-agent "$kube_client" "Kubernetes client"
check sb-core "$kube_client" "Kubernetes client"

# One TLS stack: rustls 0.23 with the ring provider. A second provider (aws-lc-rs) leaves
# rustls without a default and it panics on first use; OpenSSL or an old rustls means a
# second TLS implementation in the binary.
tls=$(cargo tree --workspace -e normal --prefix none --no-dedupe 2>/dev/null | sort -u |
  grep -E '^(aws-lc-rs|aws-lc-sys|aws-lc-fips-sys|openssl|openssl-sys|native-tls) |^rustls v0\.(1|20|21|22)\.' || true)
if [[ -n "$tls" ]]; then
  echo "boundary violated: a second TLS implementation or crypto provider is linked:" >&2
  sed 's/^/    /' <<<"$tls" >&2
  fail=1
else
  echo "ok: one TLS stack (rustls 0.23 + ring)"
fi
exit $fail
