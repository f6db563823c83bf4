/**
 * rsync into single folders (access.rsync) on a real host (systemd-nspawn, real sshd, Debian's
 * rsync and rrsync), driven by a real rsync over SSH from this machine:
 *  - a write-only key uploads, and can neither list nor download nor delete;
 *  - a read-only key downloads, and cannot upload;
 *  - no key leaves its folder: "../", absolute paths, a link in the folder that points out;
 *  - no key opens a shell, runs another command, or forwards ports (-L, -R, -W);
 *  - what is uploaded is Syncthing's to read, the upload account reaches no other folder;
 *  - access leaving the config leaves the host (account, keys, the folder's group).
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { execa } from 'execa';
import { startHosts, stopAll, writeKnownHosts, type TestHost } from '../helpers/hosts.js';
import { jsonResult, syncpi, testAppliance, writeYaml } from '../helpers/appliance-config.js';
import type { HostReport } from '../../src/provision/host.js';

let h: TestHost;
let dir: string;
let kh: string;
let config: Record<string, any>;
const key = { wo: '', ro: '', rw: '' };
const ACCOUNT = 'syncpi-rsync';

async function sh(script: string): Promise<string> {
  const r = await h.exec(['sh', '-c', script]);
  assert.equal(r.exitCode, 0, `${script}: ${r.stderr}`);
  return r.stdout.trim();
}

function sshArgs(k: string): string[] {
  return ['-i', k, '-o', 'IdentitiesOnly=yes', '-o', `UserKnownHostsFile=${kh}`, '-o', 'StrictHostKeyChecking=yes', '-o', 'BatchMode=yes', '-o', 'ConnectTimeout=10'];
}

function rsync(k: string, args: string[]) {
  return execa('rsync', ['-e', `ssh ${sshArgs(k).join(' ')}`, ...args], { reject: false, timeout: 60_000 });
}

function ssh(k: string, args: string[], timeout = 30_000) {
  return execa('ssh', [...sshArgs(k), ...args], { reject: false, timeout, stdin: 'ignore' });
}

const remote = (p = ''): string => `${ACCOUNT}@${h.ip}:${p}`;

async function provision(): Promise<HostReport> {
  const file = await writeYaml(path.join(dir, 'appliance.yaml'), config);
  const r = await syncpi(['provision', '--json', '-i', h.keyPath, '--known-hosts', kh, `${h.user}@${h.ip}`, file]);
  assert.equal(r.exitCode, 0, `${r.stdout.slice(-3000)}\n${r.stderr}`);
  return jsonResult<HostReport>(r.stdout);
}

/** Is there an SSH banner at 127.0.0.1:port within a few seconds? (a forwarded sshd would send one) */
function bannerAt(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    let got = '';
    const done = () => {
      s.destroy();
      resolve(got);
    };
    s.on('data', (d) => (got += d.toString('latin1')));
    s.on('error', done);
    s.on('close', done);
    setTimeout(done, 4000);
  });
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.listen(0, '127.0.0.1', () => {
      const p = (srv.address() as net.AddressInfo).port;
      srv.close(() => resolve(p));
    });
    srv.on('error', reject);
  });
}

before(async () => {
  [h] = await startHosts(1, { prefix: 'rs' }) as [TestHost];
  dir = await mkdtemp(path.join(tmpdir(), 'syncpi-rsync-'));
  kh = await writeKnownHosts(path.join(dir, 'known_hosts'), [h]);
  for (const k of ['wo', 'ro', 'rw'] as const) {
    key[k] = path.join(dir, `key-${k}`);
    await execa('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', `test-${k}`, '-f', key[k]]);
  }
  config = testAppliance({ pubKey: `${h.keyPath}.pub`, drive: 'none' });
  config.sync.folders.push({ id: 'shared', label: 'Shared', path: 'shared', type: 'sendreceive', devices: ['laptop'] });
  config.access = {
    rsync: [
      { name: 'phone-backup', key: { file: `${key.wo}.pub` }, folder: 'camera', mode: 'write-only' },
      { name: 'laptop-restore', key: (await readFile(`${key.ro}.pub`, 'utf8')).trim(), folder: '/srv/sync/documents', mode: 'read-only' },
      { name: 'exchange', key: { file: `${key.rw}.pub` }, folder: 'shared', mode: 'read-write' },
    ],
  };
  const rep = await provision();
  assert.equal(rep.status, 'changed');
  // Syncthing made the folders at its start; they carry the upload group once it has run.
  await sh('for i in $(seq 1 30); do [ "$(stat -c %G /srv/sync/camera)" = syncpi-upload ] && exit 0; sleep 1; done; exit 1');
});

