#!/bin/sh
# mmdebstrap --essential-hook: runs after the essential set, before the other packages.
# $1 is the root being built; SYNCPI_RECIPE is this directory.
set -eu
root=$1
mkdir -p "$root/boot/firmware" "$root/etc/initramfs-tools/conf.d"
chroot "$root" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs
install -m 0755 "$SYNCPI_RECIPE/hooks/update-initramfs.deferred" "$root/usr/sbin/update-initramfs"
install -m 0644 "$SYNCPI_RECIPE/initramfs.conf" "$root/etc/initramfs-tools/conf.d/syncpi.conf"
grep -v '^#' "$SYNCPI_RECIPE/initramfs-modules" | grep . > "$root/etc/initramfs-tools/modules"
