/** The Syncthing web panel: TLS, password, bind address; firewall rules live in hardening. */
import { SYNCTHING_HOME, type Feature } from '../context.js';

export const panel: Feature = {
  name: 'panel',
  contribute(ctx) {
    const { config, derived, inputs } = ctx;
    const notes: string[] = [];
    if (config.panel.tunnel_only) notes.push(`panel is tunnel-only on ${derived.panelListen}: open it with \`syncpi panel ${config.system.hostname}\``);
    else if (derived.panelLoopback) notes.push(`panel listens on loopback (${derived.panelListen}) only`);
    else if (config.panel.allowed_networks.length === 0 && config.hardening.firewall === 'deny') notes.push(`panel listens on ${derived.panelListen} but no allowed_networks are set: the firewall lets nobody reach it`);
    const files = inputs.tls
      ? [
          { path: `${SYNCTHING_HOME}/https-cert.pem`, mode: '0600', owner: 'syncthing', group: 'syncthing', content: inputs.tls.cert, notify: ['restart-syncthing'] },
          { path: `${SYNCTHING_HOME}/https-key.pem`, mode: '0600', owner: 'syncthing', group: 'syncthing', content: inputs.tls.key, secret: true, notify: ['restart-syncthing'] },
        ]
      : [];
    const host = derived.panelHost === '0.0.0.0' || derived.panelHost === '::' ? '127.0.0.1' : derived.panelHost;
    const url = `https://${host.includes(':') ? `[${host}]` : host}:${derived.panelPort}/`;
    return {
      files,
      checks: [
        // The REST API, not the page: newer Syncthing serves its login page to anyone, and
        // refuses the API with 403 (older: 401) until the password is given.
        { kind: 'http', url: `${url}rest/system/status`, expectUnauthenticated: [401, 403], expectAuthenticated: 200, credential: 'panel', tls: true, description: 'panel asks for a password over TLS' },
        { kind: 'http', url: url.replace('https:', 'http:'), expectUnauthenticated: 307, tls: false, description: 'panel redirects plain HTTP to HTTPS' },
      ],
      notes,
    };
  },
};
