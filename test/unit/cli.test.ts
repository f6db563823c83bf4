/** The command line as a user meets it: help, version, exit codes, NO_COLOR, init with and without a TTY. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { dirname, join } from 'node:path';
import { fixtureKey, minimalYaml, repoRoot, tempDir, writeConfig } from '../helpers/fixtures.js';

function syncpi(args: string[], opts: { env?: Record<string, string>; cwd?: string } = {}) {
  return spawnSync(process.execPath, ['--import', 'tsx', join(repoRoot, 'src/cli/main.ts'), ...args], {
    encoding: 'utf8',
    cwd: opts.cwd ?? repoRoot,
    env: { ...process.env, NO_COLOR: '1', ...opts.env },
    input: '',
  });
}

test('--version prints the package version', () => {
  const r = syncpi(['--version']);
  assert.equal(r.status, 0);
  assert.equal(r.stdout.trim(), JSON.parse(readFileSync(join(repoRoot, 'package.json'), 'utf8')).version);
});

test('every command has --help', () => {
  const top = syncpi(['--help']);
  assert.equal(top.status, 0);
  const commands = [...top.stdout.split('Commands:')[1]!.matchAll(/^  ([a-z][a-z-]*)\b/gm)].map((m) => m[1]!).filter((c) => c !== 'help');
  for (const c of ['init', 'validate', 'plan', 'schema']) assert.ok(commands.includes(c), `${c} is listed`);
  for (const c of commands) {
    const r = syncpi([c, '--help']);
    assert.equal(r.status, 0, `${c} --help`);
    assert.match(r.stdout, new RegExp(`Usage: syncpi ${c}`));
  }
});

test('an unknown option or command is bad input: exit 2', () => {
  assert.equal(syncpi(['plan', '--frobnicate', 'x.yaml']).status, 2);
  assert.equal(syncpi(['frobnicate']).status, 2);
  assert.equal(syncpi(['validate']).status, 2);
});

test('a missing config file is bad input with a one-line message', () => {
  const r = syncpi(['validate', '/nonexistent/appliance.yaml']);
  assert.equal(r.status, 2);
  assert.equal(r.stderr.trim().split('\n').length, 1);
  assert.match(r.stderr, /^error: \/nonexistent\/appliance\.yaml: cannot read: ENOENT/);
});

test('NO_COLOR keeps escape codes out of the output', () => {
  const r = syncpi(['validate', '/nonexistent.yaml'], { env: { NO_COLOR: '1' } });
  assert.doesNotMatch(r.stderr, /\x1b\[/);
});

test('plan prints a summary, --json the full plan without the panel password', () => {
  const p = writeConfig(minimalYaml('panel:\n  password: { env: PANEL_PW }\n'));
  const text = syncpi(['plan', p], { env: { PANEL_PW: 'super-secret-pw' } });
  assert.equal(text.status, 0, text.stderr);
  assert.match(text.stdout, /^Appliance syncpi \(hostname syncpi\)/);
  const json = syncpi(['plan', '--json', p], { env: { PANEL_PW: 'super-secret-pw' } });
  assert.equal(json.status, 0);
  const plan = JSON.parse(json.stdout);
  assert.equal(plan.format, 1);
  assert.ok(!json.stdout.includes('super-secret-pw'));
  assert.ok(!json.stderr.includes('super-secret-pw'));
  assert.match(plan.files.find((f: { path: string }) => f.path === '/etc/syncpi/syncthing/config.xml').content, /^<secret: \d+ bytes/);
});

test('plan lists every file the Pi gets: the login keys, their folder, the sysctl drop-in and its handler too', () => {
  const p = writeConfig(minimalYaml());
  const r = syncpi(['plan', p]);
  assert.equal(r.status, 0, r.stderr);
  assert.match(r.stdout, /^  0600 pi:\s+\/home\/pi\/\.ssh\/authorized_keys\s+\[system\]$/m);
  assert.match(r.stdout, /^  0700 pi:\s+\/home\/pi\/\.ssh  \[system\]$/m);
  assert.match(r.stdout, /^  0644 root:root\s+\/etc\/sysctl\.d\/90-syncpi\.conf\s+\[system\] → syncpi-sysctl$/m);
  assert.match(r.stdout, /^Handlers \(run once, when notified\): .*\bsyncpi-sysctl\b/m);
  const plan = JSON.parse(syncpi(['plan', '--json', p]).stdout);
  const keys = plan.files.find((f: { path: string }) => f.path === '/home/pi/.ssh/authorized_keys');
  assert.equal(keys.content, `${fixtureKey}\n`);
});

test('init without a terminal refuses and names the flags', () => {
  const dir = tempDir();
  const r = syncpi(['init', '--out', join(dir, 'a.yaml')]);
  assert.equal(r.status, 2);
  assert.match(r.stderr, /--ssh-key FILE/);
  assert.ok(!existsSync(join(dir, 'a.yaml')));
});

test('init with flags writes a config that validates and plans', () => {
  const dir = tempDir();
  const key = join(dir, 'id.pub');
  writeFileSync(key, `${fixtureKey}\n`);
  const out = join(dir, 'appliance.yaml');
  const r = syncpi(['init', '--out', out, '--ssh-key', key, '--hostname', 'nas', '--drive-label', 'DATA', '--drive-fs', 'exfat', '--panel-network', '192.168.1.0/24']);
  assert.equal(r.status, 0, r.stderr);
  assert.equal(syncpi(['validate', out]).status, 0);
  const plan = JSON.parse(syncpi(['plan', '--json', out]).stdout);
  assert.equal(plan.hostname, 'nas');
  assert.ok(plan.packages.install.includes('exfatprogs'));
  const again = syncpi(['init', '--out', out, '--ssh-key', key]);
  assert.equal(again.status, 2, 'never overwrites without --force');
  assert.match(again.stderr, /exists/);
});

test('init rejects hostile flag values without writing anything', () => {
  const dir = tempDir();
  const key = join(dir, 'id.pub');
  writeFileSync(key, `${fixtureKey}\n`);
  const out = join(dir, 'appliance.yaml');
  for (const [flag, value] of [['--hostname', 'x;reboot'], ['--panel-network', '0.0.0.0/0 accept'], ['--drive-label', '../etc'], ['--user', 'root']]) {
    const r = syncpi(['init', '--out', out, '--ssh-key', key, flag!, value!]);
    assert.equal(r.status, 2, `${flag} ${value}`);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    assert.ok(!existsSync(out));
  }
});

test('schema writes a JSON Schema that lists the top-level sections', () => {
  const dir = tempDir();
  const r = syncpi(['schema', '--out', join(dir, 's.json')]);
  assert.equal(r.status, 0, r.stderr);
  const s = JSON.parse(readFileSync(join(dir, 's.json'), 'utf8'));
  for (const k of ['base', 'system', 'packages', 'sync', 'panel', 'drive', 'services', 'hardening']) assert.ok(s.properties[k], k);
  assert.equal(s.additionalProperties, false);
});

test('plan writes nothing: a secret not generated yet is shown as a placeholder', () => {
  const p = writeConfig(minimalYaml());
  const listing = () => readdirSync(dirname(p)).sort();
  const before = listing();
  const text = syncpi(['plan', p]);
  assert.equal(text.status, 0, text.stderr);
  assert.deepEqual(listing(), before, 'plan leaves the config folder as it was');
  assert.match(text.stderr, /not generated yet/);
  const json = syncpi(['plan', '--json', '--show-secrets', p]);
  assert.equal(json.status, 0, json.stderr);
  assert.deepEqual(listing(), before);
  const xml = JSON.parse(json.stdout).files.find((f: { path: string }) => f.path === '/etc/syncpi/syncthing/config.xml').content as string;
  assert.match(xml, /<apikey><\/apikey>/, "the REST key is made on each appliance, never in a plan");
  assert.match(xml, /<password>\(not generated yet[^<]*<\/password>/);
});

/** A loopback port nothing listens on: provision compiles (and generates secrets), then fails to connect. */
async function closedPort(): Promise<number> {
  return new Promise((resolve) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => resolve(port));
    });
  });
}

