/**
 * Per-card settings in cloud-init's NoCloud seed, for cards of a Raspberry Pi OS base that boots
 * with cloud-init (trixie-based images): the same files, in the same shape, rpi-imager writes
 * there (user-data: hostname and SSH keys; network-config: Wi-Fi; cmdline.txt: the regulatory
 * domain), so whoever knows rpi-imager finds them where expected. The image's cloud-init drop-in
 * (src/image/pios.ts) makes the keys land on the appliance's user.
 *
 * Values are validated before (settings.ts) and emitted through a YAML serializer, so an SSID or
 * passphrase is always one quoted scalar.
 */
import YAML from 'yaml';
import type { CardSettings } from './settings.js';

export const USER_DATA = 'user-data';
export const NETWORK_CONFIG = 'network-config';
export const META_DATA = 'meta-data';

const HEAD = '# Per-card settings written by `syncpi flash`; cloud-init applies them on first boot.\n';
const yaml = (v: unknown): string => YAML.stringify(v, { defaultStringType: 'QUOTE_DOUBLE', defaultKeyType: 'PLAIN' });

/** user-data: a #cloud-config document (the marker must be its first line). */
export function renderUserData(s: CardSettings): string {
  const cfg: Record<string, unknown> = {};
  if (s.hostname) {
    cfg.hostname = s.hostname;
    // the 127.0.1.1 line only: the rest of /etc/hosts is the appliance's
    cfg.manage_etc_hosts = 'localhost';
  }
  // top level: the default user's keys, which the image's drop-in makes the appliance's user
  if (s.sshKeys.length) cfg.ssh_authorized_keys = s.sshKeys;
  return `#cloud-config\n${HEAD}${Object.keys(cfg).length ? yaml(cfg) : ''}`;
}

/** network-config (version 2, what netplan reads); undefined without a Wi-Fi network. */
export function renderNetworkConfig(s: CardSettings): string | undefined {
  if (!s.wifi) return undefined;
  const wlan: Record<string, unknown> = { dhcp4: true, optional: true };
  if (s.wifi.country) wlan['regulatory-domain'] = s.wifi.country;
  wlan['access-points'] = { [s.wifi.ssid]: { password: s.wifi.psk } };
  // a network-config replaces the base's default, so the wired port is named too
  const net = { network: { version: 2, ethernets: { eth0: { dhcp4: true, dhcp6: true, optional: true } }, wifis: { wlan0: wlan } } };
  return HEAD + yaml(net);
}

/** cmdline.txt with the Wi-Fi regulatory domain set (one line, any earlier value replaced). */
export function withRegdom(cmdline: string, country: string): string {
  const line = cmdline.split('\n')[0]!.replace(/\s*cfg80211\.ieee80211_regdom=\S*/g, '').trimEnd();
  return `${line} cfg80211.ieee80211_regdom=${country}\n`;
}
