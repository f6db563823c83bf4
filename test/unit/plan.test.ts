/** Config in, Plan out: determinism, secrets, hostile values carried safely, strict templates. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { planFromFile } from '../../src/plan/load.js';
import { redactPlan } from '../../src/plan/summary.js';
import { authorizedKeysItems } from '../../src/plan/derived-files.js';
import { UserError } from '../../src/util/errors.js';
import { ConfigError } from '../../src/config/load.js';
import { fixtures, minimalYaml, repoRoot, tempDir, writeConfig } from '../helpers/fixtures.js';

process.env.SYNCPI_TEST_PSK = 'correct horse battery';
process.env.SYNCPI_TEST_PANEL_PASSWORD = 'pa$$word "quoted" <xml>';

function fullConfig(): string {
  const dir = tempDir();
  const p = join(dir, 'full.yaml');
  copyFileSync(join(fixtures, 'good', 'full.yaml'), p);
  return p;
}

const file = (plan: ReturnType<typeof planFromFile>['plan'], path: string) => {
  const f = plan.files.find((x) => x.path === path);
  assert.ok(f, `plan has ${path}`);
  return f;
};

test('same input gives the same bytes, and secrets are reused across runs', () => {
  const p = fullConfig();
  const a = planFromFile(p);
  const b = planFromFile(p);
  assert.equal(JSON.stringify(a.plan), JSON.stringify(b.plan));
  const st = statSync(a.inputs.secretsFile);
  assert.equal(st.mode & 0o777, 0o600, 'secrets file is 0600');
});

test('key order in the YAML does not change the config hash', () => {
  const one = writeConfig(minimalYaml('sync:\n  private: true\n  local_discovery: false\n'));
  const two = writeConfig(`sync:\n  local_discovery: false\n  private: true\n${minimalYaml()}`);
  assert.equal(planFromFile(one).plan.configHash, planFromFile(two).plan.configHash);
});

test('the panel password never appears in plaintext in the plan', () => {
  const p = fullConfig();
  const { plan, inputs } = planFromFile(p);
  const json = JSON.stringify(plan);
  assert.ok(!json.includes(process.env.SYNCPI_TEST_PANEL_PASSWORD!), 'plaintext password absent');
  const cfg = file(plan, '/etc/syncpi/syncthing/config.xml');
  assert.match(cfg.content, /<password>\$2[aby]\$10\$[./A-Za-z0-9]{53}<\/password>/);
  assert.equal(cfg.secret, true);
  assert.ok(!JSON.stringify(redactPlan(plan)).includes(inputs.panelPasswordHash), 'panel hash redacted from printed plan');
  // the REST key is each appliance's own, made on it: no plan (and so no image) carries one
  assert.match(cfg.content, /<apikey><\/apikey>/);
});

test('a generated panel password is announced once, stored 0600 and reused', () => {
  const p = writeConfig(minimalYaml());
  const first = planFromFile(p);
  assert.equal(first.inputs.announcements.length, 1);
  assert.match(first.inputs.announcements[0]!, /generated panel password/);
  assert.ok(!first.inputs.announcements[0]!.includes(first.inputs.panelPassword!), 'the message never holds the password');
  const second = planFromFile(p);
  assert.equal(second.inputs.announcements.length, 0, 'not shown again');
  assert.equal(second.inputs.panelPassword, first.inputs.panelPassword);
  const stored = readFileSync(first.inputs.secretsFile, 'utf8');
  assert.ok(stored.includes(first.inputs.panelPassword!));
});

test('a secrets file readable by others is refused', () => {
  const p = writeConfig(minimalYaml());
  const { inputs } = planFromFile(p);
  chmodSync(inputs.secretsFile, 0o644);
  assert.throws(() => planFromFile(p), (e: unknown) => e instanceof UserError && /mode 644.*expected mode 0600/.test(e.message));
});

test('hostile values are quoted for the language of each file', () => {
  const { plan } = planFromFile(fullConfig());
  const unit = file(plan, '/etc/systemd/system/syncpi-backup.service').content;
  // systemd: % doubled, $ doubled inside quotes, " escaped; the command cannot gain new lines.
  assert.match(unit, /^Description=Nightly 100%% backup \$\(reboot\)$/m);
  assert.match(unit, /^ExecStart="\/usr\/bin\/rsync" "-a" "\/srv\/sync\/my docs\/" "\/srv\/backup\/\$\$HOME \\"x\\""$/m);
  assert.equal(unit.split('\n').filter((l) => l.startsWith('ExecStart')).length, 1);
  const daemon = file(plan, '/etc/systemd/system/syncpi-watcher.service').content;
  assert.match(daemon, /^Environment="GREETING=hello world"$/m);
  assert.match(daemon, /^Restart=on-failure$/m);
  const xml = file(plan, '/etc/syncpi/syncthing/config.xml').content;
  assert.match(xml, /label="Docs &amp; &lt;Things&gt;" path="\/srv\/sync\/my docs"/);
  const wifi = file(plan, '/etc/NetworkManager/system-connections/syncpi-wifi-0.nmconnection');
  assert.equal(wifi.mode, '0600');
  assert.equal(wifi.secret, true);
  // NetworkManager's own form (checked against nmcli in property-generated-files): ; escaped, then GLib's \\.
  assert.match(wifi.content, /^ssid=Home\\\\; "quoted" \\\\ net$/m);
  const prepare = file(plan, '/usr/local/lib/syncpi/syncthing-prepare').content;
  assert.match(prepare, /^seed_folder docs '\/srv\/sync\/my docs'$/m);
  assert.doesNotMatch(prepare, /^\s*(mkdir|install|touch)\b.*\.stfolder/m, 'syncpi never writes a folder marker: Syncthing does, for folders it has never seen');
});

test('the drive is mounted without ever blocking boot, with ownership for exFAT', () => {
  const { plan } = planFromFile(fullConfig());
  const line = file(plan, '/etc/syncpi/fstab.d/drive.fstab').content.split('\n').find((l) => l.startsWith('UUID='))!;
  const [spec, mount, fstype, opts, , pass] = line.split(/\s+/);
  assert.equal(spec, 'UUID=1A2B-3C4D', 'the exFAT serial in the case of its by-uuid link');
  assert.equal(mount, '/srv/sync');
  assert.equal(fstype, 'exfat');
  for (const o of ['nofail', 'x-systemd.automount', 'x-systemd.device-timeout=30s', 'uid=syncthing', 'gid=syncthing', 'umask=0007']) assert.ok(opts!.split(',').includes(o), o);
  assert.equal(pass, '0');
  assert.ok(plan.packages.install.includes('exfatprogs'));
  assert.ok(plan.packages.install.includes('hd-idle'));
  assert.match(file(plan, '/etc/syncpi/syncthing/config.xml').content, /ignorePerms="true"/);
  const unit = file(plan, '/etc/systemd/system/syncthing.service').content;
  assert.match(unit, /^RequiresMountsFor=\/srv\/sync$/m);
  assert.match(unit, /^ReadWritePaths=\/var\/lib\/syncthing -\/srv\/sync$/m);
});

test('firewall: SSH only from allowed networks of both families; loopback panel gets no rule', () => {
  const { plan } = planFromFile(fullConfig());
  const nft = file(plan, '/etc/nftables.conf').content;
  assert.match(nft, /elements = \{ 192\.168\.1\.0\/24 \}/);
  assert.match(nft, /elements = \{ fd00::\/8 \}/);
  assert.match(nft, /ip saddr @ssh_allow_v4 tcp dport 2222 accept/);
  assert.doesNotMatch(nft, /8384/);
  assert.match(nft, /policy drop/);
});

test('packages: the profile never purges what the plan installs or keeps', () => {
  const p = writeConfig(minimalYaml('packages:\n  remove: [syncthing, gcc, cups*]\n  keep: [gcc]\n'));
  const { plan } = planFromFile(p);
  assert.ok(plan.packages.install.includes('syncthing'));
  assert.ok(!plan.packages.purge.includes('syncthing'));
  assert.ok(!plan.packages.purge.includes('gcc'));
  assert.ok(plan.packages.purge.includes('cups*'));
  assert.ok(plan.packages.keep.includes('gcc'));
});

test('tunnel-only keeps the panel on loopback whatever listen says', () => {
  const p = writeConfig(minimalYaml('panel:\n  listen: 0.0.0.0:9000\n  tunnel_only: true\n'));
  const { plan } = planFromFile(p);
  assert.match(file(plan, '/etc/syncpi/syncthing/config.xml').content, /<address>127\.0\.0\.1:9000<\/address>/);
  assert.match(file(plan, '/etc/ssh/sshd_config.d/10-syncpi.conf').content, /^AllowTcpForwarding local$/m);
});

test('a user template folder overrides a built-in template, and strict mode rejects a missing value', () => {
  const p = writeConfig(minimalYaml('templates_dir: ./tpl\nservices:\n  hello:\n    description: hi\n    template: custom\n    values: { greeting: hello }\n'));
  mkdirSync(join(dirname(p), 'tpl', 'services'), { recursive: true });
  writeFileSync(join(dirname(p), 'tpl', 'services', 'custom.service.hbs'), '[Service]\nExecStart=/bin/echo {{values.greeting}}\n');
  const { plan } = planFromFile(p);
  assert.equal(file(plan, '/etc/systemd/system/syncpi-hello.service').content, '[Service]\nExecStart=/bin/echo hello\n');
  writeFileSync(join(dirname(p), 'tpl', 'services', 'custom.service.hbs'), '[Service]\nExecStart=/bin/echo {{values.greting}}\n');
  assert.throws(() => planFromFile(p), (e: unknown) => e instanceof UserError && /custom\.service\.hbs: "greting" not defined/.test(e.message));
});

test('every plan input is looked up the same way: a package profile and the first-boot script come from the user folder too', () => {
  const builtin = planFromFile(writeConfig(minimalYaml())).plan;
  assert.ok(builtin.packages.purge.includes('xserver-common'), 'the built-in headless profile strips X');
  assert.equal(file(builtin, '/usr/local/lib/syncpi/firstboot').content, readFileSync(join(repoRoot, 'templates', 'firstboot', 'firstboot.sh'), 'utf8'));
  const p = writeConfig(minimalYaml('templates_dir: ./tpl\n'));
  mkdirSync(join(dirname(p), 'tpl', 'packages'), { recursive: true });
  mkdirSync(join(dirname(p), 'tpl', 'firstboot'), { recursive: true });
  writeFileSync(join(dirname(p), 'tpl', 'packages', 'headless.txt'), '# ours\nmy-desktop*\n\ncups\n');
  writeFileSync(join(dirname(p), 'tpl', 'firstboot', 'firstboot.sh'), '#!/bin/sh\necho ours\n');
  const { plan } = planFromFile(p);
  assert.deepEqual(plan.packages.purge, ['cups', 'my-desktop*']);
  assert.equal(file(plan, '/usr/local/lib/syncpi/firstboot').content, '#!/bin/sh\necho ours\n');
  assert.equal(file(plan, '/usr/local/lib/syncpi/firstboot').mode, '0755', 'the plan, not the input, decides the mode');
});

test('a key that would become two authorized_keys lines never reaches a plan', () => {
  assert.throws(() => authorizedKeysItems({ name: 'pi', home: '/home/pi' }, ['ssh-ed25519 AAAA a\nssh-rsa BBBB b'], 'system'), /SSH key 0 of pi .*control character/);
  assert.deepEqual(authorizedKeysItems({ name: 'svc', home: '/' }, [], 'sync'), { dirs: [], files: [] }, 'no keys: the file is left alone');
  assert.equal(authorizedKeysItems({ name: 'svc', home: '/' }, ['k'], 'sync').files[0]!.path, '/.ssh/authorized_keys');
});

test('every problem in a file is reported at once', () => {
  const p = writeConfig('system:\n  hostname: Bad Name\n  user:\n    name: root\n    ssh_keys: [nope]\ndrive:\n  label: "bad label!"\n');
  assert.throws(() => planFromFile(p), (e: unknown) => e instanceof ConfigError && e.problems.length >= 4);
});

test('a file over 1 MiB is refused before it is parsed', () => {
  const p = writeConfig(minimalYaml(`# ${'x'.repeat(1024 * 1024)}\n`));
  assert.throws(() => planFromFile(p), (e: unknown) => e instanceof ConfigError && /expected at most 1048576 bytes/.test(e.message));
});

test('the default appliance compiles to the expected parts', () => {
  const dir = tempDir();
  const key = join(dir, 'id.pub');
  writeFileSync(key, readFileSync(join(fixtures, 'good', 'full.yaml'), 'utf8').match(/ssh-ed25519 \S+ \S+/)![0] + '\n');
  const src = readFileSync(join(fixtures, '..', '..', 'image', 'appliance.yaml'), 'utf8').replace('~/.ssh/id_ed25519.pub', key);
  const p = join(dir, 'appliance.yaml');
  writeFileSync(p, src);
  const { plan } = planFromFile(p);
  assert.equal(plan.hostname, 'syncpi');
  assert.deepEqual(plan.base, { kind: 'debian', suite: 'trixie', arch: 'arm64' });
  for (const u of ['syncthing.service', 'nftables.service', 'ssh.service', 'syncpi-drive-report.timer']) assert.ok(plan.units.enable.includes(u), u);
  for (const p of ['syncthing', 'nftables', 'openssh-server', 'unattended-upgrades']) assert.ok(plan.packages.install.includes(p), p);
  assert.ok(plan.packages.purge.includes('avahi-daemon'));
  assert.equal(file(plan, '/home/pi/.ssh/authorized_keys').content.split('\n').filter(Boolean).length, 1);
  assert.ok(plan.checks.some((c) => c.kind === 'http' && c.url.endsWith('/rest/system/status') && c.expectAuthenticated === 200));
});

test('unit names from paths match systemd-escape, and a late drive starts Syncthing', async () => {
  const { execFileSync } = await import('node:child_process');
  const { unitNameForPath } = await import('../../src/plan/units.js');
  for (const [p, suffix] of [['/srv/sync', 'mount'], ['/dev/disk/by-label/SYNC.DRIVE_2', 'device'], ['/dev/disk/by-uuid/0f3c2a51-8d1e-4b7a-9c2d-1e2f3a4b9b2e', 'device'], ['/media/ünï', 'automount']] as const) {
    const want = execFileSync('systemd-escape', ['--path', `--suffix=${suffix}`, p], { encoding: 'utf8' }).trim();
    assert.equal(unitNameForPath(p, suffix), want, p);
  }
  const p = writeConfig(minimalYaml('drive:\n  label: SYNCDRIVE\n'));
  const unit = planFromFile(p).plan.files.find((f) => f.path === '/etc/systemd/system/syncthing.service')!.content;
  assert.match(unit, /^WantedBy=dev-disk-by\\x2dlabel-SYNCDRIVE\.device$/m);
  assert.match(unit, /^RequiresMountsFor=\/srv\/sync$/m);
});

test('every folder Syncthing is given lies inside a path its sandboxed unit may write, with and without a drive', () => {
  const folders = (root: string) => `sync:\n  folders:\n    - { id: rel, path: docs }\n    - { id: abs, path: ${root}/photos }\n    - { id: deep, path: "${root}/a b/c" }\n`;
  for (const extra of [folders('/srv/sync'), `drive:\n  label: DATA\n  mount: /mnt/data\n${folders('/mnt/data')}`, `drive:\n  uuid: 0f3c2a51-8d1e-4b7a-9c2d-1e2f3a4b9b2e\n${folders('/srv/sync')}`]) {
    const { plan } = planFromFile(writeConfig(minimalYaml(extra)));
    const unit = file(plan, '/etc/systemd/system/syncthing.service').content;
    assert.match(unit, /^ProtectSystem=strict$/m, 'the rest of the file system stays read-only');
    const writable = /^ReadWritePaths=(.*)$/m.exec(unit)![1]!.split(' ').map((p) => p.replace(/^-/, ''));
    const paths = [...file(plan, '/etc/syncpi/syncthing/config.xml').content.matchAll(/<folder [^>]*path="([^"]+)"/g)].map((m) => m[1]!);
    assert.equal(paths.length, 3, extra);
    for (const p of paths) assert.ok(writable.some((w) => p === w || p.startsWith(`${w}/`)), `${p} is writable (ReadWritePaths=${writable.join(' ')}) for\n${extra}`);
  }
});

test('the units syncpi reserves are every unit its own features write, and a service cannot take one', async () => {
  const { ownUnitNames } = await import('../../src/plan/own-units.js');
  const own = ownUnitNames();
  for (const p of [fullConfig(), writeConfig(minimalYaml()), writeConfig(minimalYaml('drive:\n  label: DATA\n  spin_down: 60\nhardening:\n  firewall: off\n'))]) {
    const { plan } = planFromFile(p);
    const units = plan.files.filter((f) => f.feature !== 'services' && f.path.startsWith('/etc/systemd/system/')).map((f) => f.path.split('/').pop()!);
    assert.ok(units.includes('syncpi-firstboot.service'));
    for (const u of units) assert.ok(own.has(u), `${u} is reserved`);
  }
  const p = writeConfig(minimalYaml('services:\n  firstboot:\n    description: x\n    exec: [/usr/bin/true]\n'));
  assert.throws(() => planFromFile(p), (e: unknown) => e instanceof ConfigError && /services\.firstboot: got "firstboot"; expected another service name: syncpi-firstboot\.service/.test(e.message));
  const r = writeConfig(minimalYaml('services:\n  readonly:\n    description: x\n    exec: [/usr/bin/true]\n'));
  assert.throws(() => planFromFile(r), (e: unknown) => e instanceof ConfigError && /services\.readonly: .*syncpi-readonly\.service/.test(e.message), 'the read-only mirror\'s unit is reserved');
});

test('each boot service unit notifies the handler that restarts that unit, whatever the names', () => {
  const p = writeConfig(minimalYaml('services:\n  a:\n    description: scheduled\n    exec: [/usr/bin/true]\n    schedule: daily\n  a-timer:\n    description: daemon\n    type: simple\n    exec: [/usr/bin/sleep, infinity]\n'));
  const { plan } = planFromFile(p);
  const byName = new Map(plan.handlers.map((h) => [h.name, h]));
  const restarted: string[] = [];
  for (const f of plan.files.filter((x) => x.feature === 'services')) {
    const unit = f.path.split('/').pop()!;
    const restarts = f.notify.map((n) => byName.get(n)!).flatMap((h) => (h.action === 'restart' ? [h.unit] : []));
    // A timer's service is started by the timer, not restarted when it changes.
    if (restarts.length) assert.deepEqual(restarts, [unit], `${unit} restarts itself`);
    restarted.push(...restarts.map(String));
  }
  assert.deepEqual(restarted.sort(), ['syncpi-a-timer.service', 'syncpi-a.timer']);
});

test('network limits with the firewall off are refused, each key named with hardening.firewall', () => {
  const p = writeConfig(minimalYaml('panel:\n  allowed_networks: [192.168.1.0/24]\nhardening:\n  firewall: off\n  ssh:\n    allow_from: [10.0.0.0/8]\n'));
  assert.throws(() => planFromFile(p), (e: unknown) => {
    assert.ok(e instanceof ConfigError);
    assert.deepEqual(e.problems.map((x) => x.path), ['panel.allowed_networks', 'hardening.ssh.allow_from']);
    for (const x of e.problems) assert.match(x.message, new RegExp(`no ${x.path.replace(/\./g, '\\.')} with hardening\\.firewall: off`));
    return true;
  });
  assert.doesNotThrow(() => planFromFile(writeConfig(minimalYaml('hardening:\n  firewall: off\n'))), 'the firewall may still be off');
});

test('a secret the config points at that is unusable is reported at its key, file:line:col', () => {
  process.env.SYNCPI_TEST_SHORT_PW = 'short';
  const p = writeConfig(minimalYaml('panel:\n  password: { env: SYNCPI_TEST_SHORT_PW }\n'));
  assert.throws(() => planFromFile(p), (e: unknown) => e instanceof ConfigError && /appliance\.yaml:5:13: panel\.password: the password is shorter than 8 characters; expected at least 8$/.test(e.message));
  const q = writeConfig(minimalYaml('panel:\n  tls: { cert: missing.pem, key: missing.key }\n'));
  assert.throws(() => planFromFile(q), (e: unknown) => e instanceof ConfigError && /appliance\.yaml:5:16: panel\.tls\.cert: cannot read .*missing\.pem \(ENOENT\)/.test(e.message));
});

test('web access is off by default; on, it serves the chosen folders to the panel user (or the listed users) with a redacted htpasswd', () => {
  const folders = 'sync:\n  folders:\n    - { id: documents, path: documents }\n    - { id: camera, path: camera }\n';
  const off = planFromFile(writeConfig(minimalYaml(folders))).plan;
  assert.ok(!off.files.some((f) => f.feature === 'web') && !off.packages.install.includes('rclone') && !off.users.some((u) => u.name === 'syncpi-web'), 'nothing of it without access.web');
  const { plan, inputs } = planFromFile(writeConfig(minimalYaml(`panel:\n  password: { env: SYNCPI_TEST_PANEL_PASSWORD }\n${folders}access:\n  web:\n    folders: [camera]\n`)));
  assert.ok(plan.packages.install.includes('rclone'));
  assert.ok(plan.units.enable.includes('syncpi-web.service'));
  const htpasswd = file(plan, '/etc/syncpi/web/htpasswd');
  assert.equal(htpasswd.content, `admin:${inputs.panelPasswordHash}\n`);
  assert.equal(htpasswd.mode, '0600');
  assert.ok(!JSON.stringify(redactPlan(plan)).includes(inputs.panelPasswordHash), 'hash redacted from the printed plan');
  const unit = file(plan, '/etc/systemd/system/syncpi-web.service').content;
  assert.match(unit, /^BindReadOnlyPaths="\/srv\/sync\/camera":"\/run\/syncpi-web\/camera"$/m);
  assert.ok(!unit.includes('/srv/sync/documents'), 'a folder not chosen is not bound');
  const hash = '$2y$10$nD9iLVBaq3dCNSTVLG6we.qSnVMKW0bJXHDTH1g9qJpdfJVL0jMJq';
  const custom = planFromFile(writeConfig(minimalYaml(`${folders}access:\n  web:\n    folders: [documents]\n    read_only: false\n    users: [{ name: alice, bcrypt: "${hash}" }]\n`))).plan;
  assert.equal(file(custom, '/etc/syncpi/web/htpasswd').content, `alice:${hash}\n`, 'listed users replace the panel user');
  const rw = file(custom, '/etc/systemd/system/syncpi-web.service').content;
  assert.match(rw, /^BindPaths="\/srv\/sync\/documents":"\/run\/syncpi-web\/documents"$/m);
  assert.ok(!rw.includes('--read-only'));
});

test('read-only shares: a send-only folder for the readers only, its mirror and timer; none without readers', () => {
  const friend = 'HP7GZ5V-GMP7M46-LIELETW-QB2QTLR-WXVFETW-HW3VLMJ-GBUK6MJ-CY2GSAV';
  const laptop = 'JB2RL7S-VHDZAR2-G34LH2K-277GIJZ-ZIZMV6I-NNOFVUF-BJ2ZYLO-YNAK7A5';
  const sync = (readers: string) => `sync:\n  devices: [{ id: ${laptop}, name: laptop }, { id: ${friend}, name: friend }]\n  folders: [{ id: photos, path: photos, devices: [laptop]${readers} }]\ndrive: { label: DATA, mount: /mnt/data }\n`;
  const { plan } = planFromFile(writeConfig(minimalYaml(sync(', readers: [friend]'))));
  const xml = file(plan, '/etc/syncpi/syncthing/config.xml').content;
  const share = /<folder id="photos\.readonly"[^>]*>[\s\S]*?<\/folder>/.exec(xml)?.[0] ?? '';
  assert.match(share, /path="\/mnt\/data\/\.syncpi\/readonly\/photos" type="sendonly"/);
  assert.deepEqual([...share.matchAll(/<device id="([^"]+)"/g)].map((m) => m[1]), [friend]);
  assert.match(share, /<versioning><\/versioning>/, 'the copy keeps no versions of its own');
  const own = /<folder id="photos"[^>]*>[\s\S]*?<\/folder>/.exec(xml)?.[0] ?? '';
  assert.deepEqual([...own.matchAll(/<device id="([^"]+)"/g)].map((m) => m[1]), [laptop], 'the reader is no device of the folder');
  assert.match(own, /<versioning type="staggered">\s*<param key="maxAge" val="31536000"><\/param>\s*<cleanupIntervalS>3600<\/cleanupIntervalS>\s*<fsPath>\/mnt\/data\/\.syncpi\/versions\/photos<\/fsPath>/);
  assert.match(own, /<minDiskFree unit="%">2<\/minDiskFree>/);
  assert.match(file(plan, '/usr/local/lib/syncpi/readonly-mirror').content, /^mirror \/mnt\/data\/photos \/mnt\/data\/\.syncpi\/readonly\/photos \|\| status=1$/m);
  assert.match(file(plan, '/etc/systemd/system/syncpi-readonly.timer').content, /^OnUnitInactiveSec=60$/m);
  assert.ok(plan.units.enable.includes('syncpi-readonly.timer'));
  assert.ok(plan.packages.install.includes('rsync'));
  assert.match(file(plan, '/usr/local/lib/syncpi/syncthing-prepare').content, /^seed_folder photos\.readonly \/mnt\/data\/\.syncpi\/readonly\/photos$/m);
  assert.match(file(plan, '/usr/local/lib/syncpi/syncthing-prepare').content, /^\[ "\$held" = 1 \] \|\| versions_dir \/mnt\/data\/\.syncpi\/versions\/photos$/m);

  const none = planFromFile(writeConfig(minimalYaml(`${sync('')}  `.replace('sync:\n', 'sync:\n  versioning: { type: none }\n')))).plan;
  assert.ok(!none.files.some((f) => f.path.includes('readonly')), 'no readers: no mirror, no units');
  assert.doesNotMatch(file(none, '/etc/syncpi/syncthing/config.xml').content, /photos\.readonly|type="staggered"/);
  assert.doesNotMatch(file(none, '/usr/local/lib/syncpi/syncthing-prepare').content, /^\[ "\$held" = 1 \] \|\| versions_dir/m, 'versioning none: no versions directory');
});

test('FAT-like drives get ignorePerms; ext4 keeps permissions', () => {
  for (const [fs, want] of [['exfat', 'true'], ['vfat', 'true'], ['ntfs', 'true'], ['ext4', 'false']] as const) {
    const { plan } = planFromFile(writeConfig(minimalYaml(`sync:\n  folders: [{ id: a, path: a }]\ndrive: { label: DATA, fs: ${fs} }\n`)));
    assert.match(file(plan, '/etc/syncpi/syncthing/config.xml').content, new RegExp(`<folder id="a"[^>]* ignorePerms="${want}"`), fs);
  }
});
