/**
 * Checks for values that have a shape of their own: each returns null when valid, or a short
 * phrase saying what would be valid. Shared by the schema and by command-line flags.
 */
import { isIPv4, isIPv6 } from 'node:net';

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

export function checkUuidOrFsId(s: string): string | null {
  // ext4/btrfs/xfs use RFC 4122 UUIDs; FAT and exFAT volume serials look like ABCD-1234; NTFS 16 hex.
  if (/^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$/.test(s)) return null;
  if (/^[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}$/.test(s)) return null;
  if (/^[0-9A-Fa-f]{16}$/.test(s)) return null;
  return 'a filesystem UUID as lsblk -o UUID shows it (e.g. 0f3c2a51-…-9b2e, ABCD-1234 for FAT/exFAT, 16 hex digits for NTFS)';
}

export function checkFsLabel(s: string): string | null {
  if (!/^[A-Za-z0-9._-]{1,32}$/.test(s)) return 'a filesystem label of 1–32 letters, digits, . _ -';
  return null;
}

export function checkCidr(s: string): string | null {
  const m = /^([^/]+)\/(\d{1,3})$/.exec(s);
  if (!m) return 'a network in CIDR notation, e.g. 192.168.1.0/24 or fd00::/64';
  const addr = m[1]!;
  const bits = Number(m[2]);
  if (isIPv4(addr)) {
    if (bits > 32) return 'an IPv4 prefix length of 0–32';
    const n = addr.split('.').reduce((acc, o) => acc * 256 + Number(o), 0);
    const mask = bits === 0 ? 0 : (0xffffffff << (32 - bits)) >>> 0;
    const net = (n & mask) >>> 0;
    if (net !== n) {
      const netStr = [24, 16, 8, 0].map((sh) => (net >>> sh) & 255).join('.');
      return `a network address without host bits (did you mean ${netStr}/${bits}?)`;
    }
    return null;
  }
  if (isIPv6(addr)) {
    if (bits > 128) return 'an IPv6 prefix length of 0–128';
    return null;
  }
  return 'a network in CIDR notation, e.g. 192.168.1.0/24 or fd00::/64';
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

const B32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

function luhnBase32(s: string): string {
  let factor = 1;
  let sum = 0;
  const n = B32.length;
  for (const ch of s) {
    let addend = factor * B32.indexOf(ch);
    factor = factor === 2 ? 1 : 2;
    addend = Math.floor(addend / n) + (addend % n);
    sum += addend;
  }
  return B32[(n - (sum % n)) % n]!;
}

/** Syncthing device IDs: 8 groups of 7 base32 characters; every 14th character is a Luhn check. */
export function checkDeviceId(s: string): string | null {
  const what = 'a Syncthing device ID: 8 groups of 7 characters A–Z 2–7, as shown under Actions → Show ID';
  if (!/^[A-Z2-7]{7}(-[A-Z2-7]{7}){7}$/.test(s)) return what;
  const raw = s.replace(/-/g, '');
  for (let i = 0; i < 4; i++) {
    const chunk = raw.slice(i * 14, i * 14 + 13);
    if (luhnBase32(chunk) !== raw[i * 14 + 13]) return `${what} (check character ${i + 1} does not match: a typo?)`;
  }
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
