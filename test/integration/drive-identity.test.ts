/**
 * The drive is never read as "all files deleted". syncthing-prepare (rendered from the default
 * appliance's templates) runs as root in a real Debian chroot against real ext4 file systems on
 * loop devices mounted at the drive's mount point: a folder is given a directory once, never a
 * marker (Syncthing writes that only for a folder it has never seen); a blank drive with the same
 * label, a foreign drive, a folder gone from its drive, a path through a link and a config file
 * the daemon replaced by a link are each held back or refused, and nothing is written to them.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { cpSync, existsSync, lstatSync, mkdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { planFromFile } from '../../src/plan/load.js';
import { makeDriveImage } from '../../src/vm/qemu.js';
import { AMD64_SPEC, freshRootfs, removeRootfs } from '../helpers/converger-rootfs.js';
import { minimalYaml, tempDir, writeConfig } from '../helpers/fixtures.js';

const PREPARE = '/usr/local/lib/syncpi/syncthing-prepare';
const HOLDS = '/run/syncpi/folder-holds';
const SEEDED = '/var/lib/syncpi/seeded-folders';

describe('syncthing-prepare against real drives', () => {
  let root = '';
  let work = '';
  const mounted: string[] = [];
  const uuids: Record<string, string> = {};

  const mountAt = async (what: string[], at: string): Promise<void> => {
    mkdirSync(at, { recursive: true });
    await execa('mount', [...what, at]);
    mounted.push(at);
  };
  const umount = async (at: string): Promise<void> => {
    await execa('umount', [at]);
    mounted.splice(mounted.indexOf(at), 1);
  };
  const plug = async (name: 'A' | 'B'): Promise<void> => mountAt(['-o', 'loop', join(work, `${name}.img`)], join(root, 'srv/sync'));
  const unplug = (): Promise<void> => umount(join(root, 'srv/sync'));
  const prepare = async (): Promise<{ code: number; stderr: string; holds: string[] }> => {
    const r = await execa('chroot', [root, PREPARE], { reject: false });
    const holds = existsSync(join(root, HOLDS)) ? readFileSync(join(root, HOLDS), 'utf8').split('\n').filter(Boolean) : [];
    return { code: r.exitCode ?? -1, stderr: r.stderr, holds };
  };
  const onDrive = (p: string): string => join(root, 'srv/sync', p);

  before(async () => {
    work = tempDir('syncpi-drive-id-');
    root = await freshRootfs(AMD64_SPEC);
    const cfg = writeConfig(minimalYaml(
      'drive:\n  label: SYNCDRIVE\n  mount: /srv/sync\nsync:\n  devices:\n    - id: JB2RL7S-VHDZAR2-G34LH2K-277GIJZ-ZIZMV6I-NNOFVUF-BJ2ZYLO-YNAK7A5\n      name: laptop\n  folders:\n    - id: documents\n      path: documents\n      devices: [laptop]\n    - id: photos\n      path: media/photos\n      devices: [laptop]\n',
    ));
    const { plan } = planFromFile(cfg, { secretsFile: join(work, 'secrets.yaml') });
    for (const path of [PREPARE, '/etc/syncpi/syncthing/config.xml']) {
      const f = plan.files.find((x) => x.path === path);
      assert.ok(f, `the plan has ${path}`);
      mkdirSync(join(root, path, '..'), { recursive: true });
      writeFileSync(join(root, path), f.content, { mode: Number.parseInt(f.mode, 8) });
    }
    await execa('chroot', [root, 'useradd', '--system', '--home-dir', '/var/lib/syncthing', '--shell', '/usr/sbin/nologin', 'syncthing']);
    await mountAt(['-t', 'proc', 'proc'], join(root, 'proc'));
    // the drive's UUID is read from its device, as on the Pi
    await mountAt(['--rbind', '/dev'], join(root, 'dev'));
    await mountAt(['-t', 'tmpfs', 'tmpfs'], join(root, 'run'));
    for (const name of ['A', 'B']) {
      await makeDriveImage(join(work, `${name}.img`), 'SYNCDRIVE', 64 * 1024 * 1024);
      uuids[name] = (await execa('blkid', ['-s', 'UUID', '-o', 'value', join(work, `${name}.img`)])).stdout.trim();
    }
    assert.notEqual(uuids.A, uuids.B);
  });

  after(async () => {
    for (const m of [...mounted].reverse()) await execa('umount', ['-l', m], { reject: false });
    // /dev is bound in: never remove the tree while anything is still mounted below it
    const left = readFileSync('/proc/self/mounts', 'utf8').split('\n').map((l) => l.split(' ')[1] ?? '').filter((m) => root && m.startsWith(`${root}/`));
    assert.deepEqual(left, [], 'no mount left behind');
    if (root) removeRootfs(root);
    if (work) rmSync(work, { recursive: true, force: true });
  });

  test('first seeding: a directory for each folder, owned by the daemon, no marker, the file system recorded', async () => {
    await plug('A');
    const r = await prepare();
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.holds, []);
    for (const p of ['documents', 'media/photos']) {
      const st = statSync(onDrive(p));
      assert.ok(st.isDirectory());
      assert.equal((st.mode & 0o7777).toString(8), '770');
      assert.equal(existsSync(onDrive(`${p}/.stfolder`)), false, `${p}: the marker is Syncthing's to write`);
    }
    const uid = (await execa('chroot', [root, 'id', '-u', 'syncthing'])).stdout.trim();
    assert.equal(String(statSync(onDrive('documents')).uid), uid);
    // versions beside the folders, in syncpi's own directory: root's, and each folder's the daemon's
    for (const d of ['.syncpi', '.syncpi/versions']) {
      const st = lstatSync(onDrive(d));
      assert.ok(st.isDirectory() && st.uid === 0 && (st.mode & 0o777) === 0o755, `${d} is root's directory (0755)`);
    }
    for (const id of ['documents', 'photos']) {
      const st = lstatSync(onDrive(`.syncpi/versions/${id}`));
      assert.ok(st.isDirectory(), `versions directory of ${id}`);
      assert.equal(String(st.uid), uid);
      assert.equal((st.mode & 0o7777).toString(8), '770');
    }
    const seeded = readFileSync(join(root, SEEDED), 'utf8');
    assert.match(seeded, new RegExp(`^documents\\tuuid:${uuids.A}\\t/srv/sync/documents$`, 'm'));
    assert.match(seeded, new RegExp(`^photos\\tuuid:${uuids.A}\\t/srv/sync/media/photos$`, 'm'));
    assert.equal((statSync(join(root, '/var/lib/syncpi')).mode & 0o777).toString(8), '700');
    // the config is the daemon's, its record root's; the REST key is this appliance's own, made here
    const keyFile = join(root, 'var/lib/syncpi/syncthing-api-key');
    const key = readFileSync(keyFile, 'utf8');
    assert.match(key, /^[A-Za-z0-9]{32}$/);
    assert.equal((statSync(keyFile).mode & 0o777).toString(8), '600');
    const seed = readFileSync(join(root, 'etc/syncpi/syncthing/config.xml'), 'utf8');
    assert.match(seed, /<apikey><\/apikey>/, 'the plan carries no key');
    assert.equal(readFileSync(join(root, 'var/lib/syncthing/config.xml'), 'utf8'), seed.replace('<apikey></apikey>', `<apikey>${key}</apikey>`));
    assert.equal(existsSync(join(root, 'var/lib/syncthing/.syncpi-seed')), false);
  });

  test('the same drive again, with Syncthing\'s markers: nothing held, nothing changed, the same key', async () => {
    for (const p of ['documents', 'media/photos']) mkdirSync(onDrive(`${p}/.stfolder`));
    writeFileSync(onDrive('documents/only-copy.jpg'), 'photo');
    const key = readFileSync(join(root, 'var/lib/syncpi/syncthing-api-key'), 'utf8');
    const r = await prepare();
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.holds, []);
    assert.equal(readFileSync(join(root, 'var/lib/syncpi/syncthing-api-key'), 'utf8'), key);
  });

  test('another card from the same image makes a key of its own', async () => {
    const state = join(root, 'var/lib/syncpi');
    const key = readFileSync(join(state, 'syncthing-api-key'), 'utf8');
    const firstCard = join(work, 'first-card-state');
    cpSync(state, firstCard, { recursive: true });
    try {
      // a second card: the same image files, none of the first card's state
      rmSync(state, { recursive: true });
      rmSync(join(root, 'var/lib/syncthing/config.xml'));
      const r = await prepare();
      assert.equal(r.code, 0, r.stderr);
      const second = readFileSync(join(state, 'syncthing-api-key'), 'utf8');
      assert.match(second, /^[A-Za-z0-9]{32}$/);
      assert.notEqual(second, key);
      assert.match(readFileSync(join(root, 'var/lib/syncthing/config.xml'), 'utf8'), new RegExp(`<apikey>${second}</apikey>`));
    } finally {
      rmSync(state, { recursive: true, force: true });
      cpSync(firstCard, state, { recursive: true });
    }
  });


  test('a blank drive with the same label: folders held back, nothing created on it, Syncthing may start', async () => {
    await unplug();
    await plug('B');
    const r = await prepare();
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.holds.length, 2);
    assert.match(r.holds[0]!, new RegExp(`^documents\\t/srv/sync/documents\\t.*seeded on file system uuid:${uuids.A}, but /srv/sync is now uuid:${uuids.B}.*syncpi adopt-drive`));
    assert.match(r.stderr, /folder documents \(\/srv\/sync\/documents\) is held back/);
    assert.equal(existsSync(onDrive('documents')), false, 'nothing is created on a drive the folder was not seeded on');
    assert.equal(existsSync(onDrive('media')), false);
    assert.equal(existsSync(onDrive('.syncpi')), false, 'no versions directory on a drive the folder was not seeded on');
  });

  test('a foreign drive that carries the folder with a marker: Syncthing is not started', async () => {
    mkdirSync(onDrive('documents/.stfolder'), { recursive: true });
    const r = await prepare();
    assert.equal(r.code, 1);
    assert.match(r.stderr, /not starting Syncthing: a held-back folder has a marker on a drive it was not seeded on/);
    rmSync(onDrive('documents'), { recursive: true });
  });

  test('a folder gone from the drive it was seeded on is not recreated', async () => {
    await unplug();
    await plug('A');
    rmSync(onDrive('media/photos'), { recursive: true });
    const r = await prepare();
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.holds.map((l) => l.split('\t')[0]), ['photos']);
    assert.match(r.holds[0]!, /gone from the drive it was seeded on/);
    assert.equal(existsSync(onDrive('media/photos')), false);
    assert.equal(readFileSync(onDrive('documents/only-copy.jpg'), 'utf8'), 'photo');
  });

  test('a folder path through a link the daemon planted is not followed; a planted config link is replaced, not written through', async () => {
    // a fresh record, as on a new appliance, with media/ turned into a link to /etc by the daemon
    rmSync(join(root, SEEDED));
    rmSync(onDrive('media'), { recursive: true, force: true });
    symlinkSync('/etc', onDrive('media'));
    const passwd = readFileSync(join(root, 'etc/passwd'), 'utf8');
    rmSync(join(root, 'var/lib/syncpi/syncthing-seed'));
    rmSync(join(root, 'var/lib/syncthing/config.xml'));
    symlinkSync('/etc/passwd', join(root, 'var/lib/syncthing/config.xml'));
    const r = await prepare();
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.holds.map((l) => l.split('\t')[0]), ['photos']);
    assert.match(r.holds[0]!, /symbolic link/);
    assert.equal(existsSync(join(root, 'etc/photos')), false, 'nothing created through the link');
    assert.equal(readFileSync(join(root, 'etc/passwd'), 'utf8'), passwd);
    assert.equal(lstatSync(join(root, 'var/lib/syncthing/config.xml')).isSymbolicLink(), false);
    await unplug();
  });
});
