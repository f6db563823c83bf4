/**
 * `syncpi init` on a real terminal: tmux runs it, the test types answers at each prompt and
 * reads the screen, the way a person would. The file it writes must load and plan. The drive it
 * offers is a real one: a loop device with a labelled ext4 file system, made here.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { fixtureKey, repoRoot, tempDir } from '../helpers/fixtures.js';
import { generateHome } from '../helpers/laptop-syncthing.js';

let session = `syncpi-init-${process.pid}`;
const tmux = (...args: string[]) => spawnSync('tmux', args, { encoding: 'utf8' });
const loops: string[] = [];
after(() => {
  for (const s of [`syncpi-init-${process.pid}`, `syncpi-init-${process.pid}-2`]) tmux('kill-session', '-t', s);
  for (const dev of loops) spawnSync('losetup', ['-d', dev]);
});

async function waitFor(re: RegExp, ms = 20000): Promise<string> {
  const end = Date.now() + ms;
  let screen = '';
  while (Date.now() < end) {
    screen = tmux('capture-pane', '-p', '-t', session).stdout;
    if (re.test(screen)) return screen;
    await new Promise((r) => setTimeout(r, 150));
  }
  throw new Error(`timed out waiting for ${re} on screen:\n${screen}`);
}

async function answer(prompt: RegExp, keys: string[]): Promise<void> {
  await waitFor(prompt);
  for (const k of keys) tmux('send-keys', '-t', session, k);
}

test('the wizard asks, validates each answer, and writes a valid appliance.yaml', async () => {
  assert.equal(spawnSync('sh', ['-c', 'command -v tmux']).status, 0, 'tmux is required (installed by scripts/setup-host.sh)');
  const dir = tempDir();
  const key = join(dir, 'id.pub');
  writeFileSync(key, `${fixtureKey}\n`);
  const out = join(dir, 'appliance.yaml');
  const cmd = `cd ${repoRoot} && NO_COLOR=1 ${process.execPath} --import tsx src/cli/main.ts init --out ${out}; echo EXIT=$?; sleep 30`;
  assert.equal(tmux('new-session', '-d', '-s', session, '-x', '160', '-y', '40', cmd).status, 0);
  await answer(/Hostname of the Pi/, ['C-u', 'Bad Name', 'Enter']);
  await waitFor(/Expected a hostname/);
  for (let i = 0; i < 10; i++) tmux('send-keys', '-t', session, 'BSpace');
  tmux('send-keys', '-t', session, 'C-u', 'nas-wizard', 'Enter');
  await answer(/Time zone/, ['C-u', 'Europe/Paris', 'Enter']);
  await answer(/User to log in as/, ['Enter']);
  await answer(/Public SSH key file/, ['C-u', key, 'Enter']);
  await answer(/Connect the Pi to Wi-Fi/, ['n', 'Enter']);
  await answer(/Device 1 to sync with/, ['Enter']);
  await answer(/Folder 1 to sync/, ['Enter']);
  // typing picks the choice whose name starts with it, wherever the drives found put it
  await answer(/External drive/, ['enter a label', 'Enter']);
  await answer(/Filesystem label/, ['C-u', 'MYDRIVE', 'Enter']);
  await answer(/Filesystem\b(?! label)/, ['Down', 'Enter']);
  await answer(/SSH tunnel/, ['n', 'Enter']);
  await answer(/Networks allowed/, ['C-u', '10.1.0.0/16', 'Enter']);
  await waitFor(/EXIT=0/);
  assert.ok(existsSync(out));
  const { config } = loadConfig(out);
  assert.equal(config.system.hostname, 'nas-wizard');
  assert.equal(config.system.timezone, 'Europe/Paris');
  assert.equal(config.drive?.label, 'MYDRIVE');
  assert.equal(config.drive?.fs, 'exfat');
  assert.deepEqual(config.panel.allowed_networks, ['10.1.0.0/16']);
});

test('the wizard asks for Wi-Fi, devices (refusing a mistyped ID), folders with readers, and offers the drive plugged in', async () => {
  session = `syncpi-init-${process.pid}-2`;
  const dir = tempDir();
  const key = join(dir, 'id.pub');
  writeFileSync(key, `${fixtureKey}\n`);
  const laptop = await generateHome(join(dir, 'laptop-home'));
  const grandma = await generateHome(join(dir, 'grandma-home'));
  // a drive as a person plugs one in: a labelled ext4 file system on a block device
  const img = join(dir, 'drive.img');
  execFileSync('truncate', ['-s', '64M', img]);
  const label = `WIZ${process.pid % 100000}`;
  execFileSync('mke2fs', ['-q', '-t', 'ext4', '-L', label, img]);
  const dev = execFileSync('losetup', ['--find', '--show', img], { encoding: 'utf8' }).trim();
  loops.push(dev);
  execFileSync('udevadm', ['settle', '--timeout=10'], { stdio: 'ignore' });
  const uuid = execFileSync('blkid', ['-o', 'value', '-s', 'UUID', dev], { encoding: 'utf8' }).trim();
  assert.match(uuid, /^[0-9a-f-]{36}$/);

  const out = join(dir, 'home.yaml');
  const cmd = `cd ${repoRoot} && NO_COLOR=1 ${process.execPath} --import tsx src/cli/main.ts init --out ${out}; echo EXIT=$?; sleep 30`;
  assert.equal(tmux('new-session', '-d', '-s', session, '-x', '200', '-y', '50', cmd).status, 0);
  await answer(/Hostname of the Pi/, ['C-u', 'family-nas', 'Enter']);
  await answer(/Time zone/, ['C-u', 'Europe/Berlin', 'Enter']);
  await answer(/User to log in as/, ['Enter']);
  await answer(/Public SSH key file/, ['C-u', key, 'Enter']);
  await answer(/Connect the Pi to Wi-Fi/, ['y', 'Enter']);
  await answer(/Wi-Fi country/, ['XX', 'Enter']);
  await waitFor(/Expected a two-letter ISO 3166 country code/);
  tmux('send-keys', '-t', session, 'C-u', 'DE', 'Enter');
  await answer(/Wi-Fi network name/, ['Home Net', 'Enter']);
  await answer(/Wi-Fi passphrase/, ['short', 'Enter']);
  await waitFor(/Expected 8–63 printable ASCII characters/);
  for (let i = 0; i < 5; i++) tmux('send-keys', '-t', session, 'BSpace');
  tmux('send-keys', '-t', session, 'correct horse battery', 'Enter');

  // one character changed: the check characters catch it, and the question stays
  const typo = laptop.slice(0, 3) + (laptop[3] === 'A' ? 'B' : 'A') + laptop.slice(4);
  await answer(/Device 1 to sync with/, [typo, 'Enter']);
  await waitFor(/Expected a Syncthing device ID.*check character 1/);
  tmux('send-keys', '-t', session, 'C-u', laptop.toLowerCase().replace(/-/g, ''), 'Enter');
  await answer(new RegExp(`Name for ${laptop.slice(0, 7)}`), ['laptop', 'Enter']);
  await answer(/Device 2 to sync with/, [grandma.replace(/-/g, ' '), 'Enter']);
  await answer(new RegExp(`Name for ${grandma.slice(0, 7)}`), ['grandma', 'Enter']);
  await answer(/Device 3 to sync with/, ['Enter']);

  await answer(/Folder 1 to sync/, ['photos', 'Enter']);
  await answer(/Path of photos on the drive/, ['C-u', 'family/photos', 'Enter']);
  await answer(/How the Pi holds photos/, ['Down', 'Enter']);
  await answer(/Devices that sync photos both ways/, [' ', 'Enter']);
  await answer(/Devices that receive photos read-only/, [' ', 'Enter']);
  await answer(/Folder 2 to sync/, ['Enter']);

  const screen = await waitFor(/External drive \(plug it in, then pick it\)/);
  assert.match(screen, new RegExp(`${dev}  "${label}"  ext4  64(\\.0)? MiB  loop`), 'the loop drive is offered with its label, file system and size');
  tmux('send-keys', '-t', session, `${dev}  "${label}"`, 'Enter');
  await answer(/SSH tunnel/, ['y', 'Enter']);
  await waitFor(/EXIT=0/);

  const text = readFileSync(out, 'utf8');
  assert.ok(!text.includes('correct horse battery'), 'the passphrase is not in the YAML');
  const pskFile = join(dir, 'home.wifi-psk');
  assert.equal(readFileSync(pskFile, 'utf8'), 'correct horse battery\n');
  assert.equal(statSync(pskFile).mode & 0o777, 0o600);

  const { config } = loadConfig(out);
  assert.deepEqual(config.system.wifi, { country: 'DE', networks: [{ ssid: 'Home Net', psk: { file: 'home.wifi-psk' }, hidden: false }] });
  assert.deepEqual(config.sync.devices.map((d) => [d.name, d.id]), [['laptop', laptop], ['grandma', grandma]]);
  assert.equal(config.sync.folders.length, 1);
  const f = config.sync.folders[0]!;
  assert.deepEqual([f.id, f.path, f.type, f.devices, f.readers], ['photos', 'family/photos', 'receiveonly', ['laptop'], ['grandma']]);
  assert.equal(config.drive?.uuid, uuid);
  assert.equal(config.drive?.fs, 'ext4');
  assert.equal(config.panel.tunnel_only, true);

  // syncpi's own plan reads it all, the passphrase file included
  const plan = spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'src/cli/main.ts'), 'plan', out], { encoding: 'utf8', cwd: repoRoot, env: { ...process.env, NO_COLOR: '1' } });
  assert.equal(plan.status, 0, plan.stderr);
  assert.match(plan.stdout, /family-nas/);
});
