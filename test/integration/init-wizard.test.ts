/**
 * `syncpi init` on a real terminal: tmux runs it, the test types answers at each prompt and
 * reads the screen, the way a person would. The file it writes must validate.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadConfig } from '../../src/config/load.js';
import { fixtureKey, repoRoot, tempDir } from '../helpers/fixtures.js';

const session = `syncpi-init-${process.pid}`;
const tmux = (...args: string[]) => spawnSync('tmux', args, { encoding: 'utf8' });
after(() => tmux('kill-session', '-t', session));

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
  await answer(/External drive/, ['Enter']);
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
