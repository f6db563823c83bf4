/**
 * The web access unit under a real systemd (a test host: systemd-nspawn, real PID 1): the plan's
 * unit and htpasswd, rclone, a certificate where Syncthing keeps the panel's, and a drive layout
 * with a chosen folder, one not chosen, and a link out of the chosen one. From this machine the
 * server lists and serves the chosen folder only; inside the unit's namespace nothing else of
 * the drive and nothing of Syncthing's home or /etc/syncpi is there.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { planFromFile } from '../../src/plan/load.js';
import { WEB_HTPASSWD, WEB_UNIT } from '../../src/plan/features/web.js';
import { minimalYaml, tempDir, writeConfig } from '../helpers/fixtures.js';
import { need } from '../helpers/generated-files.js';
import { startHosts, stopAll, type TestHost } from '../helpers/hosts.js';
import { curl } from '../helpers/web-client.js';

process.env.SYNCPI_TEST_PANEL_PASSWORD = 'unit test password';
const PASSWORD = process.env.SYNCPI_TEST_PANEL_PASSWORD;
let host: TestHost;

before(async () => {
  host = (await startHosts(1, { prefix: 'web' }))[0]!;
});
after(async () => {
  await stopAll();
});

async function sh(script: string): Promise<string> {
  const r = await host.exec(['sh', '-c', script]);
  assert.equal(r.exitCode, 0, `${script}\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

test('under systemd the unit serves only the chosen folder, sees nothing else of the drive, and refuses writes', { timeout: 300_000 }, async () => {
  const rclone = need('rclone');
  need('openssl');
  const { plan } = planFromFile(
    writeConfig(minimalYaml('panel:\n  password: { env: SYNCPI_TEST_PANEL_PASSWORD }\nsync:\n  folders:\n    - { id: documents, path: my docs }\n    - { id: private, path: private }\naccess:\n  web:\n    folders: [documents]\n')),
  );
  const unit = plan.files.find((f) => f.path === `/etc/systemd/system/${WEB_UNIT}`)!;
  const htpasswd = plan.files.find((f) => f.path === WEB_HTPASSWD)!;
  const user = plan.users.find((u) => u.feature === 'web')!;
  const dir = tempDir('syncpi-web-unit-');
  const ssl = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '2', '-subj', '/CN=syncpi', '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], { encoding: 'utf8' });
  assert.equal(ssl.status, 0, ssl.stderr);

  // rclone is this machine's (same Debian release and architecture as the test host's rootfs)
  copyFileSync(rclone, join(host.root, 'usr/bin/rclone'));
  for (const [path, content] of [[unit.path, unit.content], [htpasswd.path, htpasswd.content], ['/var/lib/syncthing/https-cert.pem', readFileSync(join(dir, 'cert.pem'), 'utf8')], ['/var/lib/syncthing/https-key.pem', readFileSync(join(dir, 'key.pem'), 'utf8')]] as const) {
    mkdirSync(join(host.root, path, '..'), { recursive: true });
    writeFileSync(join(host.root, path), content);
  }
  // What the converger and Syncthing make: the users, the folders (0770, files as Syncthing
  // leaves them), Syncthing's home (owner only), root's files 0600.
  await sh(`set -e
chmod 0755 /usr/bin/rclone
getent passwd syncthing >/dev/null || useradd --system --user-group --home-dir /var/lib/syncthing --no-create-home --shell /usr/sbin/nologin syncthing
useradd --system --user-group --home-dir ${user.home} --no-create-home --shell ${user.shell} ${user.name}
chown -R syncthing:syncthing /var/lib/syncthing && chmod 0700 /var/lib/syncthing && chmod 0600 /var/lib/syncthing/https-*.pem
chmod 0600 ${htpasswd.path} && chmod 0700 /etc/syncpi/web
install -d -m 0770 -o syncthing -g syncthing "/srv/sync/my docs" /srv/sync/private
echo hello > "/srv/sync/my docs/hello.txt" && echo secret > /srv/sync/private/secret.txt
ln -s /srv/sync/private/secret.txt "/srv/sync/my docs/link.txt"
chown -h syncthing:syncthing "/srv/sync/my docs/hello.txt" "/srv/sync/my docs/link.txt" /srv/sync/private/secret.txt
chmod 0644 "/srv/sync/my docs/hello.txt" && chmod 0640 /srv/sync/private/secret.txt
systemctl daemon-reload
systemctl start ${WEB_UNIT}`);
  const active = await host.exec(['bash', '-c', `for i in $(seq 1 30); do systemctl is-active --quiet ${WEB_UNIT} && exec 3<>/dev/tcp/127.0.0.1/8443 2>/dev/null && exit 0; sleep 1; done; systemctl status --no-pager ${WEB_UNIT}; journalctl -u ${WEB_UNIT} --no-pager | tail -n 30; exit 1`]);
  assert.equal(active.exitCode, 0, `${WEB_UNIT} did not start:\n${active.stdout}${active.stderr}`);

  const base = `https://${host.ip}:8443`;
  const auth = ['-u', `admin:${PASSWORD}`];
  assert.equal(curl([`${base}/`]).status, 401);
  const top = curl([...auth, '-X', 'PROPFIND', '-H', 'Depth: 1', `${base}/`]);
  assert.equal(top.status, 207, top.body);
  const hrefs = [...top.body.matchAll(/<D:href>([^<]*)<\/D:href>/g)].map((m) => m[1]).sort();
  assert.deepEqual(hrefs, ['/', '/documents/'], 'only the chosen folder, under its ID');
  const docs = curl([...auth, '-X', 'PROPFIND', '-H', 'Depth: 1', `${base}/documents/`]);
  assert.deepEqual([...docs.body.matchAll(/<D:href>([^<]*)<\/D:href>/g)].map((m) => m[1]).sort(), ['/documents/', '/documents/hello.txt'], 'the link out of the folder is not served');
  assert.equal(curl([...auth, `${base}/documents/hello.txt`]).body, 'hello\n');
  assert.notEqual(curl([...auth, `${base}/documents/link.txt`]).status, 200);
  const put = curl([...auth, '-X', 'PUT', '--data-binary', 'x', `${base}/documents/new.txt`]);
  assert.ok([403, 404, 405].includes(put.status), `PUT answered ${put.status}`);
  await sh('test ! -e "/srv/sync/my docs/new.txt"');

  // The server's own view: its mount namespace, as the service user.
  const pid = (await sh(`systemctl show -p MainPID --value ${WEB_UNIT}`)).trim();
  assert.match(pid, /^[1-9][0-9]*$/);
  const view = async (script: string) => host.exec(['nsenter', '-t', pid, '-m', '--', 'setpriv', `--reuid=${user.name}`, '--regid=syncthing', '--init-groups', 'sh', '-c', script]);
  assert.equal((await view('ls -A /srv/sync')).stdout.trim(), '', 'the drive is an empty tree');
  assert.equal((await view('ls -A /run/syncpi-web')).stdout.trim(), 'documents');
  assert.equal((await view('cat /run/syncpi-web/documents/hello.txt')).stdout.trim(), 'hello', 'it reads the folder through the group');
  assert.notEqual((await view('touch /run/syncpi-web/documents/x')).exitCode, 0, 'the folder is read-only in there');
  for (const p of ['/var/lib/syncthing', '/etc/syncpi', '/var/lib/syncthing/https-key.pem']) {
    assert.notEqual((await view(`ls ${p}`)).exitCode, 0, `${p} is out of reach`);
  }
});
