/**
 * A stock Raspberry Pi OS base carries first-boot machinery of its own. Each piece is either
 * left to run (it does something syncpi does not, and nothing syncpi did is undone by it) or
 * switched off here, before the Plan is applied, for the reason given beside it. What each piece
 * does on a card is read from the sources that make the image: pi-gen (its stages and
 * export-image), raspberrypi-sys-mods, userconf-pi, rpi-imager and cloud-init.
 *
 *   bookworm-based images: cmdline.txt starts /usr/lib/raspberrypi-sys-mods/firstboot as init;
 *     its initramfs part grows the root partition, the script makes new SSH host keys and a new
 *     disk id (rewriting the PARTUUIDs in cmdline.txt and fstab). Kept: it is the one resize a
 *     stock base has (syncpi adds none to it), syncpi ships no host keys (so its own generator
 *     stays idle after it), and syncpi's references are PARTUUIDs it rewrites consistently.
 *   trixie-based images (late 2025 on): cloud-init reads user-data, network-config and
 *     meta-data from the boot partition (NoCloud). Kept as the place for per-card settings, with
 *     a drop-in that leaves the appliance alone (see cloudInitDropIn).
 *   both: pi-gen makes a first user (pi, uid 1000, no password, passwordless sudo) and arms
 *     userconf-pi's rename: userconfig.service asks for a new name on tty8 at first boot (the
 *     boot waits for it) or renames the first user after userconf.txt. Switched off (see below).
 */
import { existsSync, readFileSync } from 'node:fs';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import YAML from 'yaml';
import type { Plan } from '../plan/types.js';
import { tool } from '../util/tool.js';

export const FIRSTBOOT_INIT = 'init=/usr/lib/raspberrypi-sys-mods/firstboot';
export const CLOUD_INIT_DROPIN = '/etc/cloud/cloud.cfg.d/99-syncpi.cfg';
/** netplan's backend for every file it reads (its default would be systemd-networkd). */
export const NETPLAN_BACKEND = '/etc/netplan/00-syncpi-networkmanager.yaml';
const USERCONF_SERVICE = 'userconfig.service';

export interface PiOsBase {
  /** cmdline.txt runs raspberrypi-sys-mods' firstboot as init (bookworm-based images). */
  sysModsFirstboot: boolean;
  /** cloud-init with its NoCloud seed on the boot partition (trixie-based images). */
  cloudInit: boolean;
  /** userconf-pi's first-boot rename is installed. */
  userconf: boolean;
}

const read = (p: string): string => (existsSync(p) ? readFileSync(p, 'utf8') : '');

/** What of Raspberry Pi OS's first-boot machinery a root (and its staged boot files) carries. */
export function detectPiOs(root: string, bootDir: string): PiOsBase | undefined {
  const base: PiOsBase = {
    sysModsFirstboot: read(join(bootDir, 'cmdline.txt')).split(/\s+/).includes(FIRSTBOOT_INIT),
    cloudInit: existsSync(join(root, 'etc/cloud/cloud.cfg')) && existsSync(join(bootDir, 'meta-data')),
    userconf: existsSync(join(root, 'usr/lib/userconf-pi')),
  };
  return base.sysModsFirstboot || base.cloudInit || base.userconf ? base : undefined;
}

/** The Plan's login user: the one the firstboot feature names, else its first non-system user. */
export function adminUser(plan: Plan): Plan['users'][number] | undefined {
  const named = plan.files.find((f) => f.path === '/etc/syncpi/admin-user')?.content.trim();
  return plan.users.find((u) => u.name === named) ?? plan.users.find((u) => !u.system);
}

async function writeAtomic(path: string, content: string, mode: number): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const tmp = `${path}.syncpi-tmp`;
  await writeFile(tmp, content, { mode });
  await rename(tmp, path);
}

/**
 * cloud-init stays the per-card mechanism (rpi-imager and `syncpi flash` write user-data and
 * network-config); this keeps each of its modules that would fight the appliance in line:
 *   default user: the appliance's user, so per-card ssh_authorized_keys land on it and no second
 *     login is made; no sudo rule of cloud-init's (syncpi's sudoers drop-in decides), its groups
 *   ssh_deletekeys/ssh_genkeytypes: the one host key generator is syncpi-ssh-host-keys.service
 *   network renderer: netplan (cloud-init renders a network-config's wifis through netplan only),
 *     whose backend NETPLAN_BACKEND makes NetworkManager, the appliance's network stack
 *   growpart/resize_rootfs: the base's own resize (cmdline.txt "resize") is the one resize
 *   manage_etc_hosts: /etc/hosts is the appliance's (a card's user-data with a hostname asks for
 *     its 127.0.1.1 line itself)
 * sshd is left alone: a user-data ssh_pwauth writes a drop-in sshd reads after syncpi's, whose
 * key-only settings therefore win.
 */