after(async () => {
  await stopAll();
  if (dir) await rm(dir, { recursive: true, force: true });
});

describe('rsync keys, each restricted to one folder', () => {
  test('the account: unprivileged, keys pinned by restrict + forced command, sshd lets it in', async () => {
    assert.match(await sh(`getent passwd ${ACCOUNT}`), /^syncpi-rsync:x:\d+:\d+::\/var\/lib\/syncpi-rsync:\/bin\/sh$/);
    assert.deepEqual((await sh(`id -nG ${ACCOUNT}`)).split(' ').sort(), ['syncpi-rsync', 'syncpi-upload']);
    assert.ok((await sh('id -nG syncthing')).split(' ').includes('syncpi-upload'));
    const ak = await sh(`cat /var/lib/${ACCOUNT}/.ssh/authorized_keys`);
    assert.match(ak, /^restrict,command="\/usr\/local\/lib\/syncpi\/rsync-folder -wo \/srv\/sync\/camera" ssh-ed25519 \S+ phone-backup$/m);
    assert.match(ak, /^restrict,command="\/usr\/local\/lib\/syncpi\/rsync-folder -ro \/srv\/sync\/documents" ssh-ed25519 \S+ laptop-restore$/m);
    assert.equal(ak.split('\n').length, 3);
    assert.match(await sh('sshd -T'), /^allowusers pi\nallowusers syncpi-rsync$/m);
    assert.match(await sh(`sshd -T -C user=${ACCOUNT},host=x,addr=10.0.0.1`), /^allowtcpforwarding no$/m);
    // Folders with keys: the shared group, setgid; the others: Syncthing's alone.
    assert.equal(await sh('stat -c "%a %U %G" /srv/sync/camera /srv/sync/documents /srv/sync/shared | sort -u'), '2770 syncthing syncpi-upload');
    await sh('mkdir -p /srv/sync/private && chown syncthing:syncthing /srv/sync/private && chmod 0770 /srv/sync/private && echo secret > /srv/sync/private/s && chown syncthing:syncthing /srv/sync/private/s');
    const peek = await h.exec(['setpriv', `--reuid=${ACCOUNT}`, `--regid=${ACCOUNT}`, '--init-groups', 'cat', '/srv/sync/private/s']);
    assert.notEqual(peek.exitCode, 0, 'the upload account reads no folder without a key');
    const conf = await sh('cat /var/lib/syncthing/config.xml');
    assert.match(conf, /<folder id="camera"[^>]*ignorePerms="true"/);
  });

  test('write-only: uploads land in the folder, readable by Syncthing; listing, download and delete are refused', async () => {
    const src = path.join(dir, 'upload');
    await mkdir(path.join(src, 'DCIM'), { recursive: true });
    await writeFile(path.join(src, 'DCIM', 'img1.jpg'), 'photo one\n');
    // A phone's private file mode travels with rsync -a; Syncthing must still read it. The
    // directory is named (no trailing slash): the folder itself is Syncthing's, not the account's.
    await chmod(path.join(src, 'DCIM', 'img1.jpg'), 0o600);
    await chmod(path.join(src, 'DCIM'), 0o700);
    const up = await rsync(key.wo, ['-a', path.join(src, 'DCIM'), remote()]);
    assert.equal(up.exitCode, 0, up.stderr);
    assert.equal(await sh('cat /srv/sync/camera/DCIM/img1.jpg'), 'photo one');
    assert.equal(await sh('stat -c "%U %G" /srv/sync/camera/DCIM/img1.jpg'), `${ACCOUNT} syncpi-upload`);
    const asSyncthing = await h.exec(['setpriv', '--reuid=syncthing', '--regid=syncthing', '--init-groups', 'sh', '-c', 'cat /srv/sync/camera/DCIM/img1.jpg && touch /srv/sync/camera/DCIM/by-syncthing && rm /srv/sync/camera/DCIM/by-syncthing']);
    assert.equal(asSyncthing.exitCode, 0, `Syncthing reads, writes and deletes beside uploads: ${asSyncthing.stderr}`);

    const list = await rsync(key.wo, [remote()]);
    assert.notEqual(list.exitCode, 0);
    assert.match(list.stderr, /reading from write-only server is not allowed/);
    assert.doesNotMatch(list.stdout, /DCIM/);
    const down = await rsync(key.wo, [remote('DCIM/img1.jpg'), path.join(dir, 'stolen.jpg')]);
    assert.notEqual(down.exitCode, 0);
    await assert.rejects(readFile(path.join(dir, 'stolen.jpg')));
    // A write-only key adds and updates, never deletes (a stolen phone cannot wipe its backup).
    const empty = path.join(dir, 'empty');
    await mkdir(empty, { recursive: true });
    const wipe = await rsync(key.wo, ['-a', '--delete', `${empty}/`, remote()]);
    assert.notEqual(wipe.exitCode, 0);
    assert.equal(await sh('cat /srv/sync/camera/DCIM/img1.jpg'), 'photo one');
  });

  test('read-only: downloads, and cannot upload', async () => {
    await sh('printf "report\\n" > /srv/sync/documents/report.txt && chown syncthing:syncpi-upload /srv/sync/documents/report.txt && chmod 0660 /srv/sync/documents/report.txt');
    const got = path.join(dir, 'report.txt');
    const down = await rsync(key.ro, [remote('report.txt'), got]);
    assert.equal(down.exitCode, 0, down.stderr);
    assert.equal(await readFile(got, 'utf8'), 'report\n');
    const list = await rsync(key.ro, [remote()]);
    assert.equal(list.exitCode, 0, list.stderr);
    assert.match(list.stdout, /report\.txt/);
    const up = await rsync(key.ro, [got, remote('planted.txt')]);
    assert.notEqual(up.exitCode, 0);
    assert.match(up.stderr, /sending to read-only server is not allowed/);
    assert.equal((await h.exec(['test', '-e', '/srv/sync/documents/planted.txt'])).exitCode, 1);
  });

  test('no key leaves its folder: "../", absolute paths, links placed in the folder', async () => {
    await sh('ln -sfn /etc /srv/sync/documents/etc-link && ln -sfn /srv/sync/private /srv/sync/documents/private-link');
    for (const p of ['../private/s', '/etc/hostname', '/srv/sync/private/s', 'etc-link/hostname', 'private-link/s', 'etc-link/']) {
      const out = path.join(dir, 'escape');
      await rm(out, { recursive: true, force: true });
      const r = await rsync(key.ro, ['-r', remote(p), out]);
      const leaked = (await execa('grep', ['-rls', '-e', 'secret', '-e', 'syncpi', out], { reject: false })).stdout;
      assert.equal(leaked, '', `${p} (rsync exit ${r.exitCode}): ${r.stderr}`);
    }
    // Write side: a link uploaded into the folder, then an upload through it.
    const src = path.join(dir, 'links');
    await mkdir(src, { recursive: true });
    await execa('ln', ['-sfn', '/tmp', path.join(src, 'out')]);
    await writeFile(path.join(dir, 'evil.txt'), 'evil\n');
    const rw = await rsync(key.rw, ['-a', path.join(src, 'out'), remote()]);
    assert.equal(rw.exitCode, 0, rw.stderr);
    for (const [k, dest] of [[key.rw, 'out/evil.txt'], [key.rw, '../private/evil.txt'], [key.rw, '/tmp/evil.txt'], [key.wo, '../shared/out/evil.txt']] as const) {
      await rsync(k, [path.join(dir, 'evil.txt'), remote(dest)]);
    }
    assert.equal(await sh('ls /tmp | grep -c evil || true'), '0', 'nothing written through the link');
    assert.equal(await sh('ls /srv/sync/private'), 's');
  });

  test('no shell, no other command, no forwarding', async () => {
    for (const k of [key.wo, key.ro, key.rw]) {
      const shell = await ssh(k, ['-tt', `${ACCOUNT}@${h.ip}`]);
      assert.notEqual(shell.exitCode, 0);
      assert.doesNotMatch(shell.stdout, /\$ |uid=/);
      const cmd = await ssh(k, [`${ACCOUNT}@${h.ip}`, 'id; cat /etc/hostname']);
      assert.notEqual(cmd.exitCode, 0);
      assert.doesNotMatch(cmd.stdout, /uid=|syncpi/);
      assert.match(cmd.stderr, /does not run rsync/);
    }
    const w = await ssh(key.rw, ['-W', '127.0.0.1:22', `${ACCOUNT}@${h.ip}`]);
    assert.notEqual(w.exitCode, 0);
    assert.doesNotMatch(w.stdout, /^SSH-/);
    const rport = await freePort();
    const r = await ssh(key.rw, ['-o', 'ExitOnForwardFailure=yes', '-N', '-R', `127.0.0.1:${rport}:127.0.0.1:22`, `${ACCOUNT}@${h.ip}`], 20_000);
    assert.notEqual(r.exitCode, 0, 'remote forwarding refused');
    assert.match(r.stderr, /remote port forwarding failed/);
    // -L: the listener is local, so try the tunnel itself: nothing of the host's sshd comes through.
    const lport = await freePort();
    const l = spawn('ssh', [...sshArgs(key.rw), '-N', '-L', `127.0.0.1:${lport}:127.0.0.1:22`, `${ACCOUNT}@${h.ip}`], { stdio: 'ignore' });
    try {
      let banner = '';
      for (let i = 0; i < 20 && banner === ''; i++) {
        await new Promise((res) => setTimeout(res, 500));
        banner = await bannerAt(lport);
        if (l.exitCode !== null) break;
      }
      assert.doesNotMatch(banner, /^SSH-/, 'a local forward reaches nothing');
    } finally {
      l.kill('SIGTERM');
    }
    // The appliance's own user still logs in (its keys are its own).
    const pi = await ssh(h.keyPath, [`pi@${h.ip}`, 'id -un']);
    assert.equal(pi.stdout.trim(), 'pi');
  });

  test('access leaving the config leaves the host', async () => {
    delete config.access;
    const rep = await provision();
    assert.equal(rep.status, 'changed');
    assert.notEqual((await h.exec(['getent', 'passwd', ACCOUNT])).exitCode, 0, 'account removed');
    assert.notEqual((await h.exec(['getent', 'group', 'syncpi-upload'])).exitCode, 0, 'group removed');
    assert.equal((await h.exec(['test', '-e', '/usr/local/lib/syncpi/rsync-folder'])).exitCode, 1);
    assert.doesNotMatch(await sh('sshd -T'), /^allowusers syncpi-rsync$/m);
    await sh('for i in $(seq 1 30); do [ "$(stat -c %G /srv/sync/documents)" = syncthing ] && exit 0; sleep 1; done; exit 1');
    assert.equal(await sh('stat -c "%a %G" /srv/sync/documents /srv/sync/documents/report.txt'), '770 syncthing\n660 syncthing');
    const up = await rsync(key.rw, [path.join(dir, 'evil.txt'), remote()]);
    assert.notEqual(up.exitCode, 0);
  });
});
