/**
 * Generated files pass the real tools that will read them: systemd-analyze verify for units,
 * sshd -t for the SSH drop-in, nft -c for the firewall, and a real Syncthing that starts from
 * our config.xml and answers its REST API with our API key.
 */
import { randomBytes } from 'node:crypto';
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync, readdirSync } from 'node:fs';
import { createServer } from 'node:net';
import { join, dirname } from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { request } from 'node:https';
import { request as httpRequest } from 'node:http';
import { planFromFile } from '../../src/plan/load.js';
import type { Plan } from '../../src/plan/types.js';
import { fixtures, minimalYaml, tempDir, writeConfig } from '../helpers/fixtures.js';
import { need, systemdParse, verifyUnits, writeRoot } from '../helpers/generated-files.js';
import { WEB_UNIT } from '../../src/plan/features/web.js';

process.env.SYNCPI_TEST_PSK = 'correct horse battery';
process.env.SYNCPI_TEST_PANEL_PASSWORD = 'pa$$word "quoted" <xml>';

function fullPlan(): Plan {
  const dir = tempDir();
  const p = join(dir, 'full.yaml');
  copyFileSync(join(fixtures, 'good', 'full.yaml'), p);
  return planFromFile(p).plan;
}

test('systemd-analyze verify accepts every unit the plan writes', () => {
  need('systemd-analyze');
  need('rsync');
  // full.yaml's drive is exFAT, which cannot hold a read-only share's hard links: readers get their own plan
  const readers = 'sync:\n  devices: [{ id: JB2RL7S-VHDZAR2-G34LH2K-277GIJZ-ZIZMV6I-NNOFVUF-BJ2ZYLO-YNAK7A5, name: friend }]\n  folders: [{ id: photos, path: photos, readers: [friend] }]\ndrive: { label: DATA }\n';
  for (const plan of [fullPlan(), planFromFile(writeConfig(minimalYaml())).plan, planFromFile(writeConfig(minimalYaml(readers))).plan]) {
    const root = writeRoot(plan);
    const unitDir = join(root, 'etc/systemd/system');
    const units = readdirSync(unitDir).map((u) => join(unitDir, u));
    assert.ok(units.length >= 2);
    const problems = verifyUnits(units, { cwd: unitDir, planPaths: new Set(plan.files.map((f) => f.path)) });
    assert.deepEqual(problems, [], 'systemd-analyze verify');
  }
});