export function cloudInitDropIn(plan: Plan): string {
  const user = adminUser(plan);
  const cfg = {
    system_info: {
      ...(user ? { default_user: { name: user.name, gecos: user.name, shell: user.shell, lock_passwd: true, groups: user.groups, sudo: null } } : {}),
      network: { renderers: ['netplan', 'network-manager'] },
    },
    users: user ? ['default'] : [],
    ssh_deletekeys: false,
    ssh_genkeytypes: [],
    growpart: { mode: 'off' },
    resize_rootfs: false,
    manage_etc_hosts: false,
  };
  // quoted strings: YAML 1.1 (cloud-init's) reads a bare off as false
  return `# Managed by syncpi: cloud-init applies per-card settings without undoing the appliance.\n${YAML.stringify(cfg, { defaultStringType: 'QUOTE_DOUBLE', defaultKeyType: 'PLAIN' })}`;
}

const hasUnit = (root: string, unit: string): boolean =>
  ['etc/systemd/system', 'usr/lib/systemd/system', 'lib/systemd/system'].some((d) => existsSync(join(root, d, unit)));

/** The base's first user (pi-gen's FIRST_USER_NAME, uid 1000), if it has one. */
function firstUser(root: string): string | undefined {
  const line = read(join(root, 'etc/passwd'))
    .split('\n')
    .find((l) => l.split(':')[2] === '1000');
  return line?.split(':')[0];
}

/**
 * Make a Raspberry Pi OS root ready for the Plan. Returns what was changed, one line each, for
 * the build's report; nothing when the root is not Raspberry Pi OS.
 */
export async function adoptPiOsBase(root: string, bootDir: string, plan: Plan): Promise<string[]> {
  const base = detectPiOs(root, bootDir);
  if (!base) return [];
  const done: string[] = [];

  // The base's first user goes, whatever its name: the Plan's user is then made afresh with
  // exactly its groups and takes uid 1000, which is "the first user" to every Pi OS tool
  // (imager_custom, rpi-imager's firstrun.sh, userconf). Keeping it would leave a second login
  // with passwordless sudo beside the appliance's user.
  const first = firstUser(root);
  if (first) {
    await tool('userdel', ['--root', root, '--remove', first]);
    done.push(`removed the base's first user ${first} (uid 1000): the appliance's user takes its place`);
  }
  // raspberrypi-sys-mods' sudo rule for that user (pi-gen renames its subject to the first user)
  const nopasswd = join(root, 'etc/sudoers.d/010_pi-nopasswd');
  if (existsSync(nopasswd)) {
    await rm(nopasswd);
    done.push('removed /etc/sudoers.d/010_pi-nopasswd: sudo is what the config says');
  }

  if (base.userconf && hasUnit(root, USERCONF_SERVICE)) {
    // What userconf-pi's cancel-rename does: the rename would otherwise ask on tty8 and hold the
    // boot, or (with userconf.txt on the boot partition) rename the appliance's user under
    // sshd's AllowUsers, its sudo rule and its home.
    await tool('systemctl', ['--root', root, '--quiet', 'disable', USERCONF_SERVICE]);
    await tool('systemctl', ['--root', root, '--quiet', 'enable', 'getty@tty1.service']);
    await rm(join(root, 'etc/ssh/sshd_config.d/rename_user.conf'), { force: true });
    await rm(join(root, 'var/lib/userconf-pi/autologin'), { force: true });
    done.push('switched off userconf-pi\'s first-boot rename (userconfig.service; userconf.txt is not read)');
  }

  // pi-gen turns NetworkManager's radio off unless the image was built with a country; every
  // Wi-Fi of syncpi's (the config's, a card's) comes with its country, and would stay dark.
  const nmState = join(root, 'var/lib/NetworkManager/NetworkManager.state');
  const state = read(nmState);
  if (/^WirelessEnabled=false$/m.test(state)) {
    await writeAtomic(nmState, state.replace(/^WirelessEnabled=false$/m, 'WirelessEnabled=true'), 0o644);
    done.push('NetworkManager\'s Wi-Fi radio switched on (the base turns it off)');
  }

  if (base.cloudInit) {
    await writeAtomic(join(root, CLOUD_INIT_DROPIN), cloudInitDropIn(plan), 0o644);
    // netplan refuses to read a file others can read
    await writeAtomic(join(root, NETPLAN_BACKEND), '# Managed by syncpi: NetworkManager renders what netplan reads.\nnetwork:\n  version: 2\n  renderer: NetworkManager\n', 0o600);
    done.push(`cloud-init kept for per-card settings, with ${CLOUD_INIT_DROPIN}`);
  }
  if (base.sysModsFirstboot) done.push('raspberrypi-sys-mods firstboot kept (it resizes the root on first boot)');
  return done;
}
