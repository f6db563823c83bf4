/** Hand-built Plans for the converger tests (the compiler is tested elsewhere). */
import { authorizedKeysItems, sysctlItems } from '../../src/plan/derived-files.js';
import type { Plan, PlanFile, PlanUser } from '../../src/plan/types.js';

export function emptyPlan(overrides: Partial<Plan> = {}): Plan {
  return {
    format: 1,
    name: 'test',
    hostname: 'testpi',
    base: { kind: 'debian', suite: 'bookworm', arch: 'arm64' },
    configHash: '0'.repeat(64),
    packages: { install: [], purge: [], keep: [] },
    users: [],
    dirs: [],
    files: [],
    units: { enable: [], disable: [], mask: [] },
    sysctls: {},
    kernelParams: {},
    handlers: [],
    checks: [],
    notes: [],
    models: [],
    ...overrides,
  };
}

export function file(path: string, content: string, extra: Partial<PlanFile> = {}): PlanFile {
  return { path, mode: '0644', owner: 'root', group: 'root', content, notify: [], feature: 'system', ...extra };
}

/** A user with SSH keys, as the compiler lists it: the user, its ~/.ssh and authorized_keys. */
export function userWithKeys(user: PlanUser, keys: string[]): Pick<Plan, 'users' | 'dirs' | 'files'> {
  return { users: [user], ...authorizedKeysItems(user, keys, user.feature) };
}

/** A Plan that exercises every step of the converger on the amd64 test rootfs. */
export function demoPlan(): Plan {
  const pi = userWithKeys({ name: 'pi', system: false, home: '/home/pi', shell: '/bin/bash', groups: [], feature: 'system' }, ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTests test@laptop']);
  const sysctls = { 'fs.inotify.max_user_watches': '204800' };
  const sysctl = sysctlItems(sysctls, 'system');
  return emptyPlan({
    packages: { install: ['hello', 'file'], purge: ['nano'], keep: [] },
    users: [{ name: 'syncd', system: true, home: '/var/lib/syncd', shell: '/usr/sbin/nologin', groups: ['syncgrp'], feature: 'sync' }, ...pi.users],
    dirs: [{ path: '/srv/sync', mode: '0750', owner: 'syncd', group: 'syncd', feature: 'drive' }, ...pi.dirs],
    files: [
      file('/etc/syncpi-demo.conf', 'greeting = hello\n', { notify: ['restart-demo'] }),
      file('/etc/syncd/secret.key', 'api-key: s3cr3t-value\n', { mode: '0600', owner: 'syncd', group: 'syncd', secret: true, notify: ['restart-demo'] }),
      file('/etc/systemd/system/syncpi-demo.service', '[Unit]\nDescription=demo\n[Service]\nExecStart=/bin/sleep infinity\n[Install]\nWantedBy=multi-user.target\n'),
      file('/usr/local/bin/demo tool', '#!/bin/sh\necho "$(reboot)" `id` \'q\' ../x ünïcødé\n', { mode: '0755' }),
      ...pi.files,
      ...sysctl.files,
    ],
    units: { enable: ['syncpi-demo.service'], disable: [], mask: ['systemd-timesyncd.service'] },
    sysctls,
    handlers: [{ name: 'restart-demo', action: 'restart', unit: 'syncpi-demo.service', liveOnly: true }, ...sysctl.handlers],
    checks: [
      { kind: 'file', path: '/etc/syncpi-demo.conf', mode: '0644', owner: 'root', description: 'demo config' },
      { kind: 'package-present', name: 'hello', description: 'hello installed' },
      { kind: 'package-absent', name: 'nano', description: 'nano purged' },
      { kind: 'service-enabled', unit: 'syncpi-demo.service', description: 'demo enabled' },
      { kind: 'service-active', unit: 'syncpi-demo.service', description: 'demo running' },
      { kind: 'sysctl', key: 'fs.inotify.max_user_watches', value: '204800', description: 'inotify watches' },
      { kind: 'http', url: 'https://127.0.0.1:8384/', expectUnauthenticated: 401, tls: true, description: 'panel' },
      { kind: 'command', argv: ['test', '-d', '/srv/sync'], expectExit: 0, liveOnly: false, description: 'drive dir' },
    ],
  });
}
