/**
 * Read-only shares and versions, with three real Syncthing instances on loopback: the owner's
 * laptop (send-receive on the owner's folder), a friend (a reader of it) and the appliance, run
 * with the config.xml syncpi renders for a drive mounted at a temp directory, its folders laid out
 * as syncthing-prepare lays them out, and syncpi's rendered readonly-mirror script run as its
 * systemd unit runs it (the whole script, no arguments). The friend runs its copy send-receive,
 * the way a careless friend would: everything it changes is announced to the appliance.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import bcrypt from 'bcryptjs';
import { planFromFile } from '../../src/plan/load.js';
import type { Plan } from '../../src/plan/types.js';
import { readonlyDir, readonlyFolderId, versionsDir } from '../../src/config/drive-layout.js';
import { READONLY_MIRROR } from '../../src/plan/features/readers.js';
import { fixtureKey, tempDir, writeConfig } from '../helpers/fixtures.js';
import { pairWith, startLaptop, type Laptop } from '../helpers/laptop-syncthing.js';

const FOLDER = 'photos';
const SHARE = readonlyFolderId(FOLDER);

const dir = tempDir('syncpi-readonly-');
// A drive mount the loader accepts (under /mnt), on this machine's disk: hard links need one file system.
const mount = mkdtempSync('/mnt/syncpi-readonly-');
const owner = join(mount, FOLDER);
const copy = readonlyDir(mount, FOLDER);
const versions = versionsDir(mount, FOLDER);
const laptopDir = join(dir, 'laptop-photos');
const friendDir = join(dir, 'friend-photos');
const started: Laptop[] = [];
let laptop: Laptop;
let friend: Laptop;
let appliance: Laptop;
let plan: Plan;

after(async () => {
  for (const s of started) await s.stop();
  rmSync(dir, { recursive: true, force: true });
  rmSync(mount, { recursive: true, force: true });
});

/** Poll FN until it returns true, at most MS; the message says what never happened. */
async function until(what: string, fn: () => boolean | Promise<boolean>, ms = 60_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms / 1000} s waiting for: ${what}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

const read = (p: string): string | null => (existsSync(p) ? readFileSync(p, 'utf8') : null);
const names = (p: string): string[] => readdirSync(p).filter((n) => !n.startsWith('.st')).sort();

/** The mirror as its unit runs it: the rendered script, whole. */
async function runMirror(): Promise<void> {
  const script = plan.files.find((f) => f.path === READONLY_MIRROR)!;
  const file = join(dir, 'readonly-mirror');
  writeFileSync(file, script.content, { mode: 0o755 });
  const r = await execa(file, [], { reject: false, all: true, stdin: 'ignore' });
  assert.equal(r.exitCode, 0, `readonly-mirror failed:\n${r.all}`);
}

async function scan(s: Laptop, folder: string): Promise<void> {
  await s.rest('POST', `/rest/db/scan?folder=${encodeURIComponent(folder)}`);
}

before(async () => {
  laptop = await startLaptop(join(dir, 'laptop'));
  started.push(laptop);
  friend = await startLaptop(join(dir, 'friend'));
  started.push(friend);
  const config = writeConfig(JSON.stringify({
    system: { user: { ssh_keys: [fixtureKey] } },
    panel: { listen: '127.0.0.1:8384', user: 'admin', password: { bcrypt: bcrypt.hashSync('readonly-test', 4) } },
    drive: { label: 'data', mount },
    sync: {
      local_discovery: false,
      devices: [{ id: laptop.id, name: 'laptop' }, { id: friend.id, name: 'friend' }],
      folders: [{ id: FOLDER, path: FOLDER, devices: ['laptop'], readers: ['friend'], rescan_interval: 5 }],
    },
  }));
  plan = planFromFile(config).plan;
  // What syncthing-prepare makes before the daemon starts: each folder's directory (Syncthing adds
  // the marker), and the versions directory beside the folders.
  for (const d of [owner, copy, versions]) mkdirSync(d, { recursive: true });
  // The panel's TLS is the one change: the test reads REST over plain HTTP on loopback.
  const xml = plan.files.find((f) => f.path === '/etc/syncpi/syncthing/config.xml')!.content.replace('<gui enabled="true" tls="true"', '<gui enabled="true" tls="false"');
  appliance = await startLaptop(join(dir, 'appliance'), { configXml: xml });
  started.push(appliance);
  const status = await appliance.rest<{ connectionServiceStatus: Record<string, { lanAddresses: string[] | null }> }>('GET', '/rest/system/status');
  const address = Object.values(status.connectionServiceStatus).flatMap((s) => s.lanAddresses ?? []).find((a) => a.startsWith('tcp://127.0.0.1:'));
  assert.ok(address, `the appliance listens on loopback: ${JSON.stringify(status.connectionServiceStatus)}`);
  await pairWith(laptop, { id: appliance.id, address }, { id: FOLDER, path: laptopDir });
  await pairWith(friend, { id: appliance.id, address }, { id: SHARE, path: friendDir });
});

