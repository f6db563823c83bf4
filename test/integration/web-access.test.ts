/**
 * access.web with the real server: rclone runs with the command line of the plan's unit, as
 * systemd itself parsed it (the credentials directory and the served tree, which systemd and the
 * unit's namespace provide on the Pi, mapped to a temporary directory), the plan's htpasswd and a
 * self-signed certificate. curl speaks WebDAV to it, and a headless Chromium loads the listing
 * (its screenshot is kept under the temporary directory's syncpi-test-artifacts).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createConnection } from 'node:net';
import { join } from 'node:path';
import { planFromFile } from '../../src/plan/load.js';
import { WEB_HTPASSWD, WEB_ROOT, WEB_UNIT } from '../../src/plan/features/web.js';
import { freePort } from '../../src/vm/qemu.js';
import { minimalYaml, tempDir, writeConfig } from '../helpers/fixtures.js';
import { need, systemdParse, writeRoot } from '../helpers/generated-files.js';
import { browse, chromium, curl } from '../helpers/web-client.js';

process.env.SYNCPI_TEST_PANEL_PASSWORD = 'web pa$$word "quoted"';
const PASSWORD = process.env.SYNCPI_TEST_PANEL_PASSWORD;
/** Where systemd puts a unit's LoadCredential= files (%d). */
const CREDENTIALS = `/run/credentials/${WEB_UNIT}`;

const pids: number[] = [];
after(() => {
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
});

async function waitForPort(port: number, ms: number, log: () => string): Promise<void> {
  const until = Date.now() + ms;
  while (Date.now() < until) {
    const ok = await new Promise<boolean>((res) => {
      const s = createConnection({ host: '127.0.0.1', port }, () => (s.destroy(), res(true)));
      s.on('error', () => res(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`rclone did not listen on ${port} within ${ms} ms:\n${log()}`);
}

test('rclone with the unit\'s own command line serves the folder read-only to the htpasswd users only; Chromium shows the listing', { timeout: 300_000 }, async () => {
  need('rclone');
  need('curl');
  need('openssl');
  need('chromium');
  const port = await freePort();
  const { plan } = planFromFile(
    writeConfig(minimalYaml(`panel:\n  password: { env: SYNCPI_TEST_PANEL_PASSWORD }\nsync:\n  folders:\n    - { id: documents, path: documents }\naccess:\n  web:\n    listen: 127.0.0.1:${port}\n    folders: [documents]\n`)),
  );
  const root = writeRoot(plan);
  const argv = systemdParse(join(root, 'etc/systemd/system'), [WEB_UNIT]).get(WEB_UNIT)!.execStart;
  assert.equal(argv.length, 1, 'one ExecStart=');
  const words = argv[0]!.map((w) => {
    assert.ok(w !== null, 'no word of the command line is a variable');
    return w;
  });
  assert.deepEqual(words.slice(0, 3), ['/usr/bin/rclone', 'serve', 'webdav']);
  assert.ok(words.includes('--read-only'), 'a share is read-only unless the config says otherwise');

  // What the unit's namespace and systemd's credentials give the server on the Pi.
  const dir = tempDir('syncpi-web-');
  const served = join(dir, 'served');
  const creds = join(dir, 'credentials');
  mkdirSync(join(served, 'documents'), { recursive: true });
  mkdirSync(creds);
  const body = `hello from the drive ${Date.now()}\n`;
  writeFileSync(join(served, 'documents', 'hello.txt'), body);
  writeFileSync(join(creds, 'htpasswd'), plan.files.find((f) => f.path === WEB_HTPASSWD)!.content);
  const ssl = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=syncpi', '-keyout', join(creds, 'tls-key'), '-out', join(creds, 'tls-cert')], { encoding: 'utf8' });
  assert.equal(ssl.status, 0, ssl.stderr);
  assert.equal(words.filter((w) => w === WEB_ROOT).length, 1, `the unit serves ${WEB_ROOT}`);
  const run = words.map((w) => (w === WEB_ROOT ? served : w.startsWith(`${CREDENTIALS}/`) ? join(creds, w.slice(CREDENTIALS.length + 1)) : w));
  assert.deepEqual(run.filter((w) => w.startsWith(creds)).sort(), ['htpasswd', 'tls-cert', 'tls-key'].map((n) => join(creds, n)), 'certificate, key and users come from the credentials');

  const child = spawn(run[0]!, run.slice(1), { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH, HOME: dir } });
  pids.push(child.pid!);
  let log = '';
  child.stdout.on('data', (c) => (log += c));
  child.stderr.on('data', (c) => (log += c));
  try {
    await waitForPort(port, 30_000, () => log);
    const base = `https://127.0.0.1:${port}`;
    const auth = ['-u', `admin:${PASSWORD}`];

    assert.equal(curl([`${base}/documents/`]).status, 401, 'no credentials');
    assert.equal(curl(['-u', 'admin:not the password', `${base}/documents/`]).status, 401, 'wrong password');
    assert.equal(curl(['-u', `nobody:${PASSWORD}`, `${base}/documents/`]).status, 401, 'a user not in htpasswd');

    const list = curl([...auth, '-X', 'PROPFIND', '-H', 'Depth: 1', `${base}/documents/`]);
    assert.equal(list.status, 207, list.body);
    assert.match(list.body, /<D:href>\/documents\/hello\.txt<\/D:href>/);

    const got = curl([...auth, `${base}/documents/hello.txt`]);
    assert.equal(got.status, 200);
    assert.equal(got.body, body);

    // rclone 1.60's WebDAV answers a PUT it may not do with 404 (its WebDAV library's answer to
    // any file it cannot open), DELETE and MKCOL with 405: each is refused, and nothing changes.
    const upload = join(dir, 'upload.txt');
    writeFileSync(upload, 'must not arrive\n');
    const put = curl([...auth, '-T', upload, `${base}/documents/new.txt`]);
    assert.ok([403, 404, 405].includes(put.status), `PUT on a read-only share: ${put.status}`);
    assert.ok(!existsSync(join(served, 'documents', 'new.txt')), 'nothing was written');
    assert.equal(curl([...auth, '-X', 'DELETE', `${base}/documents/hello.txt`]).status, 405);
    assert.equal(curl([...auth, '-X', 'MKCOL', `${base}/documents/sub`]).status, 405);
    assert.equal(readFileSync(join(served, 'documents', 'hello.txt'), 'utf8'), body, 'the file is still there');

    assert.ok(!chromium(join(dir, 'chromium-anon'), ['--dump-dom', `${base}/documents/`]).includes('hello.txt'), 'no listing without credentials');
    const page = browse(join(dir, 'chromium'), `https://admin:${encodeURIComponent(PASSWORD)}@127.0.0.1:${port}/documents/`, 'web-access-listing');
    assert.match(page.dom, /hello\.txt/, 'the listing page names the file');
    assert.equal(readFileSync(page.screenshot).subarray(1, 4).toString(), 'PNG', `a screenshot at ${page.screenshot}`);
    process.stderr.write(`web access listing screenshot: ${page.screenshot}\n`);
  } finally {
    child.kill('SIGTERM');
  }
});
