/**
 * A stock Raspberry Pi OS base's own first boot, run for real on the root syncpi customised:
 * the bookworm generation's raspberrypi-sys-mods firstboot (as init) and the units a first boot
 * starts, the trixie generation's real cloud-init (its four stages, NoCloud seed on the boot
 * partition), each after `syncpi flash` put its per-card settings onto a real FAT copy of the
 * boot partition. Then: hostname, the one login user and its keys, key-only sshd, Wi-Fi, and
 * every file syncpi wrote still as written.
 *
 * The roots are amd64 (test/helpers/pios-fixture.ts), so everything runs natively; each "boot"
 * runs in its own mount and UTS namespace (systemd sets the hostname from /etc/hostname before
 * anything here starts), so no mount outlives it.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import type { Plan } from '../../src/plan/types.js';
import { planFromFile } from '../../src/plan/load.js';
import { customizeRoot } from '../../src/image/apply.js';
import { CLOUD_INIT_DROPIN } from '../../src/image/pios.js';
import { writeSettings, type CardSettings } from '../../src/flash/settings.js';
import { withCleanup } from '../../src/util/cleanup.js';
import type { Reporter } from '../../src/util/report.js';
import { fixtureKey, writeConfig } from '../helpers/fixtures.js';
import { BASE_DISK_ID, FIRST_USER, hasFile, piOsRoot, readRoot, removeRoot } from '../helpers/pios-fixture.js';

const quiet: Reporter = { json: true, step: (_n, fn) => fn(() => undefined), info() {}, warn() {}, result() {} };
const CARD_KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHcardcardcardcardcardcardcardcardcardcardcard card@syncpi';
const PLAN_PSK = 'plan wifi passphrase';
const CARD_SSID = 'card "net"; #1';
const CARD_PSK = 'card passphrase \\ $x';

function applianceYaml(user: string): string {
  return [
    'system:',
    '  hostname: pi-kitchen',
    '  user:',
    `    name: ${user}`,
    `    ssh_keys: ["${fixtureKey}"]`,
    '  wifi:',
    '    country: DE',
    '    networks:',
    '      - ssid: home',
    '        psk: { env: SYNCPI_TEST_PLAN_PSK }',
    'hardening:',
    '  firewall: "off"',
    '  unattended_upgrades: false',
    'panel:',
    '  tunnel_only: true',
    '',
  ].join('\n');
}

/**
 * The real compiled Plan on a stock-image base. Its packages are the layer's work (build.test
 * covers it); the fixture already carries what the first boot needs, so none are installed here.
 */
function stockPlan(user: string): Plan {
  process.env.SYNCPI_TEST_PLAN_PSK = PLAN_PSK;
  const plan = planFromFile(writeConfig(applianceYaml(user))).plan;
  return { ...plan, base: { kind: 'image', arch: 'arm64', source: 'raspios-lite.img.xz', sha256: '0'.repeat(64) }, packages: { install: [], purge: [], keep: [] } };
}

const sha = (s: string | Buffer) => createHash('sha256').update(s).digest('hex');

