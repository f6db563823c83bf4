/**
 * Checks for values that have a shape of their own: each returns null when valid, or a short
 * phrase saying what would be valid. Shared by the schema and by command-line flags.
 */
import { isIPv4, isIPv6 } from 'node:net';
import { DEVICE_ID_EXPECTED, normaliseDeviceId } from './device-id.js';

const CONTROL = /[\u0000-\u001f\u007f]/;

export function hasControlChars(s: string): boolean {
  return CONTROL.test(s);
}

export function checkHostname(s: string): string | null {
  if (s.length > 63) return 'a hostname of at most 63 characters';
  if (!/^[a-z0-9]([a-z0-9-]*[a-z0-9])?$/.test(s)) {
    return 'a hostname: lowercase letters, digits and inner hyphens (RFC 1123), e.g. "syncpi"';
  }
  return null;
}

/** Host names or addresses that a laptop connects to (fleet inventories, provision). */
export function checkHostAddress(s: string): string | null {
  if (isIPv4(s) || isIPv6(s)) return null;
  if (s.length > 253) return 'a host name of at most 253 characters';
  const labels = s.split('.');
  for (const l of labels) {
    if (!/^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$/.test(l)) return 'a DNS name or an IP address';
  }
  return null;
}

const RESERVED_USERS = new Set([
  'root', 'daemon', 'bin', 'sys', 'sync', 'games', 'man', 'lp', 'mail', 'news', 'uucp', 'proxy',
  'www-data', 'backup', 'list', 'irc', 'gnats', 'nobody', 'systemd-network', 'systemd-resolve',
  'systemd-timesync', 'messagebus', 'sshd', 'syncthing', '_apt', 'polkitd',
]);

export function checkUserName(s: string): string | null {
  if (!/^[a-z_][a-z0-9_-]{0,31}$/.test(s)) return 'a user name: lowercase letter or _, then up to 31 of a-z 0-9 _ -';
  if (RESERVED_USERS.has(s)) return `a user name other than the system account "${s}"`;
  return null;
}

/** Names we turn into systemd unit names (syncpi-NAME.service): kept to a safe subset. */
export function checkServiceName(s: string): string | null {
  if (!/^[a-z0-9][a-z0-9-]{0,47}$/.test(s)) return 'a service name: lowercase letters, digits and hyphens, starting with a letter or digit, at most 48 characters';
  return null;
}

/** Absolute, normalised target path without `..`, `.` segments or control characters. */
export function checkTargetPath(s: string, opts: { allowSpaces?: boolean } = {}): string | null {
  if (!s.startsWith('/')) return 'an absolute path starting with /';
  if (s.length > 1024) return 'a path of at most 1024 characters';
  if (hasControlChars(s)) return 'a path without control characters or newlines';
  const segs = s.split('/').slice(1);
  if (s !== '/' && segs.some((x) => x === '' || x === '.' || x === '..')) {
    return 'a normalised absolute path (no "..", ".", "//" or trailing "/")';
  }
  const allowed = opts.allowSpaces ? /^[\p{L}\p{N} ._+@,=-]+$/u : /^[A-Za-z0-9._+@-]+$/;
  if (s !== '/' && segs.some((x) => !allowed.test(x))) {
    return opts.allowSpaces
      ? 'a path of letters, digits, spaces and . _ + @ , = -'
      : 'a path of letters, digits and . _ + @ -';
  }
  return null;
}

export function isPathInside(child: string, parent: string): boolean {
  if (parent === '/') return true;
  return child === parent || child.startsWith(parent + '/');
}

const RFC_UUID = /^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/;
const FAT_SERIAL = /^[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}$/;
const NTFS_SERIAL = /^[0-9A-Fa-f]{16}$/;

export function checkUuidOrFsId(s: string): string | null {
  if (RFC_UUID.test(s) || FAT_SERIAL.test(s) || NTFS_SERIAL.test(s)) return null;
  return 'a filesystem UUID as blkid shows it (e.g. 0f3c2a51-…-9b2e, ABCD-1234 for FAT/exFAT, 16 hex digits for NTFS)';
}

