#!/bin/sh
# Who owns the wired network, run inside the root (chroot ROOT /bin/sh -s < network.sh) once the
# base is bootstrapped and again once the config's own packages are in: networkd with DHCP,
# unless NetworkManager was installed, which must own it alone.
set -eu
if [ -e /usr/sbin/NetworkManager ]; then
  systemctl disable systemd-networkd.service >/dev/null 2>&1 || true
else
  systemctl enable systemd-networkd.service >/dev/null 2>&1 || true
fi
