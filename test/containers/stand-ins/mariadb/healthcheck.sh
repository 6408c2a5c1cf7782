#!/bin/bash
# Stand-in for the official MariaDB image's healthcheck.sh, the options compose.yaml uses, read
# in order as the original does: --connect, --innodb_initialized, and --replication after its
# --replication_io / --replication_sql / --replication_seconds_behind_master=N settings.
# It connects over TCP as the healthcheck user the entrypoint made (/var/lib/mysql/.my-healthcheck.cnf).
set -uo pipefail
sql() { mariadb --defaults-extra-file=/var/lib/mysql/.my-healthcheck.cnf -B -N -e "$1"; }
io=0 sqlthread=0 behind=
for arg in "$@"; do
  case "$arg" in
    --connect) sql 'SELECT 1' >/dev/null || exit 1 ;;
    --innodb_initialized)
      [ "$(sql "SELECT 1 FROM information_schema.ENGINES WHERE engine='InnoDB' AND support IN ('YES','DEFAULT','ENABLED')")" = 1 ] || exit 1 ;;
    --replication_io) io=1 ;;
    --replication_sql) sqlthread=1 ;;
    --replication_seconds_behind_master=*) behind="${arg#*=}" ;;
    --replication)
      status="$(mariadb --defaults-extra-file=/var/lib/mysql/.my-healthcheck.cnf -e 'SHOW REPLICA STATUS\G')" || exit 1
      [ -n "$status" ] || exit 1
      [ $io = 0 ] || grep -q 'Slave_IO_Running: Yes' <<<"$status" || exit 1
      [ $sqlthread = 0 ] || grep -q 'Slave_SQL_Running: Yes' <<<"$status" || exit 1
      if [ -n "$behind" ]; then
        seconds="$(sed -n 's/^ *Seconds_Behind_Master: //p' <<<"$status")"
        [[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -le "$behind" ] || exit 1
      fi ;;
    *) echo "healthcheck.sh: $arg is not emulated by this stand-in" >&2; exit 1 ;;
  esac
done
exit 0
