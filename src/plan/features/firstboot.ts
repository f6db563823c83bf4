/**
 * Per-card settings: `syncpi flash --hostname/--ssh-key/--wifi-*` leaves a settings file on the
 * boot partition, and this unit applies it once on first boot, so one image serves a fleet.
 */
import { SYNCPI_LIB, type Feature } from '../context.js';

export const FIRSTBOOT_SCRIPT = `${SYNCPI_LIB}/firstboot`;

export const firstboot: Feature = {
  name: 'firstboot',
  contribute(ctx) {
    return {
      files: [
        { path: FIRSTBOOT_SCRIPT, mode: '0755', owner: 'root', group: 'root', content: ctx.read('firstboot/firstboot.sh'), notify: [] },
        { path: '/etc/syncpi/admin-user', mode: '0644', owner: 'root', group: 'root', content: `${ctx.config.system.user.name}\n`, notify: [] },
        { path: '/etc/systemd/system/syncpi-firstboot.service', mode: '0644', owner: 'root', group: 'root', content: ctx.render('firstboot/syncpi-firstboot.service.hbs', { firstboot_script: FIRSTBOOT_SCRIPT }), notify: ['daemon-reload'] },
      ],
      enable: ['syncpi-firstboot.service'],
      checks: [{ kind: 'service-enabled', unit: 'syncpi-firstboot.service', description: 'per-card settings from the boot partition apply on first boot' }],
    };
  },
};
