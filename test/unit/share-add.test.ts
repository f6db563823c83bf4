/**
 * `syncpi share add` on copies of the shipped appliance.yaml: a device pasted the way people paste
 * (lower case, no dashes) lands in the file with comments and order kept; running it again changes
 * nothing; every refusal exits 2 with one line and leaves the file byte for byte as it was.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { copyFileSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { describeSharing } from '../../src/cli/share.js';
import { fixtureKey, repoRoot, tempDir } from '../helpers/fixtures.js';
import { generateHome } from '../helpers/laptop-syncthing.js';

const LAPTOP = 'JB2RL7S-VHDZAR2-G34LH2K-277GIJZ-ZIZMV6I-NNOFVUF-BJ2ZYLO-YNAK7A5';
const dir = tempDir('syncpi-share-add-');
let friend = '';
let other = '';
before(async () => {
  friend = await generateHome(join(dir, 'friend-home'));
  other = await generateHome(join(dir, 'other-home'));
});
after(() => rmSync(dir, { recursive: true, force: true }));

function syncpi(args: string[]) {
  return spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'src/cli/main.ts'), ...args], { encoding: 'utf8', cwd: repoRoot, env: { ...process.env, NO_COLOR: '1' }, input: '' });
}

let n = 0;
function copyOfShipped(): string {
  const d = join(dir, `c${n++}`);
  spawnSync('mkdir', ['-p', d]);
  const p = join(d, 'appliance.yaml');
  copyFileSync(join(repoRoot, 'image', 'appliance.yaml'), p);
  return p;
}

/** The lines of `before` all appear in `after`, in order: the edit only added lines (or items to a line). */
function onlyAdded(beforeText: string, afterText: string, changedLine?: RegExp): void {
  const a = afterText.split('\n');
  let j = 0;
  for (const line of beforeText.split('\n')) {
    while (j < a.length && a[j] !== line && !(changedLine?.test(line) && a[j]!.startsWith(line.slice(0, -1)))) j++;
    assert.ok(j < a.length, `line ${JSON.stringify(line)} is gone or moved`);
    j++;
  }
}

