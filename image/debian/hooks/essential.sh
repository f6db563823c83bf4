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
# openssh-server's setup generates host keys only where none exist, and every image drops its host
# keys before it ships (src/image/finish.ts), to be made on the Pi at first boot: placeholders save
# the RSA key generation under emulation. customize.sh removes them.
mkdir -p "$root/etc/ssh"
for t in rsa ecdsa ed25519; do : > "$root/etc/ssh/ssh_host_${t}_key"; done