/** `syncpi flash`'s per-card step on a FAT copy of the staged boot partition, copied back after. */
async function flashSettings(boot: string, s: CardSettings): Promise<string> {
  const dir = mkdtempSync(join(tmpdir(), 'syncpi-pios-fat-'));
  try {
    const fat = join(dir, 'boot.vfat');
    await execa('mkfs.vfat', ['-C', '-F', '32', '-n', 'bootfs', fat, String(64 * 1024)]);
    const env = { MTOOLS_SKIP_CHECK: '1' };
    await execa('mcopy', ['-s', '-p', '-m', '-i', fat, ...readdirSync(boot).map((e) => join(boot, e)), '::/'], { env });
    const format = await writeSettings(fat, 0, s);
    for (const e of readdirSync(boot)) rmSync(join(boot, e), { recursive: true, force: true });
    await execa('mcopy', ['-s', '-p', '-m', '-n', '-i', fat, '::/*', `${boot}/`], { env });
    // as the card's vfat mount shows them (Raspberry Pi OS's fstab: defaults, so umask 022)
    await execa('find', [boot, '-type', 'f', '-exec', 'chmod', '0755', '{}', '+']);
    return format;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Run `script` in the root as a booting system would: own mounts, /proc and /sys, hostname set. */
async function inBoot(root: string, script: string, env: Record<string, string> = {}): Promise<{ exitCode: number; out: string }> {
  const outer = 'mount -t proc proc "$R/proc" && mount -t sysfs sysfs "$R/sys" && hostname "$(cat "$R/etc/hostname")" && exec chroot "$R" /bin/sh -c "$S"';
  const r = await execa('unshare', ['--mount', '--uts', '--fork', '--propagation', 'private', 'sh', '-c', outer], {
    env: { ...env, R: root, S: script, PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    extendEnv: false,
    reject: false,
    all: true,
  });
  return { exitCode: r.exitCode ?? -1, out: r.all ?? '' };
}

const enabled = async (root: string, unit: string): Promise<boolean> =>
  (await execa('systemctl', ['--root', root, 'is-enabled', unit], { reject: false })).stdout.trim() === 'enabled';

/** ConditionPathExists= lines as systemd reads them: plain ones all hold, of the "|" ones one does. */
function conditionsHold(root: string, unitText: string): boolean {
  const conds = [...unitText.matchAll(/^ConditionPathExists=(\|?)(!?)(\S+)$/gm)].map((m) => ({ or: m[1] === '|', holds: hasFile(root, m[3]!.slice(1)) !== (m[2] === '!') }));
  const ors = conds.filter((c) => c.or);
  return conds.filter((c) => !c.or).every((c) => c.holds) && (ors.length === 0 || ors.some((c) => c.holds));
}

/**
 * The first-boot units of base and appliance that are enabled, in the order their Before=/After=
 * put them, each run as systemd would (conditions checked, ExecStart in the booted root).
 * Returns what ran, with exit codes.
 */
async function runUnits(root: string, units: string[]): Promise<string[]> {
  const ran: string[] = [];
  for (const unit of units) {
    if (!(await enabled(root, unit))) continue;
    const text = readRoot(root, `etc/systemd/system/${unit}`);
    if (!conditionsHold(root, text)) {
      ran.push(`${unit}: condition false`);
      continue;
    }
    const exec = /^ExecStart=(.+)$/m.exec(text)![1]!;
    const r = await inBoot(root, exec);
    ran.push(`${unit}: exit ${r.exitCode}${r.exitCode ? ` (${r.out.trim().split('\n').pop()})` : ''}`);
  }
  return ran;
}

/** Real cloud-init, its boot stages in order, as its systemd units run them. */
async function cloudInitBoot(root: string): Promise<string> {
  let log = '';
  for (const stage of ['init --local', 'init', 'modules --mode config', 'modules --mode final']) {
    const r = await inBoot(root, `cloud-init ${stage}`);
    log += `$ cloud-init ${stage} (exit ${r.exitCode})\n${r.out}\n`;
  }
  return log;
}

async function customize(root: string, boot: string, plan: Plan): Promise<void> {
  await withCleanup((scope) => customizeRoot(root, boot, plan, { reporter: quiet, scope, arch: 'amd64' }));
}

function loginUsers(root: string): string[] {
  return readRoot(root, 'etc/passwd')
    .split('\n')
    .map((l) => l.split(':'))
    .filter((f) => Number(f[2]) >= 1000 && f[0] !== 'nobody')
    .map((f) => `${f[0]}:${f[2]}`);
}

/** Every file of the Plan whose content is on the root as the Plan has it, except `changed`. */
function assertPlanFilesIntact(root: string, plan: Plan, changed: string[]): void {
  const drifted = plan.files.filter((f) => !changed.includes(f.path)).filter((f) => !hasFile(root, f.path.slice(1)) || sha(readRoot(root, f.path.slice(1))) !== sha(f.content));
  assert.deepEqual(drifted.map((f) => f.path), [], 'files syncpi wrote are still as written');
}

async function sshdEffective(root: string, user: string): Promise<Map<string, string>> {
  // ssh.service's RuntimeDirectory=sshd, which sshd -T checks for
  const r = await inBoot(root, `mkdir -p /run/sshd && /usr/sbin/sshd -T -C user=${user},host=card,addr=192.0.2.7`);
  assert.equal(r.exitCode, 0, r.out);
  return new Map(r.out.split('\n').map((l) => [l.split(' ')[0]!, l.slice(l.indexOf(' ') + 1)]));
}

function assertKeyOnlySsh(cfg: Map<string, string>, user: string): void {
  assert.equal(cfg.get('passwordauthentication'), 'no');
  assert.equal(cfg.get('kbdinteractiveauthentication'), 'no');
  assert.equal(cfg.get('pubkeyauthentication'), 'yes');
  assert.equal(cfg.get('allowusers'), user);
  assert.equal(cfg.get('banner'), 'none', "userconf-pi's rename banner is gone");
}

function assertKeys(root: string, user: string, keys: string[]): void {
  const ak = `home/${user}/.ssh/authorized_keys`;
  const lines = readRoot(root, ak).split('\n').filter(Boolean);
  for (const k of keys) assert.ok(lines.includes(k), `${k.slice(-20)} in ${ak}`);
  const st = statSync(join(root, ak));
  assert.equal(st.mode & 0o777, 0o600);
  assert.equal(st.uid, 1000, 'owned by the appliance user (uid 1000)');
}

describe('bookworm-based Raspberry Pi OS: raspberrypi-sys-mods firstboot and userconf-pi', () => {
  let root = '';
  let boot = '';
  let plan: Plan;
  before(async () => {
    ({ root, boot } = await piOsRoot('bookworm'));
    plan = stockPlan('keeper');
  });
  after(() => root && removeRoot(root));

  test('the first boot keeps the appliance: user, keys, hostname, key-only SSH, Wi-Fi, files', async () => {
    await customize(root, boot, plan);
    assert.match(readRoot(root, 'boot/firmware/cmdline.txt'), /\binit=\/usr\/lib\/raspberrypi-sys-mods\/firstboot\b/, 'the base resize stays armed');
    assert.equal(await enabled(root, 'userconfig.service'), false);
    assert.equal(await enabled(root, 'regenerate_ssh_host_keys.service'), false, 'the plan turns the base generator unit off');

    // per-card: rpi-imager's place on this generation, firstrun.sh named on cmdline.txt
    assert.equal(await flashSettings(boot, { sshKeys: [CARD_KEY], wifiCountry: 'DE', wifi: { ssid: 'cafe', psk: 'cafe passphrase', country: 'DE' } }), 'firstrun');
    assert.match(readRoot(root, 'boot/firmware/cmdline.txt'), / systemd\.run=\/boot\/firmware\/firstrun\.sh systemd\.run_success_action=reboot systemd\.unit=kernel-command-line\.target\n$/);
    // what an rpi-imager user may also leave there: a rename of the first user, and "ssh"
    writeFileSync(join(boot, 'userconf.txt'), `${FIRST_USER}:$6$salt$notarealhash\n`);
    writeFileSync(join(boot, 'ssh'), '');

    const fb = await inBoot(root, '/usr/lib/raspberrypi-sys-mods/firstboot', { FIXTURE_DISK_ID: 'c0ffee42' });
    assert.equal(fb.exitCode, 0, fb.out);
    // the next boot: systemd runs cmdline.txt's systemd.run= script, then reboots
    const fr = await inBoot(root, '/boot/firmware/firstrun.sh');
    assert.equal(fr.exitCode, 0, fr.out);
    const ran = await runUnits(root, ['regenerate_ssh_host_keys.service', 'syncpi-ssh-host-keys.service', 'syncpi-firstboot.service', 'userconfig.service', 'sshswitch.service']);
    assert.deepEqual(ran, ['syncpi-ssh-host-keys.service: condition false', 'syncpi-firstboot.service: condition false', 'sshswitch.service: exit 0']);
    assert.equal(hasFile(root, 'boot/firmware/firstrun.sh'), false, 'firstrun.sh deleted itself');
    assert.equal(hasFile(root, 'boot/firmware/syncpi-firstboot.txt'), false, 'the settings (with the PSK) are gone');
    assert.match(readRoot(root, 'etc/NetworkManager/system-connections/syncpi-wifi.nmconnection'), /^ssid=99;97;102;101;$/m, "the card's Wi-Fi");

    assert.equal(readRoot(root, 'etc/hostname'), 'pi-kitchen\n');
    assert.deepEqual(loginUsers(root), ['keeper:1000'], 'one login user, the appliance\'s, as uid 1000');
    assert.equal(hasFile(root, 'etc/sudoers.d/010_pi-nopasswd'), false);
    assertKeys(root, 'keeper', [fixtureKey, CARD_KEY]);
    assertKeyOnlySsh(await sshdEffective(root, 'keeper'), 'keeper');
    assert.ok(hasFile(root, 'etc/ssh/ssh_host_ed25519_key'), 'host keys made once, by the base firstboot');
    assert.equal(hasFile(root, 'boot/firmware/userconf.txt'), true, 'userconf.txt is not read');
    assert.equal(await enabled(root, 'getty@tty1.service'), true);
    // the firstboot's new disk id, consistent in both places that name it
    const cmdline = readRoot(root, 'boot/firmware/cmdline.txt');
    assert.doesNotMatch(cmdline, /init=|systemd\./);
    assert.match(cmdline, / cfg80211\.ieee80211_regdom=DE\n$/);
    assert.match(cmdline, /root=PARTUUID=c0ffee42-02/);
    assert.match(readRoot(root, 'etc/fstab'), /^PARTUUID=c0ffee42-02\s+\/\s/m);
    assert.doesNotMatch(readRoot(root, 'etc/fstab') + cmdline, new RegExp(BASE_DISK_ID));
    assert.match(readRoot(root, 'var/lib/NetworkManager/NetworkManager.state'), /^WirelessEnabled=true$/m);
    assert.ok(readRoot(root, 'etc/NetworkManager/system-connections/syncpi-wifi-0.nmconnection').includes(`\npsk=${PLAN_PSK}\n`), "the config's Wi-Fi");
    // the card's key joins the appliance's: the one plan file per-card settings extend
    assertPlanFilesIntact(root, plan, ['/home/keeper/.ssh/authorized_keys']);
  });
});

describe('trixie-based Raspberry Pi OS: cloud-init', () => {
  let root = '';
  let boot = '';
  let plan: Plan;
  before(async () => {
    ({ root, boot } = await piOsRoot('trixie'));
    plan = stockPlan(FIRST_USER);
  });
  after(() => root && removeRoot(root));

  test('per-card settings go into the NoCloud seed, and cloud-init applies them without undoing the appliance', async () => {
    await customize(root, boot, plan);
    assert.ok(hasFile(root, CLOUD_INIT_DROPIN.slice(1)));

    const card: CardSettings = { hostname: 'pi-card-7', sshKeys: [CARD_KEY], wifiCountry: 'GB', wifi: { ssid: CARD_SSID, psk: CARD_PSK, country: 'GB' } };
    assert.equal(await flashSettings(boot, card), 'cloud-init');
    assert.equal(hasFile(root, 'boot/firmware/syncpi-firstboot.txt'), false);
    // a user who knows rpi-imager may turn password logins on in user-data
    writeFileSync(join(boot, 'user-data'), `${readRoot(root, 'boot/firmware/user-data')}ssh_pwauth: true\n`);

    const log = await cloudInitBoot(root);
    const ran = await runUnits(root, ['syncpi-ssh-host-keys.service', 'syncpi-firstboot.service', 'userconfig.service']);
    assert.deepEqual(ran, ['syncpi-ssh-host-keys.service: exit 0', 'syncpi-firstboot.service: condition false'], 'one host key generator ran: syncpi\'s');
    // set-passwords asks systemd whether sshd runs (to restart it), and a chroot has no manager
    // to ask; on a card sshd is not started yet at that point (the stage runs Before=ssh.service)
    const result = JSON.parse(readRoot(root, 'var/lib/cloud/data/result.json')) as { v1: { errors: string[] } };
    const noManager = (e: string) => /^\('set-passwords'.*systemctl', 'show'.*Failed to connect to system scope bus/.test(e);
    assert.deepEqual(result.v1.errors.filter((e) => !noManager(e)), [], log);
    assert.match(readRoot(root, 'etc/ssh/sshd_config.d/50-cloud-init.conf'), /^PasswordAuthentication yes$/m, 'user-data did ask for passwords');

    assert.equal(readRoot(root, 'etc/hostname'), 'pi-card-7\n');
    assert.match(readRoot(root, 'etc/hosts'), /^127\.0\.1\.1\s+pi-card-7\b/m);
    assert.deepEqual(loginUsers(root), [`${FIRST_USER}:1000`], 'no user of cloud-init\'s beside the appliance\'s');
    assert.equal(hasFile(root, 'etc/sudoers.d/90-cloud-init-users'), false, 'no sudo rule of cloud-init\'s');
    assertKeys(root, FIRST_USER, [fixtureKey, CARD_KEY]);
    assertKeyOnlySsh(await sshdEffective(root, FIRST_USER), FIRST_USER);
    assert.match(readRoot(root, 'boot/firmware/cmdline.txt'), /^[^\n]* resize cfg80211\.ieee80211_regdom=GB\n$/);
    // the card's Wi-Fi: netplan's systemd generator renders it for NetworkManager at boot
    const gen = await inBoot(root, '/usr/libexec/netplan/generate && cat /run/NetworkManager/system-connections/netplan-wlan0-*.nmconnection');
    assert.equal(gen.exitCode, 0, gen.out);
    assert.match(gen.out, /^type=wifi$/m);
    assert.match(gen.out, /^interface-name=wlan0$/m);
    assert.ok(gen.out.split('\n').includes(`ssid=${CARD_SSID}`), gen.out);
    assert.ok(gen.out.split('\n').includes(`psk=${CARD_PSK.replace(/\\/g, '\\\\')}`), 'the passphrase, key-file escaped');
    assert.match(readRoot(root, 'var/lib/NetworkManager/NetworkManager.state'), /^WirelessEnabled=true$/m);
    // the one resize is the base's (cmdline.txt "resize"): cloud-init's two stood down
    const ciLog = readRoot(root, 'var/log/cloud-init.log');
    assert.match(ciLog, /growpart disabled: mode=off/);
    assert.match(ciLog, /Skipping module named resizefs, resizing disabled/);
    assertPlanFilesIntact(root, plan, ['/etc/hostname', '/etc/hosts', `/home/${FIRST_USER}/.ssh/authorized_keys`]);
  });
});

describe('trixie-based Raspberry Pi OS without per-card settings', () => {
  test("cloud-init's first boot leaves the appliance as built: its hostname, user, keys and files", async () => {
    const { root, boot } = await piOsRoot('trixie');
    try {
      const plan = stockPlan('keeper');
      await customize(root, boot, plan);
      const log = await cloudInitBoot(root);
      const result = JSON.parse(readRoot(root, 'var/lib/cloud/data/result.json')) as { v1: { errors: string[] } };
      assert.deepEqual(result.v1.errors, [], log);
      assert.deepEqual(await runUnits(root, ['syncpi-ssh-host-keys.service', 'syncpi-firstboot.service', 'userconfig.service']), ['syncpi-ssh-host-keys.service: exit 0', 'syncpi-firstboot.service: condition false']);
      assert.equal(readRoot(root, 'etc/hostname'), 'pi-kitchen\n');
      assert.deepEqual(loginUsers(root), ['keeper:1000'], "the base's pi is gone and cloud-init made no user");
      assertKeys(root, 'keeper', [fixtureKey]);
      assertKeyOnlySsh(await sshdEffective(root, 'keeper'), 'keeper');
      assertPlanFilesIntact(root, plan, []);
    } finally {
      removeRoot(root);
    }
  });
});

describe('the fixture\'s mechanisms act when left alone', () => {
  test('userconf-pi renames the first user after userconf.txt, as on a stock card', async () => {
    const { root, boot } = await piOsRoot('bookworm');
    try {
      writeFileSync(join(boot, 'userconf.txt'), 'bob:$6$salt$notarealhash\n');
      assert.deepEqual(await runUnits(root, ['userconfig.service']), ['userconfig.service: exit 0']);
      assert.deepEqual(loginUsers(root), ['bob:1000']);
      assert.equal(await enabled(root, 'userconfig.service'), false);
    } finally {
      removeRoot(root);
    }
  });
});
