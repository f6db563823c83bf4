/**
 * A live host reached over SSH (node-ssh on ssh2). Host keys are checked against a known_hosts
 * file before any credential is offered; a changed key is refused, a new one needs an explicit
 * fingerprint or --accept-new-host-key. Commands that need root go through `sudo -n`, so a host
 * that wants a sudo password fails at once with a clear message instead of hanging on a prompt.
 *
 * Every exec opens one channel on the one connection: `roundTrips` counts them, which is what the
 * fleet report and the benchmark show per host.
 */
import { createHash, createHmac } from 'node:crypto';
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import http from 'node:http';
import { connect as tlsConnect } from 'node:tls';
import { homedir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { NodeSSH } from 'node-ssh';
import ssh2 from 'ssh2';
import { Failure, UserError } from '../util/errors.js';
import { shJoin } from '../util/shell.js';
import { loadSshConfig, localContext, resolveSsh, type JumpHop, type SshConfigFile } from './ssh-config.js';

export interface SshOptions {
  /** Name as typed: an alias of the SSH config, a DNS name or an address. */
  host: string;
  /** From the command line: beats the SSH config's Port (default 22). */
  port?: number;
  /** From the command line: beats the SSH config's User. */
  user?: string;
  /** Login when neither `user` nor the SSH config names one (default: the local user). */
  defaultUser?: string;
  /** OpenSSH client config (`-F`): a path, null for none, undefined for ~/.ssh/config if present. */
  sshConfigFile?: string | null;
  /** Private key files; when empty, the agent ($SSH_AUTH_SOCK) and ~/.ssh/id_{ed25519,ecdsa,rsa}. */
  identities?: string[];
  /** known_hosts file (default ~/.ssh/known_hosts). */
  knownHostsFile?: string;
  /** Trust and record a host key never seen before. */
  acceptNewHostKey?: boolean;
  /** Trust a new host whose key has this fingerprint (`SHA256:…`); recorded when it matches. */
  hostKeyFingerprint?: string;
  connectTimeoutMs?: number;
  /** Label used in messages (inventory name); defaults to host. */
  label?: string;
}

export interface ExecResult {
  code: number | null;
  signal: string | null;
  stdout: string;
  stderr: string;
}

export interface ExecOptions {
  stdin?: Buffer | string | Readable;
  onStdout?: (chunk: Buffer) => void;
  onStderr?: (chunk: Buffer) => void;
}

// ---------------------------------------------------------------------------------------------
// known_hosts

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
function blobKeyType(blob: Buffer): string {
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

// ---------------------------------------------------------------------------------------------
// credentials

async function loadIdentities(files: { file: string; from: 'flag' | 'config' }[], identitiesOnly: boolean, label: string): Promise<{ keys: Buffer[]; agent?: string }> {
  const explicit = files.some((f) => f.from === 'flag');
  // As ssh(1): the default key files are tried only when no file was named anywhere.
  const candidates = files.length ? files : ['id_ed25519', 'id_ecdsa', 'id_rsa'].map((f) => ({ file: path.join(homedir(), '.ssh', f), from: 'default' as const }));
  const keys: Buffer[] = [];
  for (const { file: f, from } of candidates) {
    const named = from === 'flag' ? `--identity ${f}` : `IdentityFile ${f} (SSH config)`;
    if (!existsSync(f)) {
      if (from === 'flag') throw new UserError(`--identity ${f}: no such file (give the path of a private key, e.g. ~/.ssh/id_ed25519)`);
      continue;
    }
    const buf = await readFile(f);
    const parsed = ssh2.utils.parseKey(buf);
    if (parsed instanceof Error) {
      const enc = /encrypted|passphrase/i.test(parsed.message);
      // A config key under a passphrase is usually in the agent too, which is offered below.
      if (from === 'flag' || (from === 'config' && !enc)) {
        throw new UserError(`${named}: ${enc ? 'the key is protected by a passphrase; load it into ssh-agent (ssh-add) and omit --identity' : `not a usable private key (${parsed.message})`}`);
      }
      continue;
    }
    keys.push(buf);
  }
  const agent = process.env.SSH_AUTH_SOCK && existsSync(process.env.SSH_AUTH_SOCK) ? process.env.SSH_AUTH_SOCK : undefined;
  const useAgent = !explicit && !identitiesOnly ? agent : undefined;
  if (!keys.length && !useAgent) {
    throw new UserError(`no SSH credentials for ${label}: pass --identity FILE, name an IdentityFile in the SSH config, or start ssh-agent with a key loaded`);
  }
  return { keys, agent: useAgent };
}

// ---------------------------------------------------------------------------------------------

export class SshTarget {
  /** Channels opened (one per exec/forward): the round trips this host cost. */
  roundTrips = 0;
  /** Why the connection ended, when it ended with an error. */
  lastError: string | undefined;
  readonly label: string;
  private constructor(
    private readonly ssh: NodeSSH,
    readonly host: string,
    readonly port: number,
    readonly user: string,
    /** The jump host this connection goes through (ProxyJump), closed with it. */
    private readonly via?: SshTarget,
  ) {
    this.label = host;
  }

  get isRoot(): boolean {
    return this.user === 'root';
  }

  /** Connect, retrying a few times when the connection drops before the handshake completes. */
  static async connect(o: SshOptions): Promise<SshTarget> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await SshTarget.connectOnce(o);
      } catch (e) {
        // A host that is just booting, or a lossy link, can reset a handshake; key or auth problems are final.
        const transient = e instanceof Failure && /No response from server|ECONNRESET|socket hang up|handshake/i.test(e.message);
        if (!transient || attempt >= 3) throw e;
        await new Promise((r) => setTimeout(r, 500 * attempt));
      }
    }
  }

  private static async connectOnce(o: SshOptions): Promise<SshTarget> {
    const ctx = localContext();
    const cfg = loadSshConfig(o.sshConfigFile, ctx);
    const wanted = { host: o.host, port: o.port, user: o.user, defaultUser: o.defaultUser ?? (ctx.localUser || 'root'), identities: o.identities, knownHostsFile: o.knownHostsFile };
    return SshTarget.open(cfg, wanted, o, o.label ?? o.host, 0);
  }

  /**
   * Reach the hops of ProxyJump as ssh(1) does: the first by its own config entry (its own
   * ProxyJump included), each later one through the one before, then this host through the last,
   * each with its own host-key check. Command-line settings apply to the final host only.
   */
  private static async openJumps(cfg: SshConfigFile | null, hops: JumpHop[], o: Pick<SshOptions, 'connectTimeoutMs'>, depth: number): Promise<SshTarget> {
    if (depth >= 8) throw new UserError(`ProxyJump through ${hops.map((h) => h.host).join(',')}: more than 8 hops deep (a ProxyJump loop in the SSH config?)`);
    let via: SshTarget | undefined;
    try {
      for (const h of hops) {
        const w = { host: h.host, port: h.port, user: h.user, defaultUser: localContext().localUser || 'root' };
        via = await SshTarget.open(cfg, w, { connectTimeoutMs: o.connectTimeoutMs }, `jump host ${h.host}`, depth + 1, via);
      }
    } catch (e) {
      via?.close();
      throw e;
    }
    return via!;
  }

  private static async open(cfg: SshConfigFile | null, w: Parameters<typeof resolveSsh>[1], o: Pick<SshOptions, 'acceptNewHostKey' | 'hostKeyFingerprint' | 'connectTimeoutMs'>, label: string, depth: number, through?: SshTarget): Promise<SshTarget> {
    const r = resolveSsh(cfg, w);
    const { host, port, user } = r;
    const file = r.knownHostsFile ?? path.join(homedir(), '.ssh', 'known_hosts');
    const entries = existsSync(file) ? parseKnownHosts(await readFile(file, 'utf8')) : [];
    const name = knownHostsName(host, port);
    const creds = await loadIdentities(r.identities, r.identitiesOnly, label);

    // Offer only the key types already known for this host, so a host that also has (say) an RSA
    // key is judged by the key we recorded, not by whichever type the negotiation picks.
    const knownTypes = [...new Set(entries.filter((e) => !e.marker && entryMatches(e.patterns, name)).map((e) => e.keyType))];
    const hostKeyAlgs = knownTypes.flatMap((t) => (t === 'ssh-rsa' ? ['rsa-sha2-512', 'rsa-sha2-256', 'ssh-rsa'] : [t]));

    let verdict: HostKeyVerdict | undefined;
    let blobSeen: Buffer | undefined;
    const auth: unknown[] = creds.keys.map((key) => ({ type: 'publickey', username: user, key }));
    if (creds.agent) auth.unshift({ type: 'agent', username: user, agent: creds.agent });

    const via = through ?? (r.proxyJump.length ? await SshTarget.openJumps(cfg, r.proxyJump, o, depth) : undefined);
    const ssh = new NodeSSH();
    try {
      const sock = via ? await via.forward(host, port) : undefined;
      await ssh.connect({
        ...(sock ? { sock } : { host }),
        port,
        username: user,
        readyTimeout: o.connectTimeoutMs ?? 20_000,
        keepaliveInterval: 5_000,
        keepaliveCountMax: 3,
        ...(hostKeyAlgs.length ? { algorithms: { serverHostKey: hostKeyAlgs as never } } : {}),
        hostVerifier: (key: Buffer) => {
          blobSeen = key;
          verdict = judgeHostKey(entries, name, key, { file, label, acceptNew: o.acceptNewHostKey, fingerprint: o.hostKeyFingerprint });
          return verdict.ok;
        },
        authHandler: auth as never,
      } as never);
    } catch (e) {
      ssh.dispose();
      via?.close();
      if (verdict && !verdict.ok) throw verdict.error;
      if (e instanceof UserError || e instanceof Failure) throw e;
      const msg = e instanceof Error ? e.message : String(e);
      const at = `${user}@${host}:${port}${via ? ` (through ${via.label})` : ''}`;
      if (/authentication methods failed/i.test(msg)) {
        throw new Failure(`${label}: ${at} refused every offered key (${creds.keys.length} key file(s)${creds.agent ? ' and the agent' : ''})`);
      }
      if (/no matching host key/i.test(msg)) {
        throw new UserError(`${label}: offers none of the host key types recorded for it in ${file} (${knownTypes.join(', ')}): its keys changed; refusing to connect`);
      }
      throw new Failure(`${label}: cannot connect to ${at}: ${msg}`, [], { cause: e });
    }
    if (verdict?.ok && verdict.record && blobSeen) {
      await mkdir(path.dirname(file), { recursive: true, mode: 0o700 });
      await appendFile(file, `${name} ${blobKeyType(blobSeen)} ${blobSeen.toString('base64')}\n`, { mode: 0o600 });
    }
    const t = new SshTarget(ssh, host, port, user, via);
    (t as { label: string }).label = label;
    // An error after the handshake (keepalive timeout, reset) ends the connection: pending commands
    // learn it from 'close'. Unlistened, it would crash the whole process (every host of a fleet).
    ssh.connection?.on('error', (e: Error) => {
      t.lastError = e.message;
    });
    // The jump connection lives as long as the connection it carries.
    ssh.connection?.on('close', () => via?.close());
    return t;
  }

  /** A direct-tcpip channel from this host to host:port (what ProxyJump rides on). */
  private forward(host: string, port: number): Promise<ssh2.ClientChannel> {
    this.roundTrips++;
    const client = this.client;
    return new Promise((resolve, reject) =>
      client.forwardOut('127.0.0.1', 0, host, port, (err, ch) => (err ? reject(new Failure(`${this.label}: cannot reach ${host}:${port} from there: ${err.message}`)) : resolve(ch))),
    );
  }

  private get client(): ssh2.Client {
    const c = this.ssh.connection;
    if (!c) throw new Failure(`${this.label}: the SSH connection is closed`);
    return c;
  }

  /** Run a shell command line on the host (one channel). */
  exec(command: string, o: ExecOptions = {}): Promise<ExecResult> {
    this.roundTrips++;
    return new Promise((resolve, reject) => {
      const client = this.client;
      let settled = false;
      const onClose = (): void => {
        if (!settled) {
          settled = true;
          reject(new Failure(`${this.label}: connection lost${this.lastError ? ` (${this.lastError})` : ''}`));
        }
      };
      client.once('close', onClose);
      client.exec(command, (err, ch) => {
        if (err) {
          client.removeListener('close', onClose);
          settled = true;
          reject(new Failure(`${this.label}: cannot start a command: ${err.message}`));
          return;
        }
        const out: Buffer[] = [];
        const errb: Buffer[] = [];
        let code: number | null = null;
        let signal: string | null = null;
        ch.on('data', (d: Buffer) => {
          out.push(d);
          o.onStdout?.(d);
        });
        ch.stderr.on('data', (d: Buffer) => {
          errb.push(d);
          o.onStderr?.(d);
        });
        ch.on('exit', (c: number | null, s?: string) => {
          code = c ?? null;
          signal = s ?? null;
        });
        ch.on('close', () => {
          client.removeListener('close', onClose);
          if (settled) return;
          settled = true;
          resolve({ code, signal, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(errb).toString('utf8') });
        });
        const input = o.stdin;
        if (input === undefined) ch.end();
        else if (typeof input === 'string' || Buffer.isBuffer(input)) ch.end(input);
        else input.pipe(ch);
      });
    });
  }

  /** The command prefix that gives root: nothing for root, `sudo -n --` otherwise. */
  sudoArgv(): string[] {
    return this.isRoot ? [] : ['sudo', '-n', '--'];
  }

  /** Run argv as root (quoted by shq); a sudo that wants a password becomes a clear UserError. */
  async runAsRoot(argv: string[], o: ExecOptions = {}): Promise<ExecResult> {
    const r = await this.exec(shJoin([...this.sudoArgv(), ...argv]), o);
    assertSudoWorked(this, r);
    return r;
  }

  /** One HTTP GET to a port on the host's loopback, tunnelled through this connection. */
  async httpGet(port: number, urlPath: string, headers: Record<string, string> = {}, timeoutMs = 10_000, tls = false): Promise<{ status: number; body: string }> {
    this.roundTrips++;
    const client = this.client;
    const stream = await new Promise<ssh2.ClientChannel>((resolve, reject) => {
      client.forwardOut('127.0.0.1', 0, '127.0.0.1', port, (err, ch) => (err ? reject(new Failure(`${this.label}: cannot reach 127.0.0.1:${port} on the host: ${err.message}`)) : resolve(ch)));
    });
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          method: 'GET',
          path: urlPath,
          headers: { host: `127.0.0.1:${port}`, ...headers },
          // The panel's certificate is self-signed per device; the SSH host key already proved
          // which machine this is, and the bytes never leave the tunnel to its loopback.
          createConnection: () => (tls ? tlsConnect({ socket: stream as never, rejectUnauthorized: false }) : stream) as never,
          timeout: timeoutMs,
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (d: Buffer) => chunks.push(d));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks).toString('utf8') }));
          res.on('error', reject);
        },
      );
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', (e) => reject(new Failure(`${this.label}: HTTP GET 127.0.0.1:${port}${urlPath} through SSH: ${e.message}`)));
      req.end();
    });
  }

  /** Cut the connection without a goodbye (tests use this to interrupt an apply). */
  destroy(): void {
    this.ssh.connection?.destroy();
  }

  close(): void {
    this.ssh.dispose();
    this.via?.close();
  }
}

