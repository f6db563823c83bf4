#!/bin/sh
# Customize hook for the test-host rootfs (run by mmdebstrap on the build machine, $1 = rootfs).
# Downloads the packages the tests install later (and everything they pull in that the rootfs
# lacks) into a local apt repository, then points apt at that repository only, so the booted
# containers never need a network to install packages.
# Env: REPO_PACKAGES = space-separated package names for the local repository.
set -eu
root="$1"
repo="$root/srv/syncpi-repo"
mkdir -p "$repo"

# --download-only resolves against the rootfs as it is: exactly the missing closure lands here.
# shellcheck disable=SC2086
chroot "$root" apt-get install -y --download-only --no-install-recommends \
  -o Dir::Cache::Archives=/srv/syncpi-repo/ $REPO_PACKAGES
rm -rf "$repo/partial" "$repo/lock"
(cd "$repo" && dpkg-scanpackages --multiversion . /dev/null > Packages 2>/dev/null && gzip -9kf Packages)

rm -f "$root/etc/apt/sources.list"
rm -f "$root"/etc/apt/sources.list.d/*
echo 'deb [trusted=yes] file:/srv/syncpi-repo ./' > "$root/etc/apt/sources.list"
chroot "$root" apt-get update -qq
# Keep installs from pulling recommends the repository does not carry.
printf 'APT::Install-Recommends "false";\n' > "$root/etc/apt/apt.conf.d/90syncpi-test"

# The test user: key-only login, passwordless sudo (like a freshly provisioned Pi).
chroot "$root" useradd --create-home --shell /bin/bash --groups sudo pi
chroot "$root" passwd --lock pi >/dev/null
printf 'pi ALL=(ALL) NOPASSWD: ALL\n' > "$root/etc/sudoers.d/010_pi-nopasswd"
chmod 0440 "$root/etc/sudoers.d/010_pi-nopasswd"
install -d -m 0700 -o 1000 -g 1000 "$root/home/pi/.ssh"

# Host keys and machine id are per host: written into each host's overlay at boot.
rm -f "$root"/etc/ssh/ssh_host_*
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
# sshd must not regenerate keys behind our back, and must not wait for DNS.
printf 'UseDNS no\nPasswordAuthentication no\n' > "$root/etc/ssh/sshd_config.d/10-syncpi-test.conf"
# Nothing in a test container needs these; they only slow boot down.
for u in systemd-timesyncd.service apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer man-db.timer dpkg-db-backup.timer; do
  chroot "$root" systemctl mask "$u" >/dev/null 2>&1 || true
done
# No per-user systemd manager: nothing under test needs one, and every login would start one.
chroot "$root" systemctl mask user@.service >/dev/null
# The root overlay is writable; an empty /etc/fstab avoids remount units failing.
: > "$root/etc/fstab"
