/**
 * Small hand-built Plans for the SSH/fleet tests: they exercise the real converger over real SSH
 * (package install from the hosts' local repository, atomic files, a unit with a restart handler)
 * without depending on every feature module of the appliance.
 */
import type { Plan, PlanFile } from '../../src/plan/types.js';

export interface DemoPlanOptions {
  /** Bumping it changes every managed file's content (and restarts the demo service). */
  version: number;
  /** How many managed files (the interruption test wants many). */
  files?: number;
  /** Bytes of filler per file, so each write takes a little time. */
  size?: number;
  packages?: string[];
  hostname?: string;
}

export const DEMO_DIR = '/etc/syncpi-demo';

export function demoFileContent(i: number, version: number, size: number): string {
  const head = `# demo file ${i} version ${version}\n`;
  return head + `v${version}-`.repeat(Math.max(0, Math.ceil((size - head.length) / 4))).slice(0, Math.max(0, size - head.length)) + '\n';
}

export function demoPlan(o: DemoPlanOptions): Plan {
  const n = o.files ?? 3;
  const size = o.size ?? 64;
  const files: PlanFile[] = [];
  for (let i = 0; i < n; i++) {
    files.push({
      path: `${DEMO_DIR}/f${String(i).padStart(3, '0')}.conf`,
      mode: '0644',
      owner: 'root',
      group: 'root',
      content: demoFileContent(i, o.version, size),
      notify: i === 0 ? ['restart-demo'] : [],
      feature: 'services',
    });
  }
  files.push({
    path: '/etc/systemd/system/syncpi-demo.service',
    mode: '0644',
    owner: 'root',
    group: 'root',
    content: `[Unit]\nDescription=syncpi demo service\n\n[Service]\nExecStart=/bin/sleep infinity\n\n[Install]\nWantedBy=multi-user.target\n`,
    notify: ['daemon-reload'],
    feature: 'services',
  });
  return {
    format: 1,
    name: 'demo',
    hostname: o.hostname ?? 'demo',
    base: { kind: 'debian', suite: 'bookworm', arch: 'arm64' },
    configHash: '0'.repeat(64),
    packages: { install: o.packages ?? ['syncthing'], purge: [], keep: [] },
    users: [],
    dirs: [{ path: DEMO_DIR, mode: '0755', owner: 'root', group: 'root', feature: 'services' }],
    files,
    units: { enable: ['syncpi-demo.service'], disable: [], mask: [] },
    sysctls: {},
    kernelParams: {},
    handlers: [
      { name: 'daemon-reload', action: 'daemon-reload', liveOnly: true },
      { name: 'restart-demo', action: 'restart', unit: 'syncpi-demo.service', liveOnly: true },
    ],
    checks: [],
    notes: [],
    models: [],
  };
}
