#!/bin/bash
# Stand-in for the official MariaDB image's entrypoint (see README.md): initialises an empty
# /var/lib/mysql from MARIADB_* variables (or their *_FILE variants), runs
# /docker-entrypoint-initdb.d/*.sh|*.sql once, then execs mariadbd with the arguments given.
set -euo pipefail

# VAR from VAR or from the file VAR_FILE names, as the official image does (both: an error).
# Like the official image, the value is exported and stays in mariadbd's environment: a
# password given through *_FILE is in the server's /proc/PID/environ (compose.yaml therefore
# passes hashes, and the replica's replication password through an init script).
file_env() {
  local var="$1" file="${1}_FILE" value="${2:-}"
  if [ -n "${!var:-}" ] && [ -n "${!file:-}" ]; then
    echo "entrypoint: both $var and $file are set" >&2
    exit 1
  fi
  if [ -n "${!var:-}" ]; then value="${!var}"; elif [ -n "${!file:-}" ]; then value="$(<"${!file}")"; fi
  export "$var"="$value"
  unset "$file"
}
sql_string() { local s="${1//\\/\\\\}"; printf "'%s'" "${s//\'/\\\'}"; }

if [ "${1:0:1}" = '-' ]; then set -- mariadbd "$@"; fi
if [ "$1" != mariadbd ] && [ "$1" != mysqld ]; then exec "$@"; fi
shift

# Read on every start, before the data folder is looked at, as the official docker_setup_env.
for v in MARIADB_ROOT_PASSWORD MARIADB_ROOT_PASSWORD_HASH MARIADB_DATABASE MARIADB_USER \
  MARIADB_PASSWORD MARIADB_PASSWORD_HASH MARIADB_REPLICATION_USER MARIADB_REPLICATION_PASSWORD \
  MARIADB_REPLICATION_PASSWORD_HASH MARIADB_MASTER_HOST; do
  file_env "$v"
done