test('a device pasted in lower case without dashes is added, canonical, to the folder; the second time nothing changes', () => {
  const file = copyOfShipped();
  const original = readFileSync(file, 'utf8');
  const pasted = friend.toLowerCase().replace(/-/g, '');
  const r = syncpi(['share', 'add', file, '--device', pasted, '--name', 'friend', '--folder', 'documents']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /device friend .* added to sync.devices; friend added to folder documents as a device/);
  const edited = readFileSync(file, 'utf8');
  onlyAdded(original, edited, /devices: \[laptop\]$/);
  assert.match(edited, /# No password given: syncpi generates one/, 'comments are kept');
  assert.match(edited, new RegExp(`- id: ${friend}\\n      name: friend\\n`));
  assert.match(edited, /devices: \[laptop, friend\]/, 'a flow list stays one, written as the file writes it');
  const { config } = loadConfig(file);
  assert.deepEqual(config.sync.devices.map((d) => d.name), ['laptop', 'phone', 'friend']);
  assert.equal(config.sync.devices[2]!.id, friend);
  assert.deepEqual(config.sync.folders[0]!.devices, ['laptop', 'friend']);
  assert.equal(readdirSync(join(file, '..')).length, 1, 'no temp file left beside it');

  const mtime = statSync(file).mtimeMs;
  const again = syncpi(['share', 'add', file, '--device', friend, '--name', 'friend', '--folder', 'documents']);
  assert.equal(again.status, 0, again.stderr);
  assert.match(again.stdout, /nothing changed/);
  assert.equal(readFileSync(file, 'utf8'), edited);
  assert.equal(statSync(file).mtimeMs, mtime, 'not rewritten');
});

test('--read-only lists the device under the folder\'s readers, creating the key; share shows who and how', () => {
  const file = copyOfShipped();
  const r = syncpi(['share', 'add', file, '--device', friend, '--name', 'grandma', '--folder', 'camera', '--read-only']);
  assert.equal(r.status, 0, r.stderr);
  assert.match(readFileSync(file, 'utf8'), /      devices: \[phone, laptop\]\n      readers: \[grandma\]\n/);
  const r2 = syncpi(['share', 'add', file, '--device', other.replace(/-/g, ' '), '--name', 'cousin', '--folder', 'camera', '--read-only']);
  assert.equal(r2.status, 0, r2.stderr);
  const { config } = loadConfig(file);
  assert.deepEqual(config.sync.folders[1]!.readers, ['grandma', 'cousin']);
  assert.deepEqual(config.sync.folders[1]!.devices, ['phone', 'laptop'], 'read-only devices are not added to devices');
  const shown = describeSharing(config);
  assert.deepEqual(shown.slice(-5), [
    'camera "Phone camera": receive-only (the appliance keeps no change of its own)',
    `  phone (${'HP7GZ5V'})    receive-only`,
    `  laptop (JB2RL7S)   receive-only`,
    `  grandma (${friend.slice(0, 7)})  read-only reader (nothing it changes comes back)`,
    `  cousin (${other.slice(0, 7)})   read-only reader (nothing it changes comes back)`,
  ]);
});

test('a config written by init (devices: []) gets a block list of devices', () => {
  const d = join(dir, 'init');
  const key = join(dir, 'id.pub');
  writeFileSync(key, `${fixtureKey}\n`);
  const file = join(d, 'appliance.yaml');
  spawnSync('mkdir', ['-p', d]);
  assert.equal(syncpi(['init', '--out', file, '--ssh-key', key]).status, 0);
  // init writes no folder: one is added by hand, as a user would
  writeFileSync(file, readFileSync(file, 'utf8').replace('folders: []', 'folders:\n    - id: photos\n      path: photos # the family pictures'));
  const r = syncpi(['share', 'add', file, '--device', friend, '--name', 'friend', '--folder', 'photos']);
  assert.equal(r.status, 0, r.stderr);
  const text = readFileSync(file, 'utf8');
  assert.match(text, new RegExp(`  devices:\\n    - id: ${friend}\\n      name: friend\\n`));
  assert.match(text, /path: photos # the family pictures\n      devices: \[friend\]/);
  assert.deepEqual(loadConfig(file).config.sync.folders[0]!.devices, ['friend']);
});

test('a config without sync.devices gets the key, as a list', () => {
  const d = join(dir, 'no-devices');
  spawnSync('mkdir', ['-p', d]);
  const file = join(d, 'appliance.yaml');
  writeFileSync(file, `system:\n  user:\n    ssh_keys: ["${fixtureKey}"]\nsync:\n  # one folder, nobody yet\n  folders:\n    - id: docs\n      path: docs\n`);
  const r = syncpi(['share', 'add', file, '--device', friend, '--name', 'friend', '--folder', 'docs', '--read-only']);
  assert.equal(r.status, 0, r.stderr);
  const { config } = loadConfig(file);
  assert.deepEqual(config.sync.devices.map((x) => [x.name, x.id]), [['friend', friend]]);
  assert.deepEqual(config.sync.folders[0]!.readers, ['friend']);
  assert.match(readFileSync(file, 'utf8'), /# one folder, nobody yet/);
});

test('refusals exit 2 with one line naming what and what would be valid; the file is unchanged', () => {
  const file = copyOfShipped();
  const bytes = readFileSync(file);
  const bad = friend.slice(0, -1) + (friend.endsWith('A') ? 'B' : 'A');
  const cases: [string[], RegExp][] = [
    [['--device', bad, '--name', 'friend', '--folder', 'documents'], /^error: --device "[A-Z2-7-]+": expected a Syncthing device ID: 8 groups of 7 .*check character 4 .* does not match/],
    [['--device', friend.slice(0, 20), '--name', 'friend', '--folder', 'documents'], /^error: --device .*: expected a Syncthing device ID.*not 56/],
    [['--device', friend, '--name', 'friend', '--folder', 'music'], /^error: --folder "music": no folder with this ID in .*appliance.yaml; expected one of: documents, camera$/],
    [['--device', LAPTOP, '--name', 'laptop2', '--folder', 'documents'], /^error: --device JB2RL7S-.*: sync.devices\[0\] in .* already lists this device as "laptop"; expected --name "laptop", or another device$/],
    [['--device', friend, '--name', 'laptop', '--folder', 'documents'], /^error: --name "laptop": sync.devices\[0\] in .* already has this name with ID JB2RL7S-.*; expected another name, or --device JB2RL7S-/],
    [['--device', friend, '--name', 'bad/name', '--folder', 'documents'], /^error: --name "bad\/name": expected a device name of letters, digits/],
    [['--device', LAPTOP, '--name', 'laptop', '--folder', 'documents', '--read-only'], /^error: --read-only: laptop already syncs folder documents both ways/],
    [['--device', friend, '--name', 'friend', '--folder', 'documents', '--apply', 'pi@host', '-p', '70000'], /^error: --port "70000": expected a whole number from 1 to 65535$/],
  ];
  for (const [args, want] of cases) {
    const r = syncpi(['share', 'add', file, ...args]);
    assert.equal(r.status, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr.trimEnd(), want, args.join(' '));
    assert.equal(r.stderr.trimEnd().split('\n').length, 1, `one line: ${r.stderr}`);
    assert.ok(readFileSync(file).equals(bytes), `${args.join(' ')} changed the file`);
    assert.equal(readdirSync(join(file, '..')).length, 1, 'no temp file left beside it');
  }
});