test('Syncthing reads the versioning, minDiskFree and the send-only copy as syncpi wrote them', async () => {
  type F = { id: string; type: string; path: string; devices: { deviceID: string }[]; minDiskFree: { value: number; unit: string }; versioning: { type: string; params: Record<string, string>; cleanupIntervalS: number; fsPath: string; fsType: string } };
  const folders = await appliance.rest<F[]>('GET', '/rest/config/folders');
  const own = folders.find((f) => f.id === FOLDER)!;
  assert.deepEqual(own.versioning, { type: 'staggered', params: { maxAge: String(365 * 86400) }, cleanupIntervalS: 3600, fsPath: versions, fsType: 'basic' });
  assert.deepEqual(own.minDiskFree, { value: 2, unit: '%' });
  assert.deepEqual(own.devices.map((d) => d.deviceID).sort(), [appliance.id, laptop.id].sort(), 'the friend is not a device of the owner folder');
  const share = folders.find((f) => f.id === SHARE)!;
  assert.equal(share.type, 'sendonly');
  assert.equal(share.path, copy);
  assert.equal(share.versioning.type, '');
  assert.deepEqual(share.devices.map((d) => d.deviceID).sort(), [appliance.id, friend.id].sort(), 'only the reader receives the copy');
});

test('the friend receives the files; nothing it edits, deletes or adds reaches the appliance or the laptop; the laptop\'s deletion reaches the friend and leaves a version', async () => {
  const files = { 'a.txt': 'alpha from the laptop\n', 'b.txt': 'bravo from the laptop\n', 'c.txt': 'charlie from the laptop\n', 'sub/d.txt': 'delta\n' };
  mkdirSync(join(laptopDir, 'sub'), { recursive: true });
  for (const [n, c] of Object.entries(files)) writeFileSync(join(laptopDir, n), c);
  await scan(laptop, FOLDER);
  await until('the laptop\'s files on the appliance', () => Object.entries(files).every(([n, c]) => read(join(owner, n)) === c));

  await runMirror();
  for (const n of Object.keys(files)) assert.equal(statSync(join(copy, n)).ino, statSync(join(owner, n)).ino, `${n}: the copy is a hard link of the folder's file`);
  await scan(appliance, SHARE);
  await until('the files at the friend', () => Object.entries(files).every(([n, c]) => read(join(friendDir, n)) === c));

  // The friend edits, deletes and adds, and its Syncthing announces all of it.
  writeFileSync(join(friendDir, 'a.txt'), 'the friend overwrote this\n');
  rmSync(join(friendDir, 'b.txt'));
  writeFileSync(join(friendDir, 'new.txt'), 'the friend added this\n');
  await scan(friend, SHARE);
  type Status = { needTotalItems: number };
  await until('the appliance to see the friend\'s three changes (and not take them)', async () => (await appliance.rest<Status>('GET', `/rest/db/status?folder=${SHARE}`)).needTotalItems >= 3);
  await runMirror();
  await scan(appliance, SHARE);
  await scan(appliance, FOLDER);
  await new Promise((r) => setTimeout(r, 5000));
  for (const root of [owner, copy, laptopDir]) {
    assert.deepEqual(names(root), ['a.txt', 'b.txt', 'c.txt', 'sub'], `${root}: no file added or deleted`);
    for (const [n, c] of Object.entries(files)) assert.equal(read(join(root, n)), c, `${root}/${n} unchanged`);
  }
  assert.equal((await appliance.rest<Status>('GET', `/rest/db/status?folder=${SHARE}`)).needTotalItems >= 3, true, 'the send-only copy stays out of sync with the friend instead of pulling');

  // The laptop deletes a file and replaces another with one of the same size and time.
  rmSync(join(laptopDir, 'c.txt'));
  const d = join(laptopDir, 'sub/d.txt');
  const { mtime } = statSync(d);
  writeFileSync(d, 'DELTA\n');
  utimesSync(d, mtime, mtime);
  await scan(laptop, FOLDER);
  await until('the deletion and the new d.txt on the appliance', () => read(join(owner, 'c.txt')) === null && read(join(owner, 'sub/d.txt')) === 'DELTA\n');
  const kept = readdirSync(versions).filter((n) => /^c~\d{8}-\d{6}\.txt$/.test(n));
  assert.equal(kept.length, 1, `the deleted file is in the versions directory: ${readdirSync(versions).join(', ')}`);
  assert.equal(read(join(versions, kept[0]!)), files['c.txt']);
  assert.equal(read(join(copy, 'sub/d.txt')), 'delta\n', 'before the mirror runs, the copy still has the old file: the pull did not write through the link');

  await runMirror();
  assert.equal(read(join(copy, 'c.txt')), null, 'the deletion reached the copy');
  assert.equal(statSync(join(copy, 'sub/d.txt')).ino, statSync(join(owner, 'sub/d.txt')).ino, 'the copy took the replaced file although size and time are the same');
  await scan(appliance, SHARE);
  await until('the deletion and the new d.txt at the friend', () => read(join(friendDir, 'c.txt')) === null && read(join(friendDir, 'sub/d.txt')) === 'DELTA\n');
  assert.equal(read(join(friendDir, 'a.txt')), 'the friend overwrote this\n', 'the friend keeps its own edit (its copy only is out of sync)');
  assert.equal(read(join(owner, 'a.txt')), files['a.txt']);
  assert.equal(read(join(laptopDir, 'new.txt')), null);
});