/** sudo -n prints this (and exits 1) when the user has no passwordless rule. */
export function assertSudoWorked(t: { label: string; user: string; isRoot: boolean }, r: ExecResult): void {
  if (t.isRoot || r.code !== 1) return;
  if (/sudo: (a password is required|a terminal is required)/.test(r.stderr)) {
    throw new UserError(`${t.label}: user ${t.user} needs a password for sudo; give it passwordless sudo (e.g. "${t.user} ALL=(ALL) NOPASSWD: ALL" in /etc/sudoers.d/) or connect as root`);
  }
  if (/is not in the sudoers file|not allowed to execute/.test(r.stderr)) {
    throw new UserError(`${t.label}: user ${t.user} may not use sudo; connect as root or a user with passwordless sudo`);
  }
}

/** Parse `[USER@]HOST` (IPv6 in brackets allowed). */
export function parseDestination(dest: string): { user?: string; host: string } {
  const at = dest.lastIndexOf('@');
  const user = at >= 0 ? dest.slice(0, at) : undefined;
  let host = at >= 0 ? dest.slice(at + 1) : dest;
  if (host.startsWith('[') && host.endsWith(']')) host = host.slice(1, -1);
  if (!host || /[\s/]/.test(host) || (user !== undefined && !/^[a-z_][a-z0-9_.-]*$/i.test(user))) {
    throw new UserError(`destination ${JSON.stringify(dest)} is not [USER@]HOST (e.g. pi@raspberrypi.local)`);
  }
  return { user, host };
}
