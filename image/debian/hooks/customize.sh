#!/bin/sh
# mmdebstrap --customize-hook: runs once every package is installed.
# $1 is the root being built; SYNCPI_RECIPE is this directory; SYNCPI_PURGE lists packages to remove.
set -eu
root=$1
f=$SYNCPI_RECIPE/files

if [ -n "${SYNCPI_PURGE:-}" ]; then
  # entries may be patterns (bluez*): expanded by dpkg-query against installed packages, never
  # by this shell
  set -f
  # shellcheck disable=SC2086
  present=$(chroot "$root" dpkg-query -W -f '${db:Status-Status} ${Package}\n' $SYNCPI_PURGE 2>/dev/null | awk '$1 == "installed" { print $2 }' | tr '\n' ' ')
  if [ -n "$present" ]; then
    # shellcheck disable=SC2086
    chroot "$root" apt-get purge -y $present
  fi
  set +f
fi

# the build's apt options (no debconf pre-scan) must not stay in the image
rm -f "$root/etc/apt/apt.conf.d/99mmdebstrap"

install -m 0644 "$f/fstab" "$root/etc/fstab"
echo raspberrypi > "$root/etc/hostname"
install -m 0644 "$f/hosts" "$root/etc/hosts"
install -d "$root/etc/systemd/network"
install -m 0644 "$f/20-wired.network" "$root/etc/systemd/network/20-wired.network"
install -m 0644 "$f/syncpi-grow-root.service" "$root/etc/systemd/system/syncpi-grow-root.service"
install -m 0755 "$f/syncpi-grow-root" "$root/usr/local/sbin/syncpi-grow-root"
units="systemd-resolved.service syncpi-grow-root.service"
# wired DHCP through networkd unless the Plan brought NetworkManager, which must own it alone
[ -e "$root/usr/sbin/NetworkManager" ] || units="$units systemd-networkd.service"
for u in $units; do
  chroot "$root" systemctl enable "$u" >/dev/null 2>&1 || true
done
ln -sf ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"

if [ "${SYNCPI_BOOT:-1}" = 1 ]; then
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
fi

if [ "${SYNCPI_BOOT:-1}" != 1 ]; then
  # no firmware package to write them: the same two files, so the layout matches in every variant
  install -m 0644 "$f/cmdline.txt" "$root/boot/firmware/cmdline.txt"
  install -m 0644 "$f/config.txt" "$root/boot/firmware/config.txt"
fi
