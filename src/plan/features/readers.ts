/**
 * Read-only shares: each folder with readers gets a send-only folder on the appliance, shared
 * with the readers only, that a timer keeps a hard-link mirror of the folder (readonly-mirror).
 * Syncthing has no per-device permission on one folder; a second folder the appliance never
 * pulls into is the permission.
 */
import { SYNCPI_LIB, type Feature } from '../context.js';

export const READONLY_MIRROR = `${SYNCPI_LIB}/readonly-mirror`;
export const READONLY_UNIT = 'syncpi-readonly';

export const readers: Feature = {
  name: 'readers',
  contribute(ctx) {
    const { mirrors } = ctx.derived;
    if (mirrors.length === 0) return {};
    const restart = `restart-${READONLY_UNIT}.timer`;
    return {
      // the layer already has rsync (image/appliance.yaml); named here so no plan lacks it
      install: ['rsync'],
      files: [
        { path: READONLY_MIRROR, mode: '0755', owner: 'root', group: 'root', content: ctx.render('sync/readonly-mirror.sh.hbs'), notify: [] },
        { path: `/etc/systemd/system/${READONLY_UNIT}.service`, mode: '0644', owner: 'root', group: 'root', content: ctx.render('sync/syncpi-readonly.service.hbs'), notify: ['daemon-reload'] },
        { path: `/etc/systemd/system/${READONLY_UNIT}.timer`, mode: '0644', owner: 'root', group: 'root', content: ctx.render('sync/syncpi-readonly.timer.hbs'), notify: ['daemon-reload', restart] },
      ],
      enable: [`${READONLY_UNIT}.timer`],
      handlers: [{ name: restart, action: 'restart', unit: `${READONLY_UNIT}.timer`, liveOnly: true }],
      checks: [{ kind: 'service-active', unit: `${READONLY_UNIT}.timer`, description: 'the read-only copies of shared folders are kept current' }],
      notes: mirrors.map((m) => `folder ${m.folder} is shared read-only as folder ${m.id} (a hard-link copy at ${m.target})`),
    };
  },
};
