/** Per-card settings in a Raspberry Pi OS base's own places: cloud-init's seed and firstrun.sh. */
import { test } from 'node:test';
import { spawnSync } from 'node:child_process';
import assert from 'node:assert/strict';
import YAML from 'yaml';
import { renderNetworkConfig, renderUserData, withRegdom } from '../../src/flash/cloud-init.js';
import { renderFirstrun, withFirstrun } from '../../src/flash/firstrun.js';
import { renderSettings, SETTINGS_FILE } from '../../src/flash/settings.js';

const KEY = 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEQFxHFAAuqDnFat+fAaazwCt3EzGYTIki0T56kp4/9k card';

test('user-data is a #cloud-config document with the hostname and the keys for the default user', () => {
  const text = renderUserData({ hostname: 'pi-7', sshKeys: [KEY] });
  assert.equal(text.split('\n')[0], '#cloud-config', 'cloud-init reads a cloud-config only with the marker as its first line');
  assert.deepEqual(YAML.parse(text, { version: '1.1' }), { hostname: 'pi-7', manage_etc_hosts: 'localhost', ssh_authorized_keys: [KEY] });
  assert.equal(YAML.parse(renderUserData({ sshKeys: [] })), null, 'nothing given: an empty document');
});

test('network-config carries any SSID and passphrase as one scalar each, with the country', () => {
  const ssid = 'a: "b" #c\\ \'d\' - [e]';
  const psk = '#: "x" \\ \'y\' {z}';
  const net = YAML.parse(renderNetworkConfig({ sshKeys: [], wifi: { ssid, psk, country: 'DE' } })!, { version: '1.1' });
  const wlan = net.network.wifis.wlan0;
  assert.equal(wlan['regulatory-domain'], 'DE');
  assert.deepEqual(Object.keys(wlan['access-points']), [ssid]);
  assert.equal(wlan['access-points'][ssid].password, psk);
  assert.equal(net.network.ethernets.eth0.dhcp4, true, 'the wired port stays configured');
  assert.equal(renderNetworkConfig({ sshKeys: [] }), undefined);
});

test('the regulatory domain goes onto the one cmdline.txt line, replacing an earlier one', () => {
  assert.equal(withRegdom('console=tty1 root=PARTUUID=1-02 cfg80211.ieee80211_regdom=US rootwait\n', 'GB'), 'console=tty1 root=PARTUUID=1-02 rootwait cfg80211.ieee80211_regdom=GB\n');
});

test('firstrun.sh parses as shell, carries the settings as data, and is armed once on cmdline.txt', async () => {
  const settings = renderSettings({ hostname: 'pi-7', sshKeys: [KEY], wifi: { ssid: "x'; reboot; '", psk: '$(reboot) `id`', country: 'DE' }, wifiCountry: 'DE' });
  const script = renderFirstrun(settings, SETTINGS_FILE);
  const r = spawnSync('sh', ['-n'], { input: script });
  assert.equal(r.status, 0, String(r.stderr));
  const body = script.slice(script.indexOf("<<'SYNCPI_SETTINGS_END'\n") + 24, script.indexOf('\nSYNCPI_SETTINGS_END\n'));
  assert.equal(`${body}\n`, settings, 'a quoted here-document: the settings reach the file byte for byte, unexpanded');
  const once = withFirstrun('console=tty1 root=PARTUUID=1-02 rootwait\n');
  assert.equal(once, 'console=tty1 root=PARTUUID=1-02 rootwait systemd.run=/boot/firmware/firstrun.sh systemd.run_success_action=reboot systemd.unit=kernel-command-line.target\n');
  assert.equal(withFirstrun(once), once);
});