test('provision --json never prints a generated panel password; it says where the secrets file is', async () => {
  const p = writeConfig(minimalYaml());
  const port = await closedPort();
  const r = syncpi(['provision', '--json', '--connect-timeout', '5', '-p', String(port), 'pi@127.0.0.1', p]);
  assert.notEqual(r.status, 0, 'nothing listens there');
  const secrets = join(dirname(p), 'appliance.secrets.yaml');
  const password = /panel_password: (\S+)/.exec(readFileSync(secrets, 'utf8'))![1]!;
  assert.ok(!r.stdout.includes(password), 'not on stdout');
  assert.ok(!r.stderr.includes(password), 'not on a stderr that is no terminal');
  assert.ok(`${r.stdout}${r.stderr}`.includes(secrets), 'names the secrets file');
});

test('a generated panel password is shown once on a terminal, never in the JSON on stdout', async () => {
  const p = writeConfig(minimalYaml());
  const dir = dirname(p);
  const port = await closedPort();
  const cmd = [process.execPath, '--import', 'tsx', join(repoRoot, 'src/cli/main.ts'), 'provision', '--json', '--connect-timeout', '5', '-p', String(port), 'pi@127.0.0.1', p];
  const quoted = cmd.map((a) => `'${a.replace(/'/g, `'\\''`)}'`).join(' ');
  // script(1) gives the command a terminal; stdout goes to a file, stderr stays on the terminal.
  const r = spawnSync('script', ['-qec', `${quoted} > ${join(dir, 'stdout.json')}`, '/dev/null'], { encoding: 'utf8', cwd: repoRoot, env: { ...process.env, NO_COLOR: '1' }, input: '' });
  const password = /panel_password: (\S+)/.exec(readFileSync(join(dir, 'appliance.secrets.yaml'), 'utf8'))![1]!;
  assert.ok(r.stdout.includes(password), `shown on the terminal:\n${r.stdout}`);
  assert.ok(!readFileSync(join(dir, 'stdout.json'), 'utf8').includes(password), 'not in the JSON');
  const again = spawnSync('script', ['-qec', `${quoted} > ${join(dir, 'stdout.json')}`, '/dev/null'], { encoding: 'utf8', cwd: repoRoot, env: { ...process.env, NO_COLOR: '1' }, input: '' });
  assert.ok(!again.stdout.includes(password), 'shown only once');
});

test('--ssh-config: the config names address, port and key for every SSH command; a bad config is bad input on one line', async () => {
  const dir = tempDir();
  const key = join(dir, 'id_ed25519');
  spawnSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-f', key]);
  const port = await closedPort();
  const cfg = join(dir, 'ssh_config');
  writeFileSync(cfg, `Host viaconfig\n  HostName 127.0.0.1\n  Port ${port}\n  IdentityFile ${key}\n`);
  // Nothing listens there: the failure shows where the command went, from the config alone.
  for (const args of [['share', 'viaconfig'], ['panel', 'viaconfig'], ['adopt-drive', 'viaconfig', '--yes']]) {
    const r = syncpi([...args, '-F', cfg, '--connect-timeout', '5'], { env: { SSH_AUTH_SOCK: '' } });
    assert.equal(r.status, 1, `${args[0]}: ${r.stderr}`);
    assert.match(r.stderr, new RegExp(`cannot connect to pi@127\\.0\\.0\\.1:${port}`), args[0]);
  }
  writeFileSync(join(dir, 'with-include'), 'Host a\n  Port 2\nInclude other\n');
  const inc = syncpi(['share', 'viaconfig', '--ssh-config', join(dir, 'with-include')]);
  assert.equal(inc.status, 2);
  assert.match(inc.stderr.trim(), /with-include:3: Include is not supported/);
  assert.equal(inc.stderr.trim().split('\n').length, 1);
  const missing = syncpi(['share', 'viaconfig', '--ssh-config', join(dir, 'nope')]);
  assert.equal(missing.status, 2);
  assert.match(missing.stderr, /--ssh-config .*nope: no such file/);
});