/**
 * A drive UUID spelled as udev names its /dev/disk/by-uuid link (the link fstab's UUID= waits
 * for, compared case-sensitively). blkid prints RFC 4122 UUIDs (ext4, btrfs, xfs) in lowercase
 * and FAT/exFAT volume serials (ABCD-1234) and NTFS serials (16 hex digits) in uppercase,
 * whatever case mkfs was given.
 */
export function canonicalFsUuid(s: string): string {
  return RFC_UUID.test(s) ? s.toLowerCase() : s.toUpperCase();
}

/** Which UUID shape each filesystem has: a UUID of another shape can never match the drive. */
export function checkUuidForFs(uuid: string, fs: string): string | null {
  const rfc = ['ext4', 'btrfs', 'xfs'].includes(fs);
  if (rfc && !RFC_UUID.test(uuid)) return `an RFC 4122 UUID (8-4-4-4-12 hex digits): ${fs} has no other kind`;
  if ((fs === 'vfat' || fs === 'exfat') && !FAT_SERIAL.test(uuid)) return `a volume serial of the form ABCD-1234: that is what ${fs} has`;
  if (fs === 'ntfs' && !NTFS_SERIAL.test(uuid)) return 'a volume serial of 16 hex digits: that is what ntfs has';
  return null;
}

export function checkFsLabel(s: string): string | null {
  if (!/^[A-Za-z0-9._-]{1,32}$/.test(s)) return 'a filesystem label of 1–32 letters, digits, . _ -';
  return null;
}

/** Longest label each filesystem stores (mkfs refuses or truncates a longer one). */
export const FS_LABEL_MAX: Record<string, number> = { ext4: 16, btrfs: 32, xfs: 12, exfat: 15, vfat: 11, ntfs: 32 };

/**
 * Mount options that would undo what the drive's fstab line is for: mount's last option wins,
 * so uid=/umask= would take the drive from the daemon's user, x-systemd.* would let a missing
 * drive block boot, noauto would never mount it and ro would make every folder fail.
 */
export function checkDriveOption(o: string): string | null {
  const key = o.split('=')[0]!;
  if (key.startsWith('x-systemd.') || key === 'noauto') return `a mount option syncpi does not set itself; ${key} is managed (drive.timeout sets the wait at boot)`;
  if (['uid', 'gid', 'umask', 'fmask', 'dmask'].includes(key)) return `a mount option syncpi does not set itself; ${key} is managed (the drive belongs to the syncthing user)`;
  if (key === 'ro') return 'a mount option that leaves the drive writable (Syncthing keeps its folder markers and temporary files on it)';
  return null;
}

/**
 * Paths a drive mounted on would hide part of the running system (or, for /srv, every other
 * service's data): the mount point may be none of these, no parent of one, and inside none of
 * them but /srv, whose sub-directories exist to hold such data.
 */
const SYSTEM_PATHS = ['/etc', '/usr', '/var', '/var/lib/syncthing', '/boot', '/boot/firmware', '/efi', '/home', '/root', '/run', '/proc', '/sys', '/dev', '/tmp', '/bin', '/sbin', '/lib', '/opt', '/srv', '/lost+found'];

export function checkDriveMount(s: string): string | null {
  const shape = checkTargetPath(s);
  if (shape) return shape;
  const valid = 'a new directory under /srv or /mnt, e.g. /srv/sync or /mnt/data';
  const top = `/${s.split('/')[1]}`;
  // /lib32, /lib64, /libx32, /libo32: the multilib folders an architecture may have.
  const system = /^\/lib(32|64|x32|o32)$/.test(top) ? [...SYSTEM_PATHS, top] : SYSTEM_PATHS;
  const hidden = system.find((p) => isPathInside(p, s));
  if (hidden) return `${valid}; a drive mounted on ${s} would hide ${hidden}`;
  const inside = system.find((p) => p !== '/srv' && isPathInside(s, p));
  if (inside) return `${valid}; ${inside} belongs to the system`;
  return null;
}

