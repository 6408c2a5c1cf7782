#!/bin/bash
# Runs once, when the official MariaDB image initialises the replica's empty data folder (mounted
# on db-replica only): replicate from the primary (GTID, MariaDB's default for CHANGE MASTER since
# 10.10), as the image's MARIADB_MASTER_HOST would, but with the replication password read from a
# compose secret here. Given to the image (MARIADB_REPLICATION_PASSWORD or its _FILE variant), the
# password would stay in the server's environment for its whole life; here it passes through
# this script's stdin to the client, never an environment variable or a command line.
#   REPLICATION_PRIMARY_HOST, REPLICATION_PRIMARY_PORT (3306), REPLICATION_USER,
#   REPLICATION_PASSWORD_FILE (e.g. /run/secrets/db_replication_password)
set -euo pipefail
: "${REPLICATION_PRIMARY_HOST:?set REPLICATION_PRIMARY_HOST}" "${REPLICATION_USER:?set REPLICATION_USER}"
password="$(<"${REPLICATION_PASSWORD_FILE:?set REPLICATION_PASSWORD_FILE}")"
[ -n "$password" ] || { echo "$0: $REPLICATION_PASSWORD_FILE is empty" >&2; exit 1; }
# SQL string literal: backslash and quote escaped.
quote() { local s="${1//\\/\\\\}"; printf "'%s'" "${s//\'/\\\'}"; }
MYSQL_PWD="${MARIADB_ROOT_PASSWORD:-}" mariadb --protocol=socket -uroot <<SQL
CHANGE MASTER TO MASTER_HOST=$(quote "$REPLICATION_PRIMARY_HOST"), MASTER_PORT=${REPLICATION_PRIMARY_PORT:-3306}, MASTER_USER=$(quote "$REPLICATION_USER"), MASTER_PASSWORD=$(quote "$password"), MASTER_CONNECT_RETRY=10;
START REPLICA;
SQL
