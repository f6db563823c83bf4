/** Syncthing: a dedicated system user, a sandboxed unit, and a config seeded from appliance.yaml. */
import { SYNCPI_LIB, SYNCTHING_HOME, UPLOAD_GROUP, type Feature } from '../context.js';

/** Adopts the mounted drive for every folder (`syncpi adopt-drive`): resets the index, refills. */
export const ADOPT_DRIVE = `${SYNCPI_LIB}/adopt-drive`;
/** This appliance's own Syncthing REST API key (root only), made by syncthing-prepare. */
export const SYNCTHING_API_KEY = '/var/lib/syncpi/syncthing-api-key';
/** Written by syncthing-prepare at each start: "ID<TAB>PATH<TAB>REASON" per held-back folder. */
export const FOLDER_HOLDS = '/run/syncpi/folder-holds';

export const sync: Feature = {
  name: 'sync',
  contribute(ctx) {
    const { config, derived } = ctx;
    const notes: string[] = [];
    if (config.sync.private) notes.push('sync is private: no global discovery, relays, NAT traversal, usage reports or auto-upgrade');
    if (config.sync.folders.length === 0) notes.push('no folders are configured: add sync.folders to share something');
    return {
      install: ['syncthing'],
      // With rsync keys, Syncthing shares the upload account's group (see features/rsync.ts).
      users: [{ name: 'syncthing', system: true, home: SYNCTHING_HOME, shell: '/usr/sbin/nologin', groups: derived.rsyncKeys.length ? [UPLOAD_GROUP] : [], authorizedKeys: [] }],
      dirs: [
        { path: SYNCTHING_HOME, mode: '0700', owner: 'syncthing', group: 'syncthing' },
        { path: '/etc/syncpi/syncthing', mode: '0750', owner: 'root', group: 'syncthing' },
      ],
      files: [
        { path: '/etc/syncpi/syncthing/config.xml', mode: '0640', owner: 'root', group: 'syncthing', content: ctx.render('sync/config.xml.hbs'), secret: true, notify: ['restart-syncthing'] },
        { path: `${SYNCPI_LIB}/syncthing-prepare`, mode: '0755', owner: 'root', group: 'root', content: ctx.render('sync/syncthing-prepare.sh.hbs'), notify: ['restart-syncthing'] },
        { path: ADOPT_DRIVE, mode: '0755', owner: 'root', group: 'root', content: ctx.render('sync/adopt-drive.sh.hbs'), notify: [] },
        { path: '/etc/systemd/system/syncthing.service', mode: '0644', owner: 'root', group: 'root', content: ctx.render('sync/syncthing.service.hbs'), notify: ['daemon-reload', 'restart-syncthing'] },
      ],
      enable: ['syncthing.service'],
      sysctls: { 'fs.inotify.max_user_watches': String(config.sync.max_user_watches) },
      handlers: [{ name: 'restart-syncthing', action: 'restart', unit: 'syncthing.service', liveOnly: true }],
      checks: [
        { kind: 'service-active', unit: 'syncthing.service', description: 'Syncthing is running' },
        { kind: 'file', path: '/etc/syncpi/syncthing/config.xml', mode: '0640', owner: 'root', description: 'Syncthing config is not world-readable' },
        { kind: 'sysctl', key: 'fs.inotify.max_user_watches', value: String(config.sync.max_user_watches), description: 'inotify watches raised for large folders' },
        // Syncthing writes the marker once the folder starts, a little after the daemon: wait for it, bounded
        ...derived.folders.map((f) => ({
          kind: 'command' as const,
          argv: ['sh', '-c', 'for i in $(seq 1 45); do test -d "$1/.stfolder" && exit 0; sleep 2; done; exit 1', 'sh', f.path],
          expectExit: 0,
          liveOnly: true,
          description: `folder ${f.id} has its marker on the drive`,
        })),
        ...(derived.folders.length ? [{ kind: 'command' as const, argv: ['test', '!', '-s', FOLDER_HOLDS], expectExit: 0, liveOnly: true, description: 'no folder is held back from a drive it was not seeded on' }] : []),
      ],
      notes,
    };
  },
};
