/**
 * templates/firstboot/firstboot.sh applied to a root tree (ROOT=…): the per-card settings file is parsed as
 * data, hostile values never run or escape, valid values land where the Pi reads them, and the
 * file (which holds the Wi-Fi passphrase) is gone afterwards. Runs as root (chown to uid 1000).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { execa } from 'execa';

const SCRIPT = resolve(import.meta.dirname, '../../templates/firstboot/firstboot.sh');
const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBn7QvX7Vx0Yq3E5Yw5m0q3hQ2Rr8h0C2Wc8x4J0c3aB me@laptop';

function tree(opts: { nm?: boolean } = {}): string {
  const root = mkdtempSync(join(tmpdir(), 'syncpi-firstboot-'));
  for (const d of ['boot/firmware', 'etc', 'home/pi', 'var/log']) mkdirSync(join(root, d), { recursive: true });
  if (opts.nm) mkdirSync(join(root, 'etc/NetworkManager'), { recursive: true });
  writeFileSync(join(root, 'etc/passwd'), 'root:x:0:0:root:/root:/bin/bash\npi:x:1000:1000::/home/pi:/bin/bash\n');
  writeFileSync(join(root, 'etc/hosts'), '127.0.0.1\tlocalhost\n127.0.1.1\toldname\n');
  writeFileSync(join(root, 'etc/hostname'), 'oldname\n');
  writeFileSync(join(root, 'boot/firmware/cmdline.txt'), 'console=serial0 root=LABEL=rootfs rootwait\n');
  return root;
}

async function apply(root: string, settings: string): Promise<{ code: number; out: string }> {
  writeFileSync(join(root, 'boot/firmware/syncpi-firstboot.txt'), settings);
  const r = await execa('sh', [SCRIPT], { env: { ROOT: root, PATH: process.env.PATH ?? '/usr/bin:/bin' }, reject: false, cwd: root });
  return { code: r.exitCode ?? -1, out: `${r.stdout}\n${r.stderr}` };
}

test('valid settings: hostname, SSH key, Wi-Fi (NetworkManager), country; the file is deleted', async () => {
  const root = tree({ nm: true });
  try {
    const r = await apply(root, `# comment\r\nhostname=pi-kitchen\r\nssh_key=${KEY}\nwifi_country=DE\nwifi_ssid=Home $(reboot) ;x\nwifi_psk=pa\\ss "w" $(reboot)\n`);
    assert.equal(r.code, 0, r.out);
    assert.equal(readFileSync(join(root, 'etc/hostname'), 'utf8'), 'pi-kitchen\n');
    const hosts = readFileSync(join(root, 'etc/hosts'), 'utf8');
    assert.match(hosts, /^127\.0\.1\.1\tpi-kitchen$/m);
    assert.doesNotMatch(hosts, /oldname/);
    const ak = join(root, 'home/pi/.ssh/authorized_keys');
    assert.equal(readFileSync(ak, 'utf8'), `${KEY}\n`);
    assert.equal(statSync(ak).mode & 0o777, 0o600);
    assert.equal(statSync(ak).uid, 1000);
    assert.equal(statSync(join(root, 'home/pi/.ssh')).mode & 0o777, 0o700);
    const nm = readFileSync(join(root, 'etc/NetworkManager/system-connections/syncpi-wifi.nmconnection'), 'utf8');
    const ssidBytes = [...Buffer.from('Home $(reboot) ;x')].join(';') + ';';
    assert.match(nm, new RegExp(`^ssid=${ssidBytes.replace(/[;]/g, ';')}$`, 'm'));
    assert.match(nm, /^psk=pa\\\\ss\\s"w"\\s\$\(reboot\)$/m);
    assert.equal(statSync(join(root, 'etc/NetworkManager/system-connections/syncpi-wifi.nmconnection')).mode & 0o777, 0o600);
    assert.match(readFileSync(join(root, 'boot/firmware/cmdline.txt'), 'utf8'), /^console=serial0 root=LABEL=rootfs rootwait cfg80211\.ieee80211_regdom=DE\n$/);
    assert.ok(!existsSync(join(root, 'boot/firmware/syncpi-firstboot.txt')), 'the settings file must be gone');
    assert.ok(!existsSync(join(root, 'reboot')) && !r.out.includes('pa\\ss'), 'nothing evaluated, no secret logged');
    // idempotent on keys: applying the same key again does not duplicate it
    await apply(root, `ssh_key=${KEY}\n`);
    assert.equal(readFileSync(ak, 'utf8'), `${KEY}\n`);
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('hostile values are rejected as data: command substitution, newlines, ../, unknown keys', async () => {
  const root = tree();
  const marker = join(root, 'pwned');
  try {
    const hostile = [
      `hostname=$(touch ${marker})`,
      'hostname=../../etc/shadow',
      `hostname=\`touch ${marker}\``,
      `ssh_key=ssh-ed25519 AAAA$(touch ${marker}) x`,
      `ssh_key=ssh-ed25519 AAAAC3Nza\u0007bell x`,
      `touch ${marker}`,
      `$(touch ${marker})=1`,
      `PATH=/tmp`,
      `wifi_country=de; touch ${marker}`,
      `wifi_psk=short`,
      '',
    ].join('\n');
    const r = await apply(root, hostile);
    assert.equal(r.code, 1, 'invalid lines make the unit fail visibly');
    assert.ok(!existsSync(marker), 'no value may ever be executed');
    assert.equal(readFileSync(join(root, 'etc/hostname'), 'utf8'), 'oldname\n');
    assert.ok(!existsSync(join(root, 'home/pi/.ssh')));
    assert.equal(readFileSync(join(root, 'boot/firmware/cmdline.txt'), 'utf8'), 'console=serial0 root=LABEL=rootfs rootwait\n');
    assert.match(r.out, /line 1: invalid hostname/);
    assert.match(r.out, /line 6: ignored \(not key=value\)/);
    assert.match(r.out, /line 8: unknown key/);
    assert.ok(!existsSync(join(root, 'boot/firmware/syncpi-firstboot.txt')));
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});

test('Wi-Fi without NetworkManager goes to wpa_supplicant with a hex SSID; a symlinked ~/.ssh is refused', async () => {
  const root = tree();
  try {
    await execa('ln', ['-s', '/root/.ssh', join(root, 'home/pi/.ssh')]);
    const r = await apply(root, `wifi_country=GB\nwifi_ssid=a"}b\nwifi_psk=12345678\nssh_key=${KEY}\nhostname=pi2\n`);
    assert.equal(r.code, 1, r.out);
    assert.match(r.out, /symbolic link/);
    const conf = readFileSync(join(root, 'etc/wpa_supplicant/wpa_supplicant-wlan0.conf'), 'utf8');
    assert.match(conf, /^\tssid=61227d62$/m);
    assert.match(conf, /^\tpsk="12345678"$/m);
    assert.match(conf, /^country=GB$/m);
    assert.equal(readFileSync(join(root, 'etc/hostname'), 'utf8'), 'pi2\n');
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
});
