/**
 * access.web: chosen folders in a browser and over WebDAV, served by rclone from Debian in a
 * sandboxed unit. One process for every chosen folder: rclone serves one directory, so the unit's
 * own mount namespace builds that directory from bind mounts of the folders (never symbolic links,
 * which rclone would have to be told to follow, and which could lead out of a folder). The
 * firewall rule for it lives in hardening's nftables template.
 */
import { SYNCTHING_HOME, type Feature } from '../context.js';
import { systemdPath } from '../render.js';
import type { PlanCheck } from '../types.js';

export const WEB_UNIT = 'syncpi-web.service';
export const WEB_USER = 'syncpi-web';
/** The served tree: exists only inside the unit's namespace, one directory per folder ID. */
export const WEB_ROOT = '/run/syncpi-web';
export const WEB_HTPASSWD = '/etc/syncpi/web/htpasswd';

export const web: Feature = {
  name: 'web',
  contribute(ctx) {
    const { config, derived, inputs } = ctx;
    const share = config.access.web;
    const where = derived.web;
    if (!share || !where) return {};
    const byId = new Map(derived.folders.map((f) => [f.id, f.path]));
    const binds = share.folders.map((id) => `${systemdPath(byId.get(id)!)}:${systemdPath(`${WEB_ROOT}/${id}`)}`);
    // rclone reads htpasswd with bcrypt entries; names are checked to hold no ':' or newline.
    const users = share.users ?? [{ name: config.panel.user, bcrypt: inputs.panelPasswordHash }];
    const htpasswd = users.map((u) => `${u.name}:${u.bcrypt}\n`).join('');
    const unit = ctx.render('web/syncpi-web.service.hbs', {
      web: share,
      web_user: WEB_USER,
      web_root: WEB_ROOT,
      web_listen: share.listen,
      web_storage_root: derived.storageRoot,
      web_binds: binds,
      web_htpasswd: WEB_HTPASSWD,
      web_tls_cert: `${SYNCTHING_HOME}/https-cert.pem`,
      web_tls_key: `${SYNCTHING_HOME}/https-key.pem`,
    });
    const host = where.host === '0.0.0.0' || where.host === '::' ? '127.0.0.1' : where.host;
    const url = `https://${host.includes(':') ? `[${host}]` : host}:${where.port}/`;
    const checks: PlanCheck[] = [
      { kind: 'service-active', unit: WEB_UNIT, description: 'browser and WebDAV access is running' },
      share.users
        ? { kind: 'http', url, expectUnauthenticated: 401, tls: true, description: 'web access asks for a password over TLS' }
        : { kind: 'http', url, expectUnauthenticated: 401, expectAuthenticated: 200, credential: 'panel', tls: true, description: 'web access asks for the panel password over TLS' },
    ];
    const notes = [`web access serves ${share.folders.join(', ')} ${share.read_only ? 'read-only' : 'read-write'} on https://${share.listen}/`];
    if (!where.loopback && where.allowed.length === 0 && config.hardening.firewall === 'deny') notes.push(`web access listens on ${share.listen} but no allowed networks are set: the firewall lets nobody reach it`);
    return {
      install: ['rclone'],
      users: [{ name: WEB_USER, system: true, home: `/var/lib/${WEB_USER}`, shell: '/usr/sbin/nologin', groups: [], authorizedKeys: [] }],
      dirs: [{ path: '/etc/syncpi/web', mode: '0700', owner: 'root', group: 'root' }],
      files: [
        { path: WEB_HTPASSWD, mode: '0600', owner: 'root', group: 'root', content: htpasswd, secret: true, notify: ['restart-syncpi-web'] },
        { path: `/etc/systemd/system/${WEB_UNIT}`, mode: '0644', owner: 'root', group: 'root', content: unit, notify: ['daemon-reload', 'restart-syncpi-web'] },
      ],
      enable: [WEB_UNIT],
      handlers: [{ name: 'restart-syncpi-web', action: 'restart', unit: WEB_UNIT, liveOnly: true }],
      checks,
      notes,
    };
  },
};
