#!/usr/bin/env bash
# Builds local stand-ins for the base images the Dockerfile names (read from
# its FROM lines with its ARG NODE_VERSION default, or
# $ZIMCHAT_IMAGE_NODE_VERSION to match a `--build-arg NODE_VERSION=...` build:
# docker.io/library/node:24-bookworm and node:24-bookworm-slim by default),
# for machines that can reach Debian's mirror and the npm registry but no
# image registry.
#
# One rootfs stands in for both tags: Debian bookworm (debootstrap, minbase)
# with python3/make/g++ for the build stage, plus this machine's Node and npm
# and the `node` user (uid 1000) the official images have. The slim stand-in
# is therefore bigger than the real slim image, and its Node is this machine's
# whatever line the tag names; the Dockerfile does not notice.
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

# The base image names, as the Dockerfile spells them after ARG substitution.
dockerfile_node="$(sed -n 's/^ARG NODE_VERSION=\([^[:space:]]*\).*/\1/p' Dockerfile | head -n 1)"
image_node="${ZIMCHAT_IMAGE_NODE_VERSION:-$dockerfile_node}"
mapfile -t bases < <(sed -n 's/^FROM[[:space:]]\{1,\}\(--[^[:space:]]*[[:space:]]\{1,\}\)*\([^[:space:]]*\).*/\2/p' Dockerfile \
  | sed -e "s/\${NODE_VERSION}/$image_node/g" -e "s/\$NODE_VERSION/$image_node/g" | awk '!seen[$0]++')
if [ "${#bases[@]}" -eq 0 ]; then echo "no FROM line in the Dockerfile" >&2; exit 1; fi
for base in "${bases[@]}"; do
  case "$base" in *'$'*) echo "cannot resolve the base image name $base" >&2; exit 1 ;; esac
done

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
previous="$(buildah images --quiet --no-trunc "${bases[0]}" 2>/dev/null || true)"
buildah commit --quiet "$ctr" "${bases[0]}" >/dev/null
for base in "${bases[@]:1}"; do buildah tag "${bases[0]}" "$base"; done
# The stand-in made by the previous run, now untagged.
if [ -n "$previous" ]; then buildah rmi "$previous" >/dev/null 2>&1 || true; fi
echo "stand-in base images: ${bases[*]} (from $tarball)"
