#!/usr/bin/env bash
# Builds local stand-ins for the base images the Dockerfile names
# (docker.io/library/node:20-bookworm and node:20-bookworm-slim), for machines
# that can reach Debian's mirror and the npm registry but no image registry.
#
# One rootfs stands in for both tags: Debian bookworm (debootstrap, minbase)
# with python3/make/g++ for the build stage, plus this machine's Node and npm
# and the `node` user (uid 1000) the official images have. The slim stand-in
# is therefore bigger than the real slim image; the Dockerfile does not notice.
#
# The rootfs tarball is cached in $ZIMCHAT_DOCKER_CACHE (default .cache/docker
# in the repository, git-ignored): a second run only re-imports it.
# Usage: scripts/docker-stand-in-base.sh   (root, needs debootstrap and buildah)
set -euo pipefail
cd "$(dirname "$0")/.."
cache="${ZIMCHAT_DOCKER_CACHE:-$PWD/.cache/docker}"
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
node_bin="$(command -v node)"
node_prefix="$(dirname "$(dirname "$(readlink -f "$node_bin")")")"
node_version="$("$node_bin" --version)"
tarball="$cache/bookworm-node-${node_version}.tar"
mkdir -p "$cache"

if [ ! -s "$tarball" ]; then
  rootfs="$cache/rootfs.tmp"
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include=ca-certificates,python3,make,g++ bookworm "$rootfs" "$mirror" >"$cache/debootstrap.log" 2>&1 \
    || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
  install -m 0755 "$node_bin" "$rootfs/usr/local/bin/node"
  mkdir -p "$rootfs/usr/local/lib/node_modules" "$rootfs/usr/local/include"
  cp -a "$node_prefix/lib/node_modules/npm" "$rootfs/usr/local/lib/node_modules/npm"
  ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$rootfs/usr/local/bin/npm"
  ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$rootfs/usr/local/bin/npx"
  # Headers for native addons (better-sqlite3): node-gyp would otherwise download them from nodejs.org.
  cp -a "$node_prefix/include/node" "$rootfs/usr/local/include/node"
  chroot "$rootfs" /usr/sbin/groupadd --gid 1000 node
  chroot "$rootfs" /usr/sbin/useradd --uid 1000 --gid node --shell /bin/bash --create-home node
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin
  tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  rm -rf "$rootfs"
fi

ctr="$(buildah from scratch)"
trap 'buildah rm "$ctr" >/dev/null 2>&1 || true' EXIT
buildah add --quiet "$ctr" "$tarball" / >/dev/null
# This machine's CA bundle, which may hold a TLS-intercepting proxy's CA for the npm registry.
host_ca=/etc/ssl/certs/ca-certificates.crt
ca_env=()
if [ -s "$host_ca" ]; then
  buildah copy --quiet "$ctr" "$host_ca" /etc/ssl/certs/ca-certificates.crt >/dev/null
  ca_env=(--env NODE_EXTRA_CA_CERTS=/etc/ssl/certs/ca-certificates.crt)
fi
buildah config "${ca_env[@]}" \
  --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env NODE_VERSION="${node_version#v}" \
  --env npm_config_nodedir=/usr/local \
  --cmd node "$ctr"
previous="$(buildah images --quiet --no-trunc docker.io/library/node:20-bookworm 2>/dev/null || true)"
buildah commit --quiet "$ctr" docker.io/library/node:20-bookworm >/dev/null
buildah tag docker.io/library/node:20-bookworm docker.io/library/node:20-bookworm-slim
# The stand-in made by the previous run, now untagged.
if [ -n "$previous" ]; then buildah rmi "$previous" >/dev/null 2>&1 || true; fi
echo "stand-in base images: docker.io/library/node:20-bookworm, docker.io/library/node:20-bookworm-slim (from $tarball)"
