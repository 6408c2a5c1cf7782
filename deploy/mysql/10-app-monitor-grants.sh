#!/bin/bash
# Runs once, when the official MariaDB image initialises an empty data folder (primary and
# replica alike). The service's probes read replica status and wait for GTID positions:
# SHOW REPLICA STATUS needs SLAVE MONITOR (MariaDB 10.5+). The account itself is created by
# the image from MARIADB_USER / MARIADB_PASSWORD.
set -euo pipefail
mariadb -uroot -p"${MARIADB_ROOT_PASSWORD}" <<SQL
GRANT SLAVE MONITOR, REPLICATION CLIENT ON *.* TO '${MARIADB_USER}'@'%';
SQL