/**
 * An address/prefix as nft reads it in an interval set, and as the user meant it. nft reads
 * leading zeros as octal (010.0.0.0 is 8.0.0.0, /033 is /27) and silently clears host bits, so
 * both are refused rather than given a meaning the user did not write; IPv6 zone IDs (%eth0) and
 * dotted IPv4 tails inside IPv6 addresses are syntax errors to nft; IPv4-mapped IPv6 networks
 * would only match an ip6 header, never the IPv4 traffic they name.
 */
export function parseCidr(s: string): { family: 4 | 6; first: bigint; last: bigint } | string {
  const what = 'a network in CIDR notation, e.g. 192.168.1.0/24 or fd00::/64';
  const m = /^([0-9A-Fa-f:.]+)\/(0|[1-9][0-9]{0,2})$/.exec(s);
  if (!m) return s.includes('%') ? `${what}, without an IPv6 zone ID (%…)` : /\/0[0-9]/.test(s) ? `${what}, without leading zeros in the prefix length` : what;
  const addr = m[1]!;
  const bits = Number(m[2]);
  let family: 4 | 6;
  let value: bigint;
  if (isIPv4(addr)) {
    family = 4;
    value = addr.split('.').reduce((acc, o) => (acc << 8n) | BigInt(o), 0n);
  } else if (isIPv6(addr)) {
    family = 6;
    value = ipv6Value(addr);
    if (value >> 32n === 0xffffn) return `an IPv4 network for IPv4 traffic (write ${ipv4Text(value & 0xffffffffn)}/${Math.max(0, bits - 96)}, not the IPv4-mapped ${s})`;
    // nft's scanner takes a dotted tail only in the ::ffff: form, refused above.
    if (addr.includes('.')) return `${what}, with the IPv6 address in hex groups only (e.g. 64:ff9b::c0a8:100, not 64:ff9b::192.168.1.0)`;
  } else {
    return /(^|\.)0[0-9]/.test(addr) ? `${what}, without leading zeros in the address (nft reads them as octal)` : what;
  }
  const width = family === 4 ? 32 : 128;
  if (bits > width) return `an IPv${family} prefix length of 0–${width}`;
  const hostMask = (1n << BigInt(width - bits)) - 1n;
  if ((value & hostMask) !== 0n) {
    const net = value & ~hostMask;
    return `a network address without host bits (did you mean ${family === 4 ? ipv4Text(net) : ipv6Text(net)}/${bits}?)`;
  }
  return { family, first: value, last: value | hostMask };
}

export function checkCidr(s: string): string | null {
  const r = parseCidr(s);
  return typeof r === 'string' ? r : null;
}

