#!/bin/sh
# mmdebstrap --customize-hook: runs once every package is installed.
# $1 is the root being built; SYNCPI_RECIPE is this directory. The config's own packages come
# later, in a layer of their own (src/image/build.ts).
set -eu
root=$1
f=$SYNCPI_RECIPE/files

# the build's apt and dpkg options (no debconf pre-scan, the native tools' PATH, no syncs) must
# not stay in the image
rm -f "$root/etc/apt/apt.conf.d/99mmdebstrap" "$root/etc/dpkg/dpkg.cfg.d/syncpi-build"

install -m 0644 "$f/fstab" "$root/etc/fstab"
echo raspberrypi > "$root/etc/hostname"
install -m 0644 "$f/hosts" "$root/etc/hosts"
install -d "$root/etc/systemd/network"
install -m 0644 "$f/20-wired.network" "$root/etc/systemd/network/20-wired.network"
install -m 0644 "$f/syncpi-grow-root.service" "$root/etc/systemd/system/syncpi-grow-root.service"
install -m 0755 "$f/syncpi-grow-root" "$root/usr/local/sbin/syncpi-grow-root"
for u in systemd-resolved.service syncpi-grow-root.service; do
  chroot "$root" systemctl enable "$u" >/dev/null 2>&1 || true
done
chroot "$root" /bin/sh -s < "$SYNCPI_RECIPE/network.sh"
ln -sf ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"

rm -f "$root/usr/sbin/update-initramfs"
chroot "$root" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs
# before the one initramfs build, whose raspi-firmware hook writes cmdline.txt from these
if [ -f "$root/etc/default/raspi-firmware" ]; then
  sed -i -e '/^#\?\s*ROOTPART=/d' -e '/^#\?\s*CONSOLES=/d' "$root/etc/default/raspi-firmware"
  cat "$f/raspi-firmware" >> "$root/etc/default/raspi-firmware"
fi
start=$(date +%s)
chroot "$root" update-initramfs -c -k all
echo "syncpi: initramfs built in $(( $(date +%s) - start )) s" >&2
