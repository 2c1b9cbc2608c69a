#!/usr/bin/env bash
# Build a minimal Debian base image with Python locally, without any image registry.
#
#   sudo docker/build-base-image.sh            # makes django-entrypoint-base:bookworm
#   docker build --build-arg BASE_IMAGE=django-entrypoint-base:bookworm ...
#
# The Dockerfile's default base is an official slim Python image; this script is for machines
# that reach Debian's package mirror but no image registry (the container test and CI here).
# It debootstraps a minbase rootfs with Debian's python3 and python3-venv, strips docs and apt
# lists, and `docker import`s it. Nothing is done when the image already exists; the rootfs
# tarball is kept in BASE_IMAGE_CACHE so a wiped engine re-imports it in seconds.
#
# Environment:
#   BASE_IMAGE_TAG    image to make                (default django-entrypoint-base:bookworm)
#   DEBIAN_SUITE      Debian release               (default bookworm)
#   DEBIAN_MIRROR     mirror URL                   (default: the first one apt is configured
#                                                   with, else debootstrap's own default)
#   BASE_IMAGE_CACHE  where the rootfs tarball is kept (default /var/cache/django-entrypoint)
# Needs root, debootstrap and a running Docker engine.
set -euo pipefail

tag=${BASE_IMAGE_TAG:-django-entrypoint-base:bookworm}
suite=${DEBIAN_SUITE:-bookworm}
cache=${BASE_IMAGE_CACHE:-/var/cache/django-entrypoint}
tarball="$cache/rootfs-$suite.tar"

if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "build-base-image: $tag exists"
    exit 0
fi

apt_mirror() {
    # The first non-security archive apt uses: deb822 sources first, then the one-line format.
    {
        grep -hE '^URIs:' /etc/apt/sources.list.d/*.sources 2>/dev/null | awk '{print $2}'
        grep -hE '^deb ' /etc/apt/sources.list 2>/dev/null | awk '{print $2}'
    } | grep -v -- '-security' | head -n 1 || true
}

started=$(date +%s)
if [ ! -s "$tarball" ]; then
    [ "$(id -u)" = 0 ] || { echo "build-base-image: debootstrap needs root" >&2; exit 1; }
    command -v debootstrap >/dev/null || {
        echo "build-base-image: debootstrap is missing; apt-get install debootstrap" >&2
        exit 1
    }
    mirror=${DEBIAN_MIRROR:-$(apt_mirror)}
    rootfs=$(mktemp -d /var/tmp/django-entrypoint-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs"' EXIT
    # mktemp makes the folder 0700; as the image's / it would lock every non-root user out.
    chmod 0755 "$rootfs"
    echo "build-base-image: debootstrap $suite into $rootfs"
    # minbase: only Essential packages and apt; python3-venv brings ensurepip for the builder.
    debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
        "$suite" "$rootfs" ${mirror:+"$mirror"} >"$rootfs.log" 2>&1 || {
        tail -n 20 "$rootfs.log" >&2
        exit 1
    }
    rm -f "$rootfs.log"
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin \
        "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/usr/share/doc/* \
        "$rootfs"/usr/share/man/* "$rootfs"/usr/share/info/*
    mkdir -p "$cache"
    tar -C "$rootfs" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
fi

docker import \
    --change 'ENV LANG=C.UTF-8' \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["python3"]' \
    "$tarball" "$tag" >/dev/null
echo "build-base-image: $tag made in $(( $(date +%s) - started ))s ($(du -h "$tarball" | cut -f1) rootfs)"
