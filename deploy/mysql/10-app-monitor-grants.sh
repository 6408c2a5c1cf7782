#!/bin/bash
# Runs once, when the official MariaDB image initialises the primary's empty data folder (mounted
# on db-primary only). The service's probes read replica status and wait for GTID positions:
# SHOW REPLICA STATUS needs SLAVE MONITOR (MariaDB 10.5+). The account itself is created by the
# image from MARIADB_USER / MARIADB_PASSWORD_HASH_FILE. The binlog is on while this runs, so this
# GRANT, like the image's CREATE USER, replicates: the replica gets the account and its grants
# from the primary and must not create them itself (a second CREATE USER stops replication, 1396).
# Over the socket as root: with MARIADB_ROOT_PASSWORD_HASH(_FILE) root@localhost has no password
# until the init scripts have run; with MARIADB_ROOT_PASSWORD, MYSQL_PWD passes it (environment of
# this short-lived client, never its command line).
set -euo pipefail
MYSQL_PWD="${MARIADB_ROOT_PASSWORD:-}" mariadb --protocol=socket -uroot <<SQL
GRANT SLAVE MONITOR, REPLICATION CLIENT ON *.* TO '${MARIADB_USER}'@'%';
SQL