if [ ! -d /var/lib/mysql/mysql ]; then
  [ -n "$MARIADB_ROOT_PASSWORD" ] || [ -n "$MARIADB_ROOT_PASSWORD_HASH" ] ||
    { echo 'entrypoint: MARIADB_ROOT_PASSWORD or MARIADB_ROOT_PASSWORD_HASH is required' >&2; exit 1; }
  if [ -n "$MARIADB_ROOT_PASSWORD" ] && [ -n "$MARIADB_ROOT_PASSWORD_HASH" ]; then
    echo 'entrypoint: MARIADB_ROOT_PASSWORD and MARIADB_ROOT_PASSWORD_HASH are exclusive' >&2; exit 1
  fi
  echo 'entrypoint: initialising /var/lib/mysql'
  chown mysql:mysql /var/lib/mysql
  mariadb-install-db --user=mysql --datadir=/var/lib/mysql --skip-test-db \
    --auth-root-authentication-method=normal >/dev/null
  mariadbd --user=mysql "$@" --skip-networking --socket=/run/mysqld/mysqld.sock &
  temp=$!
  for _ in $(seq 60); do mariadb-admin --protocol=socket -uroot ping >/dev/null 2>&1 && break; sleep 0.5; done
  # IDENTIFIED BY 'password' or IDENTIFIED BY PASSWORD 'hash' (mysql_native_password).
  if [ -n "$MARIADB_ROOT_PASSWORD_HASH" ]; then root="PASSWORD $(sql_string "$MARIADB_ROOT_PASSWORD_HASH")"; else root=$(sql_string "$MARIADB_ROOT_PASSWORD"); fi
  health=$(sql_string "$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')")
  grants="USAGE${MARIADB_HEALTHCHECK_GRANTS:+, $MARIADB_HEALTHCHECK_GRANTS}"
  {
    # System users stay out of the binlog (a replica makes its own), as in the official image.
    echo "SET @orig_sql_log_bin=@@SESSION.SQL_LOG_BIN; SET @@SESSION.SQL_LOG_BIN=0;"
    # With a hash, root@localhost keeps no password until the init scripts have run (as the
    # official image: they connect as root over the socket), then gets the hash.
    if [ -z "$MARIADB_ROOT_PASSWORD_HASH" ]; then echo "ALTER USER root@localhost IDENTIFIED BY $root;"; fi
    echo "CREATE USER root@'%' IDENTIFIED BY $root; GRANT ALL ON *.* TO root@'%' WITH GRANT OPTION;"
    for host in localhost 127.0.0.1 ::1; do
      echo "CREATE USER healthcheck@'$host' IDENTIFIED BY $health; GRANT $grants ON *.* TO healthcheck@'$host';"
    done
    echo "SET @@SESSION.SQL_LOG_BIN=@orig_sql_log_bin;"
    if [ -n "$MARIADB_DATABASE" ]; then echo "CREATE DATABASE IF NOT EXISTS \`$MARIADB_DATABASE\`;"; fi
    if [ -n "$MARIADB_USER" ] && { [ -n "$MARIADB_PASSWORD" ] || [ -n "$MARIADB_PASSWORD_HASH" ]; }; then
      if [ -n "$MARIADB_PASSWORD_HASH" ]; then
        echo "CREATE USER '$MARIADB_USER'@'%' IDENTIFIED BY PASSWORD $(sql_string "$MARIADB_PASSWORD_HASH");"
      else
        echo "CREATE USER '$MARIADB_USER'@'%' IDENTIFIED BY $(sql_string "$MARIADB_PASSWORD");"
      fi
      if [ -n "$MARIADB_DATABASE" ]; then echo "GRANT ALL ON \`$MARIADB_DATABASE\`.* TO '$MARIADB_USER'@'%';"; fi
    fi
    if [ -n "$MARIADB_REPLICATION_USER" ]; then
      repl=$(sql_string "$MARIADB_REPLICATION_PASSWORD")
      if [ -z "$MARIADB_MASTER_HOST" ]; then
        if [ -n "$MARIADB_REPLICATION_PASSWORD_HASH" ]; then
          echo "CREATE USER '$MARIADB_REPLICATION_USER'@'%' IDENTIFIED BY PASSWORD $(sql_string "$MARIADB_REPLICATION_PASSWORD_HASH");"
        else
          echo "CREATE USER '$MARIADB_REPLICATION_USER'@'%' IDENTIFIED BY $repl;"
        fi
        echo "GRANT REPLICATION REPLICA ON *.* TO '$MARIADB_REPLICATION_USER'@'%';"
      else
        echo "CHANGE MASTER TO MASTER_HOST=$(sql_string "$MARIADB_MASTER_HOST"), MASTER_PORT=${MARIADB_MASTER_PORT:-3306}, MASTER_USER=$(sql_string "$MARIADB_REPLICATION_USER"), MASTER_PASSWORD=$repl, MASTER_CONNECT_RETRY=10;"
        echo "START REPLICA;"
      fi
    fi
  } | mariadb --protocol=socket -uroot
  printf '[mariadb-client]\nprotocol=tcp\nhost=127.0.0.1\nport=3306\nuser=healthcheck\npassword=%s\n' \
    "${health//\'/}" >/var/lib/mysql/.my-healthcheck.cnf
  chown mysql:mysql /var/lib/mysql/.my-healthcheck.cnf
  chmod 0600 /var/lib/mysql/.my-healthcheck.cnf
  # The official image runs them as the mysql user (it has switched to it with gosu by then):
  # an executable script here too, so a secret file it reads must be readable by mysql.
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) echo "entrypoint: running $f"; if [ -x "$f" ]; then setpriv --reuid=mysql --regid=mysql --init-groups "$f"; else . "$f"; fi ;;
      *.sql) echo "entrypoint: running $f"; MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb --protocol=socket -uroot <"$f" ;;
      *) ;;
    esac
  done
  if [ -n "$MARIADB_ROOT_PASSWORD_HASH" ]; then
    echo "SET @@SESSION.SQL_LOG_BIN=0; SET PASSWORD FOR root@localhost = $(sql_string "$MARIADB_ROOT_PASSWORD_HASH");" |
      mariadb --protocol=socket -uroot
  fi
  MYSQL_PWD="$MARIADB_ROOT_PASSWORD" mariadb-admin --protocol=socket -uroot shutdown
  wait "$temp" || true
  echo 'entrypoint: initialised'
fi
# As the official image: whatever file_env read stays exported into the server's environment.
exec mariadbd --user=mysql "$@"
