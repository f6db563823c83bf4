/**
 * The host-key policy, as OpenSSH applies it to known_hosts: which entries name a host, whether a
 * presented key is known, changed, revoked or new, and what to record. Pure: the connection reads
 * the file, asks here, and appends the line this module writes.
 */
import { createHash, createHmac } from 'node:crypto';
import { UserError } from '../util/errors.js';
import { shJoin } from '../util/shell.js';

export interface KnownHostEntry {
  marker?: '@revoked' | '@cert-authority';
  patterns: string;
  keyType: string;
  keyBase64: string;
  line: number;
}

/** The name a host has in known_hosts: `host` on port 22, `[host]:port` otherwise. */
export function knownHostsName(host: string, port: number): string {
  return port === 22 ? host : `[${host}]:${port}`;
}

export function parseKnownHosts(text: string): KnownHostEntry[] {
  const out: KnownHostEntry[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.trim();
    if (!line || line.startsWith('#')) return;
    const parts = line.split(/\s+/);
    let marker: KnownHostEntry['marker'];
    if (parts[0] === '@revoked' || parts[0] === '@cert-authority') marker = parts.shift() as KnownHostEntry['marker'];
    const [patterns, keyType, keyBase64] = parts;
    if (!patterns || !keyType || !keyBase64) return;
    out.push({ marker, patterns, keyType, keyBase64, line: i + 1 });
  });
  return out;
}

function globMatch(pattern: string, name: string): boolean {
  const re = new RegExp('^' + pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.') + '$', 'i');
  return re.test(name);
}

/** OpenSSH semantics: comma-separated patterns, `!` negation, hashed `|1|salt|hmac` names. */
export function entryMatches(patterns: string, name: string): boolean {
  if (patterns.startsWith('|1|')) {
    const [, , salt, hash] = patterns.split('|');
    if (!salt || !hash) return false;
    return createHmac('sha1', Buffer.from(salt, 'base64')).update(name).digest('base64') === hash;
  }
  let matched = false;
  for (const p of patterns.split(',')) {
    if (p.startsWith('!')) {
      if (globMatch(p.slice(1), name)) return false;
    } else if (globMatch(p, name)) matched = true;
  }
  return matched;
}

export function fingerprintOf(keyBlob: Buffer): string {
  return 'SHA256:' + createHash('sha256').update(keyBlob).digest('base64').replace(/=+$/, '');
}

/** The key type written inside an SSH public key blob (first length-prefixed string). */
export function blobKeyType(blob: Buffer): string {
  const len = blob.readUInt32BE(0);
  return blob.subarray(4, 4 + len).toString('latin1');
}

export type HostKeyVerdict =
  | { ok: true; record: boolean }
  | { ok: false; error: UserError };

/** Decide about a presented host key. Pure: callers record the key when asked to. */
export function judgeHostKey(entries: KnownHostEntry[], name: string, blob: Buffer, o: { file: string; label: string; acceptNew?: boolean; fingerprint?: string }): HostKeyVerdict {
  const fp = fingerprintOf(blob);
  const b64 = blob.toString('base64');
  const mine = entries.filter((e) => e.marker !== '@cert-authority' && entryMatches(e.patterns, name));
  if (mine.some((e) => e.marker === '@revoked' && e.keyBase64 === b64)) {
    return { ok: false, error: new UserError(`host key of ${o.label} (${fp}) is marked @revoked in ${o.file}; refusing to connect`) };
  }
  const plain = mine.filter((e) => !e.marker);
  if (plain.some((e) => e.keyBase64 === b64)) return { ok: true, record: false };
  if (plain.length > 0) {
    const lines = plain.map((e) => e.line).join(', ');
    return {
      ok: false,
      error: new UserError(
        `host key of ${o.label} has CHANGED (now ${blobKeyType(blob)} ${fp}; ${o.file} line ${lines} holds another): refusing to connect. ` +
          `If the Pi was reinstalled, remove the old entry (ssh-keygen -R ${shJoin([name])} -f ${shJoin([o.file])}) and connect again`,
      ),
    };
  }
  if (o.fingerprint) {
    const want = o.fingerprint.startsWith('SHA256:') ? o.fingerprint.replace(/=+$/, '') : `SHA256:${o.fingerprint.replace(/=+$/, '')}`;
    if (want === fp) return { ok: true, record: true };
    return { ok: false, error: new UserError(`host key of ${o.label} is ${fp}, not the given --host-key-fingerprint ${o.fingerprint}; refusing to connect`) };
  }
  if (o.acceptNew) return { ok: true, record: true };
  return {
    ok: false,
    error: new UserError(
      `host key of ${o.label} is not known (${blobKeyType(blob)} ${fp}, not in ${o.file}): check it on the Pi (ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub) and pass --host-key-fingerprint ${fp}, or --accept-new-host-key`,
    ),
  };
}

/**
 * The host key algorithms to offer: only the key types already known for this host, so a host
 * that also has (say) an RSA key is judged by the key we recorded, not by whichever type the
 * negotiation picks. Empty: nothing known, any type will do.
 */
export function knownKeyTypes(entries: KnownHostEntry[], name: string): string[] {
  return [...new Set(entries.filter((e) => !e.marker && entryMatches(e.patterns, name)).map((e) => e.keyType))];
}

export function hostKeyAlgorithms(keyTypes: string[]): string[] {
  return keyTypes.flatMap((t) => (t === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [t]));
}

/** The known_hosts line that records a key (plain name, as ssh(1) writes without HashKnownHosts). */
export function knownHostsLine(name: string, blob: Buffer): string {
  return `${name} ${blobKeyType(blob)} ${blob.toString('base64')}\n`;
}
