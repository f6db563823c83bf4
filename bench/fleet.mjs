#!/usr/bin/env node
// Benchmark (not a test): the same change applied to HOSTS real test hosts (systemd-nspawn +
// sshd, one network namespace each) by syncpi and by the equivalent Ansible playbook
// (bench/ansible/fleet.yml, Ansible from Debian), then a no-op rerun of each; side by side.
//
//   node --import tsx bench/fleet.mjs [--hosts 16] [--files 20]
//
// Each tool gets its own freshly booted hosts, so both start from the same state. Both work on
// every host at once (syncpi --parallel = Ansible forks = HOSTS). Ansible runs with pipelining
// and ControlPersist (its fastest usual setup). "Round trips" are SSH command executions per
// host: channels for syncpi, `SSH: EXEC` lines in Ansible's -vvv output.
import { mkdtemp, rm, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir, cpus } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { $ } from 'zx';
import { startHosts, stopAll, writeKnownHosts } from '../test/helpers/hosts.ts';
import { demoPlan } from '../test/helpers/hosts-plan.ts';
import { applyToHost } from '../src/provision/host.ts';
import { archiveOf } from '../src/targets/apply.ts';
import { runFleet } from '../src/fleet/run.ts';

const here = path.dirname(fileURLToPath(import.meta.url));
const arg = (name, dflt) => {
  const i = process.argv.indexOf(name);
  return i > 0 ? Number(process.argv[i + 1]) : dflt;
};
const HOSTS = arg('--hosts', 16);
const FILES = arg('--files', 20);
const SIZE = 256;

const work = await mkdtemp(path.join(tmpdir(), 'syncpi-bench-fleet-'));
const secs = (ms) => (ms / 1000).toFixed(2);

async function syncpiRun(hosts, kh, plan) {
  const t0 = Date.now();
  const archive = await archiveOf(plan);
  const specs = hosts.map((h) => ({ name: h.name, address: h.ip, user: h.user, port: h.port }));
  const res = await runFleet(
    specs,
    (h) => applyToHost(h, archive, { policy: { identities: [hosts[0].keyPath], knownHostsFile: kh } }),
    { parallel: HOSTS, runDir: path.join(work, `syncpi-run-${Date.now()}`), display: 'quiet' },
  );
  const ms = Date.now() - t0;
  const failed = res.reports.filter((r) => r.status === 'failed');
  if (failed.length) throw new Error(`syncpi failed on ${failed.map((r) => `${r.name}: ${r.failure?.message ?? r.error?.message}`).join('; ')}`);
  return {
    ms,
    changed: res.reports.filter((r) => r.status === 'changed').length,
    roundTrips: res.reports.reduce((a, r) => a + r.roundTrips, 0) / res.reports.length,
  };
}

async function ansibleRun(hosts, kh, filesDir) {
  const inv = path.join(work, 'inventory.ini');
  await writeFile(
    inv,
    '[all]\n' +
      hosts.map((h) => `${h.name} ansible_host=${h.ip} ansible_user=${h.user} ansible_ssh_private_key_file=${h.keyPath}`).join('\n') +
      '\n',
  );
  const cfg = path.join(work, 'ansible.cfg');
  await writeFile(
    cfg,
    [
      '[defaults]',
      `forks = ${HOSTS}`,
      'host_key_checking = True',
      'interpreter_python = /usr/bin/python3',
      'retry_files_enabled = False',
      `local_tmp = ${path.join(work, 'ansible-tmp')}`,
      '[ssh_connection]',
      'pipelining = True',
      `ssh_args = -o ControlMaster=auto -o ControlPersist=60s -o UserKnownHostsFile=${kh} -o StrictHostKeyChecking=yes`,
      `control_path_dir = ${path.join(work, 'cp')}`,
      '',
    ].join('\n'),
  );
  const t0 = Date.now();
  const env = { ...process.env, ANSIBLE_CONFIG: cfg, ANSIBLE_NOCOLOR: '1', ANSIBLE_FORCE_COLOR: '0' };
  const playbook = path.join(here, 'ansible/fleet.yml');
  const r = await $({ env, nothrow: true, quiet: true })`ansible-playbook -vvv -i ${inv} ${playbook} -e ${`files_dir=${filesDir}`} -e ${`file_count=${FILES}`}`;
  const ms = Date.now() - t0;
  if (r.exitCode !== 0) throw new Error(`ansible-playbook failed (${r.exitCode}):\n${r.stdall.split('\n').slice(-40).join('\n')}`);
  const execs = (r.stdout.match(/SSH: EXEC ssh/g) ?? []).length;
  const recap = r.stdout.split('PLAY RECAP')[1] ?? '';
  const changedHosts = [...recap.matchAll(/changed=(\d+)/g)].filter((m) => Number(m[1]) > 0).length;
  return { ms, changed: changedHosts, roundTrips: execs / hosts.length };
}

async function withHosts(fn) {
  const t0 = Date.now();
  const hosts = await startHosts(HOSTS);
  const bootMs = Date.now() - t0;
  const kh = await writeKnownHosts(path.join(work, `known_hosts-${Date.now()}`), hosts);
  try {
    return { bootMs, ...(await fn(hosts, kh)) };
  } finally {
    await stopAll();
  }
}

try {
  const plan = demoPlan({ version: 1, files: FILES, size: SIZE });
  // The exact same file contents for Ansible's copy tasks.
  const filesDir = path.join(work, 'files');
  await mkdir(filesDir);
  for (const f of plan.files) await writeFile(path.join(filesDir, path.basename(f.path)), f.content);

  process.stderr.write(`booting ${HOSTS} hosts for syncpi…\n`);
  const s = await withHosts(async (hosts, kh) => ({ change: await syncpiRun(hosts, kh, plan), noop: await syncpiRun(hosts, kh, plan) }));
  process.stderr.write(`booting ${HOSTS} fresh hosts for Ansible…\n`);
  const a = await withHosts(async (hosts, kh) => ({ change: await ansibleRun(hosts, kh, filesDir), noop: await ansibleRun(hosts, kh, filesDir) }));

  const rows = [
    ['', 'syncpi', 'ansible', 'ansible/syncpi'],
    ['change: wall time', `${secs(s.change.ms)} s`, `${secs(a.change.ms)} s`, `${(a.change.ms / s.change.ms).toFixed(1)}×`],
    ['change: hosts changed', String(s.change.changed), String(a.change.changed), ''],
    ['change: SSH round trips/host', s.change.roundTrips.toFixed(1), a.change.roundTrips.toFixed(1), ''],
    ['no-op: wall time', `${secs(s.noop.ms)} s`, `${secs(a.noop.ms)} s`, `${(a.noop.ms / s.noop.ms).toFixed(1)}×`],
    ['no-op: hosts changed', String(s.noop.changed), String(a.noop.changed), ''],
    ['no-op: SSH round trips/host', s.noop.roundTrips.toFixed(1), a.noop.roundTrips.toFixed(1), ''],
  ];
  const w = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  console.log(`fleet benchmark: ${HOSTS} hosts, ${FILES} files + 1 unit + 1 package, ${cpus().length} CPUs`);
  console.log(`host boot: ${secs(s.bootMs)} s (syncpi set), ${secs(a.bootMs)} s (Ansible set) for ${HOSTS} hosts`);
  for (const r of rows) console.log(r.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  '));
} finally {
  await stopAll();
  await rm(work, { recursive: true, force: true });
}
