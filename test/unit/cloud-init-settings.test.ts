/** Per-card settings as cloud-init seed files: what cloud-init and netplan will read back. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import YAML from 'yaml';
import { renderNetworkConfig, renderUserData, withRegdom } from '../../src/flash/cloud-init.js';

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
