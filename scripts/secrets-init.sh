#!/bin/bash
# Creates the secret files compose.yaml mounts (`npm run secrets:init [-- DIR]`, default ./secrets):
# random values from `openssl rand`, and what is derived from them (MariaDB password hashes,
# HAProxy's stats userlist with a SHA-512 crypt hash). A file that exists is never overwritten, so
# running it again only adds what is missing. It prints the names it wrote, never a value.
#
# Modes: DIR 0700 (only its owner on the host reaches the files), each file 0644. compose bind-
# mounts a `file:` secret as it is (owner and mode kept; uid/gid/mode need swarm), and the
# containers read them as different users: node (uid 1000), HAProxy's haproxy, Prometheus's
# nobody, MariaDB's mysql (its init scripts). docs/deployment.md#secrets says more.
set -euo pipefail

die() {
  echo "secrets-init: $*" >&2
  exit 1
}

[ $# -le 1 ] || die "usage: secrets-init.sh [DIR] (default ./secrets)"
dir="${1:-./secrets}"
command -v openssl >/dev/null || die "openssl is required (apt-get install openssl)"

if [ -e "$dir" ] && [ ! -d "$dir" ]; then die "$dir exists and is not a folder"; fi
if [ ! -d "$dir" ]; then
  parent="$(dirname -- "$dir")"
  [ -d "$parent" ] || die "cannot create $dir: its parent folder $parent does not exist"
  mkdir -m 0700 -- "$dir" 2>/dev/null || die "cannot create $dir (permission denied?)"
  echo "secrets-init: created $dir (mode 0700)"
fi
[ -w "$dir" ] && [ -x "$dir" ] || die "$dir is not writable"
mode="$(stat -c %a -- "$dir")"
if [ "$mode" != 700 ]; then
  echo "secrets-init: warning: $dir has mode $mode; 0700 keeps other users of this host out (chmod 700 $dir)" >&2
fi

made=0
# write NAME VALUE: creates DIR/NAME holding VALUE (no trailing newline), never replacing a file.
write() {
  local file="$dir/$1"
  # noclobber: the shell opens the file with O_EXCL, so an existing file is never touched.
  (
    set -o noclobber
    umask 022
    printf '%s' "$2" >"$file"
  ) 2>/dev/null || die "cannot write $file"
  chmod 0644 -- "$file"
  echo "secrets-init: wrote $file"
  made=$((made + 1))
}
random() { openssl rand -hex 32; }
# MariaDB's mysql_native_password hash of $1: '*' and SHA1(SHA1(password)) in upper-case hex.
mariadb_hash() {
  printf '*%s' "$(printf '%s' "$1" | openssl dgst -sha1 -binary | openssl dgst -sha1 -r | cut -c1-40 | tr a-f A-F)"
}
stats_userlist() {
  printf "userlist stats_users\n    user %s password '%s'\n" "${STATS_USER:-admin}" "$(openssl passwd -6 -stdin <<<"$1")"
}

# A password file and a file derived from it (`derive FUNCTION`): the derived one is written
# from the password when missing; a derived file without its password cannot be checked.
pair() {
  local name="$1" derived="$2" derive="$3"
  if [ ! -e "$dir/$name" ] && [ -e "$dir/$derived" ]; then
    die "$dir/$derived exists without $dir/$name: restore $name, or remove $derived to make both anew"
  fi
  [ -e "$dir/$name" ] || write "$name" "$(random)"
  # The derived file ends in a newline (HAProxy reads the userlist as a config file).
  [ -e "$dir/$derived" ] || write "$derived" "$("$derive" "$(<"$dir/$name")")"$'\n'
}

for name in admin_token metrics_token; do
  [ -e "$dir/$name" ] || write "$name" "$(random)"
done
pair db_root_password db_root_password_hash mariadb_hash
pair db_app_password db_app_password_hash mariadb_hash
pair db_replication_password db_replication_password_hash mariadb_hash
pair haproxy_stats_password haproxy_stats_userlist stats_userlist

if [ "$made" = 0 ]; then
  echo "secrets-init: $dir already holds every secret; nothing written"
fi
