#!/usr/bin/env bash
# Make the Debian base image the Dockerfiles start from (default tag: debian:bookworm-slim) without
# a container registry: debootstrap a minimal Debian bookworm from the Debian mirror and
# `docker import` it under that tag. Where a registry is reachable you do not need this: the
# Dockerfiles pull the official debian:bookworm-slim.
#
#   deploy/docker/build-base-image.sh [--force] [TAG]
#
# Environment: DOCKER (client, default docker), DEBIAN_MIRROR (default http://deb.debian.org/debian),
# DEBIAN_SECURITY_MIRROR (default http://deb.debian.org/debian-security), DEBIAN_SUITE (bookworm),
# EARMARK_DEPLOY_CACHE (folder keeping the root file system tarball between runs,
# default /var/cache/earmark-deploy).
#
# The image is a `minbase` Debian (apt, dpkg, bash, coreutils...) with the same apt sources as the
# official image (the release, its updates and security), so `apt-get install` in the Dockerfiles
# behaves the same on both.
set -euo pipefail

force=0
if [[ "${1:-}" == "--force" ]]; then
  force=1
  shift
fi
TAG="${1:-debian:bookworm-slim}"
DOCKER="${DOCKER:-docker}"
SUITE="${DEBIAN_SUITE:-bookworm}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
CACHE="${EARMARK_DEPLOY_CACHE:-/var/cache/earmark-deploy}"
TARBALL="$CACHE/$SUITE-minbase-rootfs.tar"

log() { printf '[base-image] %s\n' "$*" >&2; }

if [[ $force -eq 0 ]] && $DOCKER image inspect "$TAG" >/dev/null 2>&1; then
  log "$TAG already present: $($DOCKER image inspect -f '{{.Id}} {{.Created}}' "$TAG")"
  exit 0
fi

mkdir -p "$CACHE"
# Reuse a tarball younger than a week (security updates arrive through apt in the builds anyway).
if [[ $force -eq 1 || ! -s "$TARBALL" || -n "$(find "$TARBALL" -mtime +7 2>/dev/null)" ]]; then
  command -v debootstrap >/dev/null || {
    log "debootstrap is not installed (apt-get install debootstrap)"
    exit 1
  }
  rootfs="$(mktemp -d "${TMPDIR:-/tmp}/earmark-rootfs.XXXXXX")"
  trap 'rm -rf "$rootfs"' EXIT
  log "debootstrap --variant=minbase $SUITE from $MIRROR (takes 1-3 minutes)"
  start=$SECONDS
  debootstrap --variant=minbase "$SUITE" "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || {
    tail -n 30 "$rootfs.log" >&2
    rm -f "$rootfs.log"
    log "debootstrap failed"
    exit 1
  }
  rm -f "$rootfs.log"
  # Same sources as the official image (deb822 format), nothing cached in the image.
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $MIRROR
Suites: $SUITE $SUITE-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $SECURITY_MIRROR
Suites: $SUITE-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # Keep images small as the official slim image does: no recommends, no docs or man pages.
  cat >"$rootfs/etc/apt/apt.conf.d/docker-clean" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
EOF
  cat >"$rootfs/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/cache/apt/archives/*.deb \
    "$rootfs"/usr/share/doc/* "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/* "$rootfs"/var/log/*.log \
    "$rootfs"/tmp/* "$rootfs"/root/.bash_history
  : >"$rootfs/etc/machine-id"
  tar --numeric-owner -C "$rootfs" -cf "$TARBALL.tmp" .
  mv "$TARBALL.tmp" "$TARBALL"
  log "root file system ready in $((SECONDS - start)) s: $(du -h "$TARBALL" | cut -f1)"
else
  log "reusing $TARBALL"
fi

$DOCKER import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'CMD ["bash"]' \
  --message "debootstrap --variant=minbase $SUITE ($MIRROR)" \
  "$TARBALL" "$TAG" >/dev/null
log "imported as $TAG ($($DOCKER image inspect -f '{{.Size}}' "$TAG" | awk '{printf "%.0f MB", $1/1e6}'))"