function ipv6Value(addr: string): bigint {
  let text = addr;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const n = v4[1]!.split('.').map(Number);
    text = `${text.slice(0, -v4[1]!.length)}${((n[0]! << 8) | n[1]!).toString(16)}:${((n[2]! << 8) | n[3]!).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') as [string, string] : [text, null];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === null ? h : [...h, ...Array<string>(8 - h.length - t.length).fill('0'), ...t];
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(parseInt(g, 16)), 0n);
}

function ipv4Text(v: bigint): string {
  return [24n, 16n, 8n, 0n].map((sh) => String((v >> sh) & 255n)).join('.');
}

/** RFC 5952 text: lowercase, the longest run of two or more zero groups as ::. */
function ipv6Text(v: bigint): string {
  const g = Array.from({ length: 8 }, (_, i) => Number((v >> BigInt(112 - 16 * i)) & 0xffffn));
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (g[i] !== 0) { i++; continue; }
    let j = i;
    while (j < 8 && g[j] === 0) j++;
    if (j - i > bestLen) { best = i; bestLen = j - i; }
    i = j;
  }
  const hex = g.map((x) => x.toString(16));
  if (best < 0) return hex.join(':');
  return `${hex.slice(0, best).join(':')}::${hex.slice(best + bestLen).join(':')}`;
}

/** host:port where host is an IP literal (IPv6 in brackets) or 0.0.0.0 / :: for all. */
export function parseListen(s: string): { host: string; port: number; family: 4 | 6 } | null {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([0-9.]+)):(\d{1,5})$/.exec(s);
  if (!m) return null;
  const host = m[1] ?? m[2]!;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return null;
  if (m[1] !== undefined && isIPv6(host)) return { host, port, family: 6 };
  if (m[2] !== undefined && isIPv4(host)) return { host, port, family: 4 };
  return null;
}

/** A Syncthing listen address: scheme://IP:PORT, the IP of the scheme's family when it names one. */
export function parseSyncListen(s: string): { scheme: string; proto: 'tcp' | 'quic'; host: string; port: number } | null {
  const m = /^((tcp|quic)(4|6)?):\/\/(.+)$/.exec(s);
  const l = m ? parseListen(m[4]!) : null;
  if (!m || !l) return null;
  if (m[3] && Number(m[3]) !== l.family) return null;
  return { scheme: m[1]!, proto: m[2] as 'tcp' | 'quic', host: l.host, port: l.port };
}

export function checkSyncListen(s: string): string | null {
  return parseSyncListen(s) ? null : 'tcp://ADDRESS:PORT or quic://ADDRESS:PORT with an IP address of the scheme\'s family and a port of 1–65535, e.g. tcp://0.0.0.0:22000 or quic6://[::]:22000';
}

/** Where Syncthing dials a device: dynamic, or scheme://HOST[:PORT] with a DNS name or IP (IPv6 in brackets). */
export function checkDeviceAddress(s: string): string | null {
  const what = '"dynamic" or tcp://HOST:PORT / quic://HOST:PORT (IPv6 in brackets, port 1–65535)';
  if (s === 'dynamic') return null;
  const m = /^(tcp|quic)(4|6)?:\/\/(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+))(?::(\d{1,5}))?$/.exec(s);
  if (!m) return what;
  if (m[3] !== undefined ? !isIPv6(m[3]) : checkHostAddress(m[4]!) !== null) return what;
  if (m[5] !== undefined && (Number(m[5]) < 1 || Number(m[5]) > 65535)) return what;
  return null;
}

export function checkListen(s: string): string | null {
  return parseListen(s) ? null : 'ADDRESS:PORT with an IP address, e.g. 0.0.0.0:8384, 127.0.0.1:8384 or [::]:8384';
}

export function isLoopbackHost(host: string): boolean {
  return host === '::1' || /^127\./.test(host);
}

const SSH_KEY_TYPES = new Set([
  'ssh-ed25519', 'ssh-rsa', 'ecdsa-sha2-nistp256', 'ecdsa-sha2-nistp384', 'ecdsa-sha2-nistp521',
  'sk-ssh-ed25519@openssh.com', 'sk-ecdsa-sha2-nistp256@openssh.com',
]);

export function checkSshPublicKey(s: string): string | null {
  const what = 'an OpenSSH public key line "TYPE BASE64 [comment]" (e.g. the contents of ~/.ssh/id_ed25519.pub)';
  if (hasControlChars(s)) return `${what}, on one line`;
  const parts = s.trim().split(/\s+/);
  if (parts.length < 2) return what;
  const [type, b64] = parts as [string, string];
  if (!SSH_KEY_TYPES.has(type)) return `${what}; key type "${type}" is not one of ${[...SSH_KEY_TYPES].join(', ')}`;
  if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) return `${what}; the key data is not base64`;
  const raw = Buffer.from(b64, 'base64');
  if (raw.length < 4) return `${what}; the key data is truncated`;
  const len = raw.readUInt32BE(0);
  if (raw.length < 4 + len || raw.subarray(4, 4 + len).toString('latin1') !== type) {
    return `${what}; the key data does not match its type ${type}`;
  }
  return null;
}

/** Syncthing device IDs in the config: the canonical spelling only, check characters verified. */
export function checkDeviceId(s: string): string | null {
  const r = normaliseDeviceId(s);
  if ('problem' in r) return r.problem;
  if (r.id !== s) return `${DEVICE_ID_EXPECTED}, written as ${r.id}`;
  return null;
}

export function checkTimezone(s: string): string | null {
  if (s === 'UTC' || s === 'Etc/UTC') return null;
  const zones = (Intl as unknown as { supportedValuesOf(k: string): string[] }).supportedValuesOf('timeZone');
  if (zones.includes(s)) return null;
  return 'an IANA time zone such as Europe/Berlin, America/New_York or UTC';
}

export function checkLocale(s: string): string | null {
  if (s === 'C.UTF-8' || /^[a-z]{2,3}_[A-Z]{2}(@[a-z]+)?\.UTF-8$/.test(s)) return null;
  return 'a UTF-8 locale such as en_US.UTF-8, de_DE.UTF-8 or C.UTF-8';
}

/** What wpa_supplicant takes as a WPA passphrase: 8–63 printable ASCII, or the 64-hex-digit key itself. */
export function checkWifiPsk(s: string): string | null {
  if (/^[\x20-\x7e]{8,63}$/.test(s) || /^[0-9a-fA-F]{64}$/.test(s)) return null;
  return '8–63 printable ASCII characters or 64 hex digits';
}

export function checkCountry(s: string): string | null {
  if (/^[A-Z]{2}$/.test(s)) {
    const dn = new Intl.DisplayNames(['en'], { type: 'region' });
    const name = dn.of(s);
    if (name && name !== s) return null;
  }
  return 'a two-letter ISO 3166 country code in capitals, e.g. DE, GB, US';
}

export function checkPackageName(s: string): string | null {
  // Debian policy names, plus * and ? globs for purge lists.
  if (/^[a-z0-9][a-z0-9+.*?-]{0,99}$/.test(s)) return null;
  return 'a Debian package name (lowercase letters, digits, + . -; * and ? as globs)';
}

export function checkSystemdCalendar(s: string): string | null {
  // Full syntax is systemd's; we reject only what could break out of the unit line.
  if (hasControlChars(s) || s.length > 100 || !/^[A-Za-z0-9 *:,.\/~-]+$/.test(s)) {
    return 'a systemd OnCalendar expression such as daily, hourly, Mon *-*-* 03:00:00';
  }
  return null;
}

/** Levenshtein distance, for did-you-mean on unknown keys and enum values. */
export function editDistance(a: string, b: string): number {
  const dp = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) dp[0]![j] = j;
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      dp[i]![j] = Math.min(
        dp[i - 1]![j]! + 1,
        dp[i]![j - 1]! + 1,
        dp[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1),
      );
    }
  }
  return dp[a.length]![b.length]!;
}

export function didYouMean(word: string, candidates: readonly string[]): string | null {
  let best: string | null = null;
  let bestD = Infinity;
  for (const c of candidates) {
    const d = editDistance(word.toLowerCase(), c.toLowerCase());
    if (d < bestD) {
      bestD = d;
      best = c;
    }
  }
  return best !== null && bestD <= Math.max(2, Math.floor(word.length / 3)) ? best : null;
}

/**
 * Where health.alert POSTs: http or https only, no credentials (the URL stands in the unit's
 * script and in the process list), and one word (it is passed to curl as one argument).
 */
export function checkAlertUrl(s: string): string | null {
  const valid = 'an http:// or https:// URL without user name, password or spaces, e.g. https://alerts.home.arpa/syncpi';
  if (CONTROL.test(s) || /\s/.test(s)) return valid;
  let u: URL;
  try {
    u = new URL(s);
  } catch {
    return valid;
  }
  if (u.protocol !== 'http:' && u.protocol !== 'https:') return valid;
  if (!/^https?:\/\//i.test(s) || !u.hostname) return valid;
  if (u.username || u.password) return `${valid} (a secret in the URL would be readable in the Pi's files and process list)`;
  return null;
}
