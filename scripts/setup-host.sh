#!/usr/bin/env bash
# Installs everything syncpi and its tests need on a Debian (bookworm or later) machine:
# the host tools (apt), binfmt for arm64 chroots, npm dependencies and the compiled CLI.
# Idempotent; run as root (or with sudo). Packages come from the machine's configured apt sources.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(
  # image build
  mmdebstrap qemu-user-static binfmt-support arch-test dosfstools mtools e2fsprogs fdisk parted
  bmap-tools xz-utils zstd unzip debian-archive-keyring
  # image test and test hosts
  qemu-system-arm qemu-utils ipxe-qemu systemd-container iproute2 openssh-client openssh-server dpkg-dev
  # validators the tests run on generated files, and the peers they compare against
  systemd nftables syncthing rsync ansible curl ca-certificates tmux zip strace network-manager python3 binutils
  # web access: its server, a certificate for it, and a browser that loads its listing
  rclone openssl chromium
)

if [ "$(id -u)" -ne 0 ]; then
  echo "setup-host: run as root (sudo bash scripts/setup-host.sh)" >&2
  exit 2
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f '${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup-host: installing ${missing[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# Foreign-architecture chroots need binfmt_misc with qemu-user registered.
if [ ! -e /proc/sys/fs/binfmt_misc/status ]; then
  mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || true
fi
update-binfmts --enable >/dev/null 2>&1 || true
mkdir -p /run/sshd

# An SSH key to log into the appliance with: image/appliance.yaml references ~/.ssh/id_ed25519.pub.
if [ ! -f "$HOME/.ssh/id_ed25519.pub" ]; then
  mkdir -p "$HOME/.ssh" && chmod 700 "$HOME/.ssh"
  ssh-keygen -q -t ed25519 -N '' -C "syncpi@$(hostname)" -f "$HOME/.ssh/id_ed25519"
fi

if [ ! -d node_modules ] || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  npm ci --no-audit --no-fund
fi
npm run build --silent
