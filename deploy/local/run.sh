#!/usr/bin/env bash
# Run all of Rapport on this machine in development mode (`make run`):
# make sure Postgres answers at RAPPORT_DATABASE_URL (starting a private
# cluster if needed, see postgres.sh), apply the migrations, print where to
# reach it with a development token and a curl line, then serve in the
# foreground until Ctrl-C (SIGINT) or SIGTERM, which stop it cleanly.
#
# RAPPORT_DEV=true: requests are checked against a development signing key
# kept in RAPPORT_DATA_DIR/dev-keys, which `rapport token` mints tokens with.
# Every other RAPPORT_* variable is passed through (see
# `RAPPORT_DEV=true bin/rapport serve -print-config`).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
rapport=${RAPPORT_BIN:-bin/rapport}
[[ -x $rapport ]] || { echo "run: $rapport is missing; run make build first" >&2; exit 1; }

export RAPPORT_DEV=true
export RAPPORT_DATABASE_URL=${RAPPORT_DATABASE_URL:-postgres://postgres@127.0.0.1:5432/rapport?sslmode=disable}

deploy/local/postgres.sh ensure RAPPORT_DATABASE_URL
"$rapport" migrate

# Addresses as the binary resolves them (defaults or RAPPORT_*_ADDR).
config=$("$rapport" serve -print-config)
addr() { sed -n "s/.*\"$1\": *\"\([^\"]*\)\".*/\1/p" <<<"$config"; }
grpc=$(addr grpc_addr)
http=$(addr http_addr)
# A wildcard listen address is reached through loopback.
case ${http%:*} in "" | 0.0.0.0 | "[::]") http=127.0.0.1:${http##*:} ;; esac
# Busy ports fail serve anyway; say so before printing how to reach it.
for a in "$http" "$grpc"; do
	h=${a%:*} h=${h#[} h=${h%]}
	[[ $h == 0.0.0.0 || $h == :: || -z $h ]] && h=127.0.0.1
	if (exec 3<>"/dev/tcp/$h/${a##*:}") 2>/dev/null; then
		echo "run: $a is already in use (another make run?); stop that or set RAPPORT_HTTP_ADDR / RAPPORT_GRPC_ADDR" >&2
		exit 2
	fi
done
token=$("$rapport" token)

cat <<EOF

Rapport (development mode)
  REST     http://$http   (/openapi.json /healthz /readyz /metrics)
  gRPC     $grpc   (rapport.customer.v1.CustomerService)
  Data     ${RAPPORT_DATA_DIR:-.data}   (JetStream, dev signing key)

Development token (admin, 12 h; others: $rapport token -h):
  export TOKEN=$token

Try:
  curl -sS -X POST http://$http/v1/customers -H "Authorization: Bearer \$TOKEN" \\
    -H 'Content-Type: application/json' -d '{"displayName":"Ada Lovelace","email":"ada@example.com","tags":["vip"]}'

Ctrl-C stops it.

EOF

exec "$rapport" serve