test('sshd -t accepts the SSH drop-in', () => {
  const sshd = need('sshd');
  const plan = fullPlan();
  const root = writeRoot(plan);
  const key = join(root, 'hostkey');
  spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
  const cfg = join(root, 'sshd_config');
  writeFileSync(cfg, `Include ${root}/etc/ssh/sshd_config.d/*.conf\nHostKey ${key}\n`);
  mkdirSync('/run/sshd', { recursive: true });
  const r = spawnSync(sshd, ['-t', '-f', cfg], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  const eff = spawnSync(sshd, ['-T', '-f', cfg, '-C', 'user=pi,host=x,addr=192.0.2.1'], { encoding: 'utf8' });
  assert.match(eff.stdout, /^passwordauthentication no$/m);
  assert.match(eff.stdout, /^permitrootlogin no$/m);
  assert.match(eff.stdout, /^port 2222$/m);
  assert.match(eff.stdout, /^allowtcpforwarding local$/m);
});

test('nft -c accepts the firewall for every panel and SSH shape', () => {
  need('nft');
  const shapes = [
    '',
    'panel:\n  listen: 0.0.0.0:8384\n  allowed_networks: [192.168.0.0/16, "fd00::/8"]\nhardening:\n  ssh:\n    allow_from: [10.0.0.0/8]\n',
    'panel:\n  tunnel_only: true\nsync:\n  local_discovery: false\n  listen: [tcp://0.0.0.0:22001]\n',
    `${WEB_SHARE}  web:\n    listen: "[::]:8443"\n    folders: [documents]\n    allowed_networks: [10.0.0.0/8, 192.168.1.0/24, "fd00::/8"]\n`,
  ];
  for (const extra of shapes) {
    const plan = planFromFile(writeConfig(minimalYaml(extra))).plan;
    const root = writeRoot(plan);
    const r = spawnSync('nft', ['-c', '-f', join(root, 'etc/nftables.conf')], { encoding: 'utf8' });
    assert.equal(r.status, 0, `${extra}\n${r.stderr}`);
  }
});

const WEB_SHARE = 'drive:\n  label: DATA\nsync:\n  folders:\n    - { id: documents, path: "my documents" }\n    - { id: camera, path: camera }\naccess:\n';

test('the web access unit: systemd-analyze verify, an exposure of at most 1.5 in systemd-analyze security, and only the chosen folders bound', () => {
  need('systemd-analyze');
  for (const [mode, extra] of [['read-only', ''], ['read-write', '    read_only: false\n']] as const) {
    const plan = planFromFile(writeConfig(minimalYaml(`${WEB_SHARE}  web:\n    folders: [documents]\n${extra}`))).plan;
    const root = writeRoot(plan);
    const unitDir = join(root, 'etc/systemd/system');
    assert.deepEqual(verifyUnits([join(unitDir, WEB_UNIT)], { cwd: unitDir, planPaths: new Set(plan.files.map((f) => f.path)) }), [], `${mode}: systemd-analyze verify`);
    const sec = spawnSync('systemd-analyze', ['security', '--offline=true', '--json=short', WEB_UNIT], { encoding: 'utf8', cwd: unitDir });
    assert.equal(sec.status, 0, sec.stderr);
    // systemd-analyze sums each unmet setting's exposure over all the weights, 10 at most
    const threshold = spawnSync('systemd-analyze', ['security', '--offline=true', '--threshold=15', WEB_UNIT], { encoding: 'utf8', cwd: unitDir });
    const open = (JSON.parse(sec.stdout) as { set: boolean; name: string; exposure: number | null }[]).filter((c) => !c.set && c.exposure).map((c) => c.name);
    assert.equal(threshold.status, 0, `${mode}: exposure above 1.5; unmet: ${open.join(', ')}\n${threshold.stdout.split('\n').slice(-2).join('')}`);
    const parsed = systemdParse(unitDir, [WEB_UNIT]).get(WEB_UNIT)!;
    const binds = mode === 'read-only' ? parsed.bindReadOnlyPaths : parsed.bindPaths;
    assert.deepEqual(binds, ['/srv/sync/my documents:/run/syncpi-web/documents:rbind'], `${mode}: the one chosen folder, at its ID`);
    assert.deepEqual(mode === 'read-only' ? parsed.bindPaths : parsed.bindReadOnlyPaths, []);
    assert.deepEqual(parsed.requiresMountsFor, ['/srv/sync'], 'only with the drive mounted');
    assert.equal(parsed.execStart[0]!.includes('--read-only'), mode === 'read-only');
  }
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
    s.on('error', reject);
  });
}

function get(url: string, headers: Record<string, string> = {}): Promise<{ status: number; body: string; location?: string }> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const fn = u.protocol === 'https:' ? request : httpRequest;
    const req = fn(u, { method: 'GET', headers, rejectUnauthorized: false, timeout: 5000 }, (res) => {
      let body = '';
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, location: res.headers.location }));
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.end();
  });
}

