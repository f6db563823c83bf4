/** Hostname, time zone, locale, keyboard, the appliance user, Wi-Fi, first-boot host keys. */
import { createHash } from 'node:crypto';
import type { Feature } from '../context.js';

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
    const files = [
      { path: '/etc/hostname', mode: '0644', owner: 'root', group: 'root', content: ctx.render('system/hostname.hbs'), notify: ['hostname'] },
      { path: '/etc/hosts', mode: '0644', owner: 'root', group: 'root', content: ctx.render('system/hosts.hbs'), notify: [] },
      { path: '/etc/timezone', mode: '0644', owner: 'root', group: 'root', content: ctx.render('system/timezone.hbs'), notify: ['timezone'] },
      { path: '/etc/default/locale', mode: '0644', owner: 'root', group: 'root', content: ctx.render('system/locale.hbs'), notify: [] },
      { path: '/etc/locale.gen', mode: '0644', owner: 'root', group: 'root', content: ctx.render('system/locale.gen.hbs'), notify: ['locale-gen'] },
      { path: '/etc/default/keyboard', mode: '0644', owner: 'root', group: 'root', content: ctx.render('system/keyboard.hbs'), notify: [] },
      { path: '/etc/systemd/system/syncpi-ssh-host-keys.service', mode: '0644', owner: 'root', group: 'root', content: ctx.render('system/ssh-host-keys.service.hbs'), notify: ['daemon-reload'] },
    ];
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
      users: [{ name: user.name, system: false, home: `/home/${user.name}`, shell: '/bin/bash', groups: user.sudo ? ['sudo', 'adm', 'systemd-journal'] : ['systemd-journal'], authorizedKeys: user.ssh_keys.map((k) => k.trim()) }],
      files,
      enable: ['syncpi-ssh-host-keys.service', 'ssh.service', 'NetworkManager.service'],
      handlers: [
        { name: 'hostname', action: 'command', argv: ['hostname', '-F', '/etc/hostname'], liveOnly: true },
        { name: 'timezone', action: 'command', argv: ['ln', '-sfn', `/usr/share/zoneinfo/${config.system.timezone}`, '/etc/localtime'], liveOnly: false },
        { name: 'locale-gen', action: 'command', argv: ['locale-gen'], liveOnly: false },
        { name: 'nm-reload', action: 'command', argv: ['nmcli', 'connection', 'reload'], liveOnly: true },
      ],
      checks: [
        { kind: 'file', path: '/etc/hostname', description: `hostname is ${config.system.hostname}`, sha256: createHash('sha256').update(`${config.system.hostname}\n`).digest('hex') },
        { kind: 'file', path: `/home/${user.name}/.ssh/authorized_keys`, mode: '0600', owner: user.name, description: `${user.name} has the configured SSH keys` },
        { kind: 'service-enabled', unit: 'ssh.service', description: 'SSH starts at boot' },
      ],
    };
  },
};
