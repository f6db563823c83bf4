/** Hostname, time zone, locale, keyboard, the appliance user, Wi-Fi, first-boot host keys, smartd. */
import { createHash } from 'node:crypto';
import type { PlanCheck, PlanHandler } from '../types.js';
import type { Feature } from '../context.js';
import { authorizedKeysPath } from '../derived-files.js';

/**
 * The one first-boot SSH host key generator is syncpi's: it runs whenever a key is missing, not
 * only on the first boot, so a first boot cut short or a deleted key heals on the next one. The
 * bases bring their own, which would race it for the same files: Debian's (trixie's
 * openssh-server, ConditionFirstBoot only) and Raspberry Pi OS's (deletes every key, then makes
 * new ones). Disabling a unit a base lacks is a no-op, so one list serves every base.
 */
export const HOST_KEY_UNIT = 'syncpi-ssh-host-keys.service';
export const BASE_HOST_KEY_UNITS = ['sshd-keygen.service', 'regenerate_ssh_host_keys.service'];

/** Exit 0 when exactly one enabled service unit runs ssh-keygen (whatever its name). */
export const ONE_HOST_KEY_GENERATOR: PlanCheck = {
  kind: 'command',
  argv: [
    'sh',
    '-c',
    'n=0; for u in $(grep -ls "^ExecStart=.*ssh-keygen" /etc/systemd/system/*.service /usr/lib/systemd/system/*.service /lib/systemd/system/*.service | sed "s|.*/||" | sort -u); do case $(systemctl is-enabled "$u" 2>/dev/null) in enabled|enabled-runtime) n=$((n+1));; esac; done; test "$n" -eq 1',
  ],
  expectExit: 0,
  liveOnly: false,
  description: 'exactly one SSH host key generator is enabled',
};

/**
 * smartd exits with an error when it finds no device it can watch (a Pi with only its SD card,
 * a USB bridge without SAT pass-through), and one failed unit marks the whole system degraded.
 * --quit=never keeps it running idle instead; a drive it can read is still watched. A drop-in,
 * not an edit of /etc/default/smartmontools: a changed conffile would hold back its upgrades.
 */
const SMARTD_DROPIN = `# Managed by syncpi: no device to watch is not an error on an appliance
[Service]
Environment="smartd_opts=--quit=never"
`;

/** NetworkManager wants a UUID per connection; derive it so plans stay deterministic. */
function stableUuid(seed: string): string {
  const h = createHash('sha256').update(seed).digest('hex');
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-4${h.slice(13, 16)}-a${h.slice(17, 20)}-${h.slice(20, 32)}`;
}

export const system: Feature = {
  name: 'system',
  contribute(ctx) {
    const { config } = ctx;
    const user = config.system.user;
    const wifi = config.system.wifi;
    const home = `/home/${user.name}`;
    const files = [
      { path: '/etc/hostname', mode: '0644', owner: 'root', group: 'root', content: ctx.render('system/hostname.hbs'), notify: ['hostname'] },
      { path: '/etc/hosts', mode: '0644', owner: 'root', group: 'root', content: ctx.render('system/hosts.hbs'), notify: [] },
      { path: '/etc/timezone', mode: '0644', owner: 'root', group: 'root', content: ctx.render('system/timezone.hbs'), notify: ['timezone'] },
      { path: '/etc/default/locale', mode: '0644', owner: 'root', group: 'root', content: ctx.render('system/locale.hbs'), notify: [] },
      { path: '/etc/locale.gen', mode: '0644', owner: 'root', group: 'root', content: ctx.render('system/locale.gen.hbs'), notify: ['locale-gen'] },
      { path: '/etc/default/keyboard', mode: '0644', owner: 'root', group: 'root', content: ctx.render('system/keyboard.hbs'), notify: [] },
      { path: '/etc/systemd/system/syncpi-ssh-host-keys.service', mode: '0644', owner: 'root', group: 'root', content: ctx.render('system/ssh-host-keys.service.hbs'), notify: ['daemon-reload'] },
    ];
    if (config.packages.install.includes('smartmontools')) {
      files.push({ path: '/etc/systemd/system/smartmontools.service.d/syncpi.conf', mode: '0644', owner: 'root', group: 'root', content: SMARTD_DROPIN, notify: ['daemon-reload', 'restart-smartd'] });
    }
    if (user.sudo) {
      files.push({ path: '/etc/sudoers.d/010-syncpi', mode: '0440', owner: 'root', group: 'root', content: ctx.render('system/sudoers.hbs'), notify: [] });
    }
    const install = ['systemd-sysv', 'openssh-server', 'locales', 'tzdata', 'network-manager', 'ca-certificates'];
    if (user.sudo) install.push('sudo');
    if (wifi) {
      install.push('wpasupplicant');
      files.push({ path: '/etc/modprobe.d/syncpi-wifi-country.conf', mode: '0644', owner: 'root', group: 'root', content: ctx.render('system/cfg80211.conf.hbs', { country: wifi.country }), notify: [] });
      wifi.networks.forEach((n, i) => {
        files.push({
          path: `/etc/NetworkManager/system-connections/syncpi-wifi-${i}.nmconnection`,
          mode: '0600',
          owner: 'root',
          group: 'root',
          content: ctx.render('system/wifi.nmconnection.hbs', {
            index: i,
            uuid: stableUuid(`${config.system.hostname}/wifi/${i}/${n.ssid}`),
            priority: 100 - i,
            ssid: n.ssid,
            hidden: n.hidden,
            psk: ctx.inputs.wifiPsks[i] ?? null,
          }),
          secret: true,
          notify: ['nm-reload'],
        } as (typeof files)[number]);
      });
    }
    return {
      install,
      users: [{ name: user.name, system: false, home, shell: '/bin/bash', groups: user.sudo ? ['sudo', 'adm', 'systemd-journal'] : ['systemd-journal'], authorizedKeys: user.ssh_keys.map((k) => k.trim()) }],
      files,
      enable: [HOST_KEY_UNIT, 'ssh.service', 'NetworkManager.service'],
      disable: BASE_HOST_KEY_UNITS,
      handlers: [
        { name: 'hostname', action: 'command', argv: ['hostname', '-F', '/etc/hostname'], liveOnly: true },
        { name: 'timezone', action: 'command', argv: ['ln', '-sfn', `/usr/share/zoneinfo/${config.system.timezone}`, '/etc/localtime'], liveOnly: false },
        { name: 'locale-gen', action: 'command', argv: ['locale-gen'], liveOnly: false },
        { name: 'nm-reload', action: 'command', argv: ['nmcli', 'connection', 'reload'], liveOnly: true },
        ...(config.packages.install.includes('smartmontools') ? [{ name: 'restart-smartd', action: 'restart', unit: 'smartmontools.service', liveOnly: true } satisfies PlanHandler] : []),
      ],
      checks: [
        { kind: 'file', path: '/etc/hostname', description: `hostname is ${config.system.hostname}`, sha256: createHash('sha256').update(`${config.system.hostname}\n`).digest('hex') },
        { kind: 'file', path: authorizedKeysPath(home), mode: '0600', owner: user.name, description: `${user.name} has the configured SSH keys` },
        { kind: 'service-enabled', unit: 'ssh.service', description: 'SSH starts at boot' },
        ONE_HOST_KEY_GENERATOR,
      ],
    };
  },
};