const children: number[] = [];
after(() => {
  for (const pid of children) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

test('a real Syncthing starts from our config and answers with our API key', async () => {
  need('syncthing');
  const [gui, sync] = [await freePort(), await freePort()];
  const dir = tempDir();
  // Folders live on the drive, which mounts under /srv or /mnt.
  const mount = mkdtempSync('/mnt/syncpi-test-');
  after(() => rmSync(mount, { recursive: true, force: true }));
  const folder = join(mount, 'docs folder');
  const cfgPath = writeConfig(
    minimalYaml(`drive:\n  label: TESTDRIVE\n  mount: ${mount}\npanel:\n  listen: 127.0.0.1:${gui}\n  password: { env: SYNCPI_TEST_PANEL_PASSWORD }\nsync:\n  local_discovery: false\n  listen: [tcp://127.0.0.1:${sync}]\n  devices:\n    - id: JB2RL7S-VHDZAR2-G34LH2K-277GIJZ-ZIZMV6I-NNOFVUF-BJ2ZYLO-YNAK7A5\n      name: laptop\n  folders:\n    - id: docs\n      path: "${folder}"\n      type: receiveonly\n      devices: [laptop]\n`),
  );
  const { plan } = planFromFile(cfgPath);
  const home = join(dir, 'home');
  mkdirSync(home, { mode: 0o700 });
  // the plan carries no REST key: syncthing-prepare gives each appliance its own, as here
  const apiKey = randomBytes(16).toString('hex');
  const seed = plan.files.find((f) => f.path === '/etc/syncpi/syncthing/config.xml')!.content;
  assert.equal(seed.split('<apikey></apikey>').length, 2, 'one empty <apikey> for the appliance to fill');
  writeFileSync(join(home, 'config.xml'), seed.replace('<apikey></apikey>', `<apikey>${apiKey}</apikey>`));
  const child = spawn('syncthing', ['serve', `--home=${home}`, '--no-browser', '--no-restart', '--no-upgrade'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, STNODEFAULTFOLDER: '1', STNOUPGRADE: '1' },
  });
  children.push(child.pid!);
  let log = '';
  child.stdout.on('data', (c) => (log += c));
  child.stderr.on('data', (c) => (log += c));
  const base = `https://127.0.0.1:${gui}`;
  let status: { status: number; body: string } | null = null;
  for (let i = 0; i < 60 && !status; i++) {
    try {
      const r = await get(`${base}/rest/system/status`, { 'X-API-Key': apiKey });
      if (r.status === 200) status = r;
    } catch {
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  try {
    assert.ok(status, `Syncthing did not answer on ${base}:\n${log}`);
    assert.match(JSON.parse(status.body).myID, /^[A-Z2-7]{7}(-[A-Z2-7]{7}){7}$/);
    assert.equal((await get(`${base}/rest/system/status`)).status, 401, 'REST without API key or password is refused');
    assert.equal((await get(`${base}/`)).status, 401, 'panel asks for a password');
    const auth = 'Basic ' + Buffer.from(`admin:${process.env.SYNCPI_TEST_PANEL_PASSWORD}`).toString('base64');
    assert.equal((await get(`${base}/`, { Authorization: auth })).status, 200, 'our bcrypt hash accepts the password');
    const plain = await get(`http://127.0.0.1:${gui}/`);
    assert.equal(plain.status, 307, 'plain HTTP is redirected');
    assert.match(plain.location ?? '', /^https:/);
    const opts = JSON.parse((await get(`${base}/rest/config/options`, { 'X-API-Key': apiKey })).body);
    assert.equal(opts.globalAnnounceEnabled, false);
    assert.equal(opts.relaysEnabled, false);
    assert.equal(opts.natEnabled, false);
    assert.equal(opts.localAnnounceEnabled, false);
    assert.equal(opts.urAccepted, -1);
    assert.equal(opts.autoUpgradeIntervalH, 0);
    const folders = JSON.parse((await get(`${base}/rest/config/folders`, { 'X-API-Key': apiKey })).body) as { id: string; type: string; path: string; devices: { deviceID: string }[] }[];
    assert.equal(folders.length, 1);
    assert.equal(folders[0]!.type, 'receiveonly');
    assert.equal(folders[0]!.path, folder);
    assert.ok(folders[0]!.devices.some((d) => d.deviceID.startsWith('JB2RL7S')));
  } finally {
    child.kill('SIGTERM');
  }
});
