/** Key-only SSH, the nftables firewall, unattended upgrades and fail2ban. */
import type { Contribution, Feature } from '../context.js';

export const hardening: Feature = {
  name: 'hardening',
  contribute(ctx) {
    const h = ctx.config.hardening;
    const out: Contribution & { files: NonNullable<Contribution['files']>; install: string[]; enable: string[]; handlers: NonNullable<Contribution['handlers']>; checks: NonNullable<Contribution['checks']> } = {
      install: ['openssh-server'],
      files: [
        { path: '/etc/ssh/sshd_config.d/10-syncpi.conf', mode: '0644', owner: 'root', group: 'root', content: ctx.render('hardening/sshd.conf.hbs'), notify: ['reload-ssh'] },
      ],
      enable: [],
      disable: [],
      handlers: [{ name: 'reload-ssh', action: 'reload', unit: 'ssh.service', liveOnly: true }],
      checks: [{ kind: 'ssh-password-refused', description: 'SSH refuses password logins' }],
    };
    if (h.firewall === 'deny') {
      out.install.push('nftables');
      out.files.push({ path: '/etc/nftables.conf', mode: '0755', owner: 'root', group: 'root', content: ctx.render('hardening/nftables.conf.hbs'), notify: ['reload-firewall'], validate: ['nft', '-c', '-f', '%s'] });
      out.enable.push('nftables.service');
      out.handlers.push({ name: 'reload-firewall', action: 'command', argv: ['nft', '-f', '/etc/nftables.conf'], liveOnly: true });
      out.checks.push({ kind: 'service-active', unit: 'nftables.service', description: 'firewall is loaded' });
    }
    if (h.unattended_upgrades) {
      out.install.push('unattended-upgrades');
      out.files.push({ path: '/etc/apt/apt.conf.d/20auto-upgrades', mode: '0644', owner: 'root', group: 'root', content: ctx.render('hardening/20auto-upgrades.hbs'), notify: [] });
      out.checks.push({ kind: 'package-present', name: 'unattended-upgrades', description: 'security updates install themselves' });
    }
    if (h.fail2ban) {
      out.install.push('fail2ban', 'python3-systemd');
      out.files.push({ path: '/etc/fail2ban/jail.d/syncpi.local', mode: '0644', owner: 'root', group: 'root', content: ctx.render('hardening/fail2ban.local.hbs'), notify: ['restart-fail2ban'] });
      out.enable.push('fail2ban.service');
      out.handlers.push({ name: 'restart-fail2ban', action: 'restart', unit: 'fail2ban.service', liveOnly: true });
      out.checks.push({ kind: 'service-active', unit: 'fail2ban.service', description: 'fail2ban watches SSH' });
    }
    return out;
  },
};
