/**
 * One SSH connection (node-ssh on ssh2): connect with the user's SSH config, the known_hosts
 * policy and the chosen credentials, then run commands and open channels on it. It runs what it
 * is given as the login user; root is the SSH Target's business (ssh.ts).
 *
 * Every exec or forward opens one channel on the one connection: `roundTrips` counts them, which
 * is what the fleet report and the benchmark show per host.
 */
import { existsSync } from 'node:fs';
import { appendFile, mkdir, readFile } from 'node:fs/promises';
import http from 'node:http';
import { connect as tlsConnect } from 'node:tls';
import { homedir } from 'node:os';
import path from 'node:path';
import type { Readable } from 'node:stream';
import { NodeSSH } from 'node-ssh';
import type ssh2 from 'ssh2';
import { Failure, UserError } from '../util/errors.js';
import { hostKeyAlgorithms, judgeHostKey, knownHostsLine, knownHostsName, knownKeyTypes, parseKnownHosts, type HostKeyVerdict } from './known-hosts.js';
import { loadIdentities } from './ssh-credentials.js';
import { loadSshConfig, localContext, resolveSsh, type JumpHop, type LocalContext, type SshConfigFile, type SshResolved, type SshWanted } from './ssh-config.js';

/** Where to connect and how: what the command line (or an inventory) gave, before the SSH config. */
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

/** How to reach hosts, whichever host: the SSH flags of a command, without the destination. */
export type ConnectPolicy = Omit<SshOptions, 'host' | 'port' | 'user' | 'defaultUser' | 'label'>;

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

function wantedOf(o: SshOptions, ctx: LocalContext): SshWanted {
  return { host: o.host, port: o.port, user: o.user, defaultUser: o.defaultUser ?? (ctx.localUser || 'root'), identities: o.identities, knownHostsFile: o.knownHostsFile };
}

/**
 * The settings a connection with these options would use (final host; the hops of ProxyJump are
 * resolved by their own entries when connecting): the options, then the SSH config, then the
 * defaults. Reads the SSH config file only.
 */
export function resolveConnection(o: SshOptions, ctx: LocalContext = localContext()): SshResolved {
  return resolveSsh(loadSshConfig(o.sshConfigFile, ctx), wantedOf(o, ctx), ctx);
}

export class SshConnection {
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
    private readonly via?: SshConnection,
  ) {
    this.label = host;
  }

  get isRoot(): boolean {
    return this.user === 'root';
  }

  /** Connect, retrying a few times when the connection drops before the handshake completes. */
  static async connect(o: SshOptions): Promise<SshConnection> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await SshConnection.connectOnce(o);
      } catch (e) {
        // A host that is just booting, or a lossy link, can reset a handshake; key or auth problems are final.
        const transient = e instanceof Failure && /No response from server|ECONNRESET|socket hang up|handshake/i.test(e.message);
        if (!transient || attempt >= 3) throw e;
        await new Promise((r) => setTimeout(r, 500 * attempt));
      }
    }
  }

  private static async connectOnce(o: SshOptions): Promise<SshConnection> {
    const ctx = localContext();
    const cfg = loadSshConfig(o.sshConfigFile, ctx);
    return SshConnection.open(cfg, wantedOf(o, ctx), o, o.label ?? o.host, 0);
  }

  /**
   * Reach the hops of ProxyJump as ssh(1) does: the first by its own config entry (its own
   * ProxyJump included), each later one through the one before, then this host through the last,
   * each with its own host-key check. Command-line settings apply to the final host only.
   */
  private static async openJumps(cfg: SshConfigFile | null, hops: JumpHop[], o: Pick<SshOptions, 'connectTimeoutMs'>, depth: number): Promise<SshConnection> {
    if (depth >= 8) throw new UserError(`ProxyJump through ${hops.map((h) => h.host).join(',')}: more than 8 hops deep (a ProxyJump loop in the SSH config?)`);
    let via: SshConnection | undefined;
    try {
      for (const h of hops) {
        const w = { host: h.host, port: h.port, user: h.user, defaultUser: localContext().localUser || 'root' };
        via = await SshConnection.open(cfg, w, { connectTimeoutMs: o.connectTimeoutMs }, `jump host ${h.host}`, depth + 1, via);
      }
    } catch (e) {
      via?.close();
      throw e;
    }
    return via!;
  }

  private static async open(cfg: SshConfigFile | null, w: Parameters<typeof resolveSsh>[1], o: Pick<SshOptions, 'acceptNewHostKey' | 'hostKeyFingerprint' | 'connectTimeoutMs'>, label: string, depth: number, through?: SshConnection): Promise<SshConnection> {
    const r = resolveSsh(cfg, w);
    const { host, port, user } = r;
    const file = r.knownHostsFile ?? path.join(homedir(), '.ssh', 'known_hosts');
    const entries = existsSync(file) ? parseKnownHosts(await readFile(file, 'utf8')) : [];
    const name = knownHostsName(host, port);
    const creds = await loadIdentities(r.identities, r.identitiesOnly, label);
    const knownTypes = knownKeyTypes(entries, name);
    const hostKeyAlgs = hostKeyAlgorithms(knownTypes);

    let verdict: HostKeyVerdict | undefined;
    let blobSeen: Buffer | undefined;
    const auth: unknown[] = creds.keys.map((key) => ({ type: 'publickey', username: user, key }));
    if (creds.agent) auth.unshift({ type: 'agent', username: user, agent: creds.agent });

    const via = through ?? (r.proxyJump.length ? await SshConnection.openJumps(cfg, r.proxyJump, o, depth) : undefined);
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
      await appendFile(file, knownHostsLine(name, blobSeen), { mode: 0o600 });
    }
    const t = new SshConnection(ssh, host, port, user, via);
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

  /** A direct-tcpip channel from this host to host:port (what ProxyJump, tunnels and HTTP ride on). */
  forward(host: string, port: number): Promise<ssh2.ClientChannel> {
    this.roundTrips++;
    return new Promise((resolve, reject) =>
      this.client.forwardOut('127.0.0.1', 0, host, port, (err, ch) => (err ? reject(new Failure(`${this.label}: cannot reach ${host}:${port} from there: ${err.message}`)) : resolve(ch))),
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

  /** One HTTP GET to a port on the host's loopback, tunnelled through this connection. */
  async httpGet(port: number, urlPath: string, headers: Record<string, string> = {}, timeoutMs = 10_000, tls = false): Promise<{ status: number; body: string }> {
    const stream = await this.forward('127.0.0.1', port);
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

  /** Calls `fn` once when the connection ends, however it ends. */
  onClose(fn: () => void): void {
    const c = this.ssh.connection;
    if (!c) fn();
    else c.once('close', fn);
  }

  close(): void {
    this.ssh.dispose();
    this.via?.close();
  }
}
