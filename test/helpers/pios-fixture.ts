/**
 * Raspberry Pi OS–shaped roots for the first-boot tests, made from this machine's architecture
 * (amd64, so everything runs natively in a chroot): a Debian root of the same generation
 * (converger-rootfs's cache) given what a real Raspberry Pi OS Lite image carries for its first
 * boot, each piece named after the file it reproduces. The boot partition is the staged copy
 * under /boot/firmware, as the image build stages it.
 *
 * Both generations (pi-gen stage1/01-sys-tweaks, stage2/01-sys-tweaks, export-image):
 *   - first user pi, uid 1000, no password, in the usual groups; sudo without password
 *     (raspberrypi-sys-mods etc/sudoers.d/010_pi-nopasswd)
 *   - userconf-pi armed by `rename-user -f -s` (export-image/01-user-rename): userconfig.service
 *     enabled, getty@tty1 disabled, an sshd banner; userconf-service reads userconf(.txt)
 *   - NetworkManager's radio off (stage2/02-net-tweaks: NetworkManager.state)
 *   - no SSH host keys, empty machine-id (stage2/01-sys-tweaks, export-image/05-finalise)
 *   - cmdline.txt and fstab by PARTUUID (export-image/04-set-partuuid)
 * bookworm (pi-gen bookworm branch, raspberrypi-sys-mods bookworm branch):
 *   - cmdline.txt runs init=/usr/lib/raspberrypi-sys-mods/firstboot (07-resize-init.diff)
 *   - regenerate_ssh_host_keys.service and sshswitch.service enabled
 * trixie (pi-gen master, stage2/04-cloud-init): cloud-init with meta-data, user-data and
 *   network-config on the boot partition; cmdline.txt asks for "resize" instead of firstboot.
 *   NoCloud is pointed at the boot partition by a cloud.cfg.d file (the fixture's stand-in for
 *   Raspberry Pi OS's own cloud-init package, whose sources are not at hand).
 */
import { chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { execa } from 'execa';
import { freshRootfs, type RootfsSpec } from './converger-rootfs.js';

export type PiOsGeneration = 'bookworm' | 'trixie';

const COMMON = ['systemd', 'systemd-sysv', 'dbus', 'openssh-server', 'sudo', 'network-manager', 'wpasupplicant', 'locales', 'tzdata', 'ca-certificates', 'parted', 'e2fsprogs', 'fdisk'];

export const PIOS_SPECS: Record<PiOsGeneration, RootfsSpec> = {
  bookworm: { suite: 'bookworm', arch: 'amd64', include: COMMON },
  trixie: { suite: 'trixie', arch: 'amd64', include: [...COMMON, 'cloud-init', 'netplan.io'] },
};

/** The disk id pi-gen's image was made with (export-image/04-set-partuuid reads it from the MBR). */
export const BASE_DISK_ID = '5e3da7c1';
export const FIRST_USER = 'pi';

function put(root: string, path: string, content: string, mode = 0o644): void {
  const p = join(root, path);
  mkdirSync(dirname(p), { recursive: true });
  writeFileSync(p, content);
  chmodSync(p, mode);
}

const sh = (root: string, script: string) => execa('chroot', [root, 'sh', '-ec', script]);

/**
 * raspberrypi-sys-mods usr/lib/raspberrypi-sys-mods/firstboot, the parts that touch files: it
 * drops itself from cmdline.txt, makes new host keys (regenerate_ssh_host_keys), and gives the
 * disk a new id, rewriting the PARTUUIDs in fstab and cmdline.txt. Left out: the root resize
 * (initramfs local-premount/firstboot: parted and resize2fs on the card, no file changes),
 * custom.toml (needs python3-toml; nothing here writes one), the whiptail messages and reboot.
 * FIXTURE_DISK_ID stands for the random id the real script reads from /dev/hwrng.
 */
const SYSMODS_FIRSTBOOT = `#!/bin/sh
set -e
FWLOC=/boot/firmware
sed -i 's| init=/usr/lib/raspberrypi-sys-mods/firstboot||' "$FWLOC/cmdline.txt"
/usr/lib/raspberrypi-sys-mods/regenerate_ssh_host_keys
old=$(sed -n 's/.*root=PARTUUID=\\([0-9a-f]\\{8\\}\\)-02.*/\\1/p' "$FWLOC/cmdline.txt")
new=\${FIXTURE_DISK_ID:?}
sed -i "s/$old/$new/g" /etc/fstab
sed -i "s/$old/$new/" "$FWLOC/cmdline.txt"
`;

/** raspberrypi-sys-mods usr/lib/raspberrypi-sys-mods/regenerate_ssh_host_keys. */
const REGENERATE_KEYS = `#!/bin/sh -e
rm -f /etc/ssh/ssh_host_*_key*
ssh-keygen -A >/dev/null
systemctl -q disable regenerate_ssh_host_keys
`;
const REGENERATE_UNIT = `[Unit]\nDescription=Regenerate SSH host keys\nBefore=ssh.service\n\n[Service]\nType=oneshot\nExecStart=/usr/lib/raspberrypi-sys-mods/regenerate_ssh_host_keys\n\n[Install]\nWantedBy=multi-user.target\n`;

/** raspberrypi-sys-mods usr/lib/raspberrypi-sys-mods/sshswitch: "ssh" or "ssh.txt" turns sshd on. */
const SSHSWITCH = `#!/bin/sh
set -e
found=0
for f in /boot/firmware/ssh /boot/firmware/ssh.txt; do [ -e "$f" ] || continue; found=1; rm -f "$f"; done
if [ "$found" = 1 ]; then systemctl enable ssh; fi
`;
const SSHSWITCH_UNIT = `[Unit]\nDescription=Turn on SSH if /boot/firmware/ssh is present\n\n[Service]\nType=oneshot\nExecStart=/usr/lib/raspberrypi-sys-mods/sshswitch\n\n[Install]\nWantedBy=multi-user.target\n`;

/**
 * userconf-pi userconf-service + userconf + cancel-rename: the first line of userconf(.txt) is
 * NAME:CRYPTED; the uid-1000 user is renamed to NAME (login, home, group), gets the password,
 * and the rename is disarmed. Without the file a console image asks on tty8 and waits: here
 * that is an exit with status 1, since nothing answers.
 */
const USERCONF_SERVICE = `#!/bin/sh
set -e
for f in /boot/firmware/userconf /boot/firmware/userconf.txt; do
  [ -f "$f" ] || continue
  line=$(head -n1 "$f" | tr -d '\\r')
  name=\${line%%:*}
  pass=\${line#*:}
  first=$(getent passwd 1000 | cut -d: -f1)
  group=$(getent group 1000 | cut -d: -f1)
  if [ "$first" != "$name" ]; then
    usermod -l "$name" "$first"
    usermod -m -d "/home/$name" "$name"
    groupmod -n "$name" "$group"
    [ ! -f /etc/sudoers.d/010_pi-nopasswd ] || sed -i "s/^$first /$name /" /etc/sudoers.d/010_pi-nopasswd
  fi
  echo "$name:$pass" | chpasswd -e
  rm -f /etc/ssh/sshd_config.d/rename_user.conf
  systemctl disable userconfig
  systemctl enable getty@tty1
  rm -f "$f"
  exit 0
done
echo "userconfig: no userconf.txt: would ask for a user name on tty8 and wait" >&2
exit 1
`;
const USERCONF_UNIT = `[Unit]\nDescription=User configuration dialog\nAfter=systemd-user-sessions.service\n\n[Service]\nType=oneshot\nExecStart=/usr/lib/userconf-pi/userconf-service\nStandardInput=tty\nTTYPath=/dev/tty8\n\n[Install]\nWantedBy=multi-user.target\n`;

/** pi-gen stage2/04-cloud-init/files: a local instance, and templates that only hold comments. */
const META_DATA = 'dsmode: local\ninstance_id: rpios-image\n';
const USER_DATA = '#cloud-config\n\n# Examples only (hostname:, users:, ssh_pwauth:, ...): see the cloud-init documentation.\n';
const NETWORK_CONFIG = '# netplan-style network configuration, applied on first boot.\n#network:\n#  version: 2\n';
const NOCLOUD_SEED = 'datasource_list: [NoCloud, None]\ndatasource:\n  NoCloud:\n    seedfrom: file:///boot/firmware/\n';

/** A fresh Raspberry Pi OS–shaped root of `gen`; its boot partition is `root`/boot/firmware. */
export async function piOsRoot(gen: PiOsGeneration): Promise<{ root: string; boot: string }> {
  const root = await freshRootfs(PIOS_SPECS[gen]);
  const boot = join(root, 'boot/firmware');
  mkdirSync(boot, { recursive: true });

  // stage1/01-sys-tweaks: the first user, no password; stage2/01-sys-tweaks: its groups
  for (const g of ['gpio', 'i2c', 'spi', 'input']) await execa('groupadd', ['--root', root, '-f', '-r', g]);
  await execa('useradd', ['--root', root, '--create-home', '--user-group', '--uid', '1000', '--shell', '/bin/bash', '--groups', 'adm,dialout,cdrom,audio,users,sudo,video,plugdev,input,gpio,spi,i2c,netdev', FIRST_USER]);
  put(root, 'etc/sudoers.d/010_pi-nopasswd', `${FIRST_USER} ALL=(ALL) NOPASSWD: ALL\n`, 0o440);

  // export-image/01-user-rename: userconf-pi's rename-user -f -s
  put(root, 'usr/lib/userconf-pi/userconf-service', USERCONF_SERVICE, 0o755);
  put(root, 'etc/systemd/system/userconfig.service', USERCONF_UNIT);
  put(root, 'etc/ssh/sshd_config.d/rename_user.conf', 'Banner /usr/share/userconf-pi/sshd_banner\n');
  await execa('systemctl', ['--root', root, '--quiet', 'enable', 'userconfig.service']);
  await execa('systemctl', ['--root', root, '--quiet', 'disable', 'getty@tty1.service']);

  // stage2/02-net-tweaks (no WPA_COUNTRY at build time)
  put(root, 'var/lib/NetworkManager/NetworkManager.state', '[main]\nWirelessEnabled=false\n');

  // export-image/04-set-partuuid
  const rootRef = `PARTUUID=${BASE_DISK_ID}-02`;
  put(root, 'etc/fstab', `proc /proc proc defaults 0 0\nPARTUUID=${BASE_DISK_ID}-01 /boot/firmware vfat defaults 0 2\n${rootRef} / ext4 defaults,noatime 0 1\n`);
  const cmdline = `console=serial0,115200 console=tty1 root=${rootRef} rootfstype=ext4 fsck.repair=yes rootwait`;
  put(root, 'boot/firmware/config.txt', '[all]\narm_64bit=1\n');
  put(root, 'boot/firmware/issue.txt', `Raspberry Pi reference (${gen}-shaped test fixture)\n`);

  if (gen === 'bookworm') {
    put(root, 'boot/firmware/cmdline.txt', `${cmdline} quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n`);
    put(root, 'usr/lib/raspberrypi-sys-mods/firstboot', SYSMODS_FIRSTBOOT, 0o755);
    put(root, 'usr/lib/raspberrypi-sys-mods/regenerate_ssh_host_keys', REGENERATE_KEYS, 0o755);
    put(root, 'usr/lib/raspberrypi-sys-mods/sshswitch', SSHSWITCH, 0o755);
    put(root, 'etc/systemd/system/regenerate_ssh_host_keys.service', REGENERATE_UNIT);
    put(root, 'etc/systemd/system/sshswitch.service', SSHSWITCH_UNIT);
    await execa('systemctl', ['--root', root, '--quiet', 'enable', 'regenerate_ssh_host_keys.service', 'sshswitch.service']);
  } else {
    put(root, 'boot/firmware/cmdline.txt', `${cmdline} resize\n`);
    put(root, 'boot/firmware/meta-data', META_DATA, 0o755);
    put(root, 'boot/firmware/user-data', USER_DATA, 0o755);
    put(root, 'boot/firmware/network-config', NETWORK_CONFIG, 0o755);
    put(root, 'etc/cloud/cloud.cfg.d/05_raspberry-pi-nocloud.cfg', NOCLOUD_SEED);
  }

  // stage2/01-sys-tweaks and export-image/05-finalise: no host keys, no machine id
  await sh(root, 'rm -f /etc/ssh/ssh_host_*_key*; : >/etc/machine-id');
  return { root, boot };
}

export function hasFile(root: string, path: string): boolean {
  return existsSync(join(root, path));
}

export function readRoot(root: string, path: string): string {
  return readFileSync(join(root, path), 'utf8');
}

export function removeRoot(root: string): void {
  rmSync(root, { recursive: true, force: true });
}
