/**
 * The user's OpenSSH client config (~/.ssh/config, or `-F FILE`), read the way ssh(1) reads it:
 * the first value obtained for a keyword wins, Host blocks are matched against the name as typed
 * (aliases, `*`/`?` patterns, `!` negation), command-line values beat the config and the config
 * beats the built-in defaults. Parsing and Host/Match matching are the `ssh-config` package's;
 * this module turns its result into connection settings. Pure apart from reading the file.
 *
 * Honoured: HostName, Port, User, IdentityFile, IdentitiesOnly, UserKnownHostsFile, ProxyJump.
 * Refused with an error naming the line, because ssh(1) would act on them and we cannot do so
 * faithfully: `Include`, and `Match` criteria other than all/host/originalhost/user/localuser
 * (`Match exec` would run a command, `canonical`/`final` depend on canonicalisation); and a
 * ProxyCommand for the host (named by file and Host), which a direct connection would bypass.
 */
import { existsSync, readFileSync } from 'node:fs';
import { homedir, hostname, userInfo } from 'node:os';
import path from 'node:path';
import SSHConfig from 'ssh-config';
import { UserError } from '../util/errors.js';

export interface SshConfigFile {
  file: string;
  config: SSHConfig;
}

/** One hop of ProxyJump: `[user@]host[:port]`. */
export interface JumpHop {
  user?: string;
  host: string;
  port?: number;
}

export interface LocalContext {
  home: string;
  localUser: string;
  localHost: string;
}

/** What was asked for: the name as typed and whatever the command line gave. */
export interface SshWanted {
  host: string;
  port?: number;
  user?: string;
  /** Login when neither the command line nor the config names one. */
  defaultUser: string;
  identities?: string[];
  knownHostsFile?: string;
  /** A ProxyJump given for this connection (an outer hop list): beats the config's. */
  proxyJump?: JumpHop[];
}

export interface SshResolved {
  /** Address to connect to (HostName, else the name as typed). */
  host: string;
  port: number;
  user: string;
  /** Key files, command-line ones first; a missing config one is skipped as ssh(1) does. */
  identities: { file: string; from: 'flag' | 'config' }[];
  identitiesOnly: boolean;
  knownHostsFile?: string;
  /** Hops to go through, first one first; empty for a direct connection. */
  proxyJump: JumpHop[];
}

export function localContext(): LocalContext {
  let user = process.env.USER ?? '';
  try {
    user = userInfo().username;
  } catch {
    /* no passwd entry: keep $USER */
  }
  return { home: homedir(), localUser: user, localHost: hostname() };
}

/**
 * Load the config: `null` means none (`-F none`); undefined means ~/.ssh/config when it exists.
 * A file given explicitly must exist.
 */
export function loadSshConfig(file: string | null | undefined, ctx: LocalContext = localContext()): SshConfigFile | null {
  if (file === null) return null;
  const f = file ?? path.join(ctx.home, '.ssh', 'config');
  if (!existsSync(f)) {
    if (file === undefined) return null;
    throw new UserError(`--ssh-config ${f}: no such file (give an OpenSSH client config, or "none" to use none)`);
  }
  return parseSshConfig(readFileSync(f, 'utf8'), f);
}

const MATCH_CRITERIA = new Set(['all', 'host', 'originalhost', 'user', 'localuser']);

export function parseSshConfig(text: string, file: string): SshConfigFile {
  text.split(/\r?\n/).forEach((raw, i) => {
    const m = /^\s*(\w+)(?:\s*=\s*|\s+)(.*)$/.exec(raw);
    if (!m) return;
    const key = m[1]!.toLowerCase();
    if (key === 'include') {
      throw new UserError(`${file}:${i + 1}: Include is not supported; put the included entries in one file and pass it with --ssh-config FILE, or --ssh-config none`);
    }
    if (key === 'match') {
      const words = m[2]!.trim().split(/\s+/);
      for (let w = 0; w < words.length; w++) {
        const crit = words[w]!.replace(/^!/, '').toLowerCase();
        if (!MATCH_CRITERIA.has(crit)) {
          throw new UserError(`${file}:${i + 1}: Match ${crit} is not supported (supported: ${[...MATCH_CRITERIA].join(', ')}); pass another file with --ssh-config FILE, or --ssh-config none`);
        }
        if (crit !== 'all') w++; // skip the criterion's argument
      }
    }
  });
  let config: SSHConfig;
  try {
    config = SSHConfig.parse(text);
  } catch (e) {
    throw new UserError(`${file}: not a readable OpenSSH client config: ${(e as Error).message}`);
  }
  return { file, config };
}

/** `[user@]host[:port]` (IPv6 in brackets), comma-separated; `none` gives no hops. */
export function parseProxyJump(v: string, where: string): JumpHop[] {
  if (v.trim().toLowerCase() === 'none') return [];
  return v.split(',').map((part) => {
    const s = part.trim().replace(/^ssh:\/\//, '');
    const m = /^(?:([^@\s]+)@)?(\[[^\]]+\]|[^:@\s[\]]+)(?::(\d+))?$/.exec(s);
    if (!m) throw new UserError(`${where}: ProxyJump "${part.trim()}" is not [USER@]HOST[:PORT] (e.g. admin@bastion.example:2222)`);
    const host = m[2]!.replace(/^\[(.*)\]$/, '$1');
    const hop: JumpHop = { host };
    if (m[1]) hop.user = m[1];
    if (m[3]) hop.port = portOf(m[3], `${where}: ProxyJump ${part.trim()}`);
    return hop;
  });
}

function portOf(v: string, where: string): number {
  const n = Number(v);
  if (!/^\d+$/.test(v) || n < 1 || n > 65535) throw new UserError(`${where}: port "${v}" is not a whole number from 1 to 65535`);
  return n;
}

/** Expand `~` and the `%` tokens ssh(1) offers in IdentityFile and UserKnownHostsFile. */
export function expandPath(v: string, t: Record<string, string>, where: string): string {
  const expanded = v.replace(/%(.)/g, (all, c: string) => {
    if (c === '%') return '%';
    const r = t[c];
    if (r === undefined) throw new UserError(`${where}: token %${c} is not supported (supported: %%, ${Object.keys(t).map((k) => `%${k}`).join(', ')})`);
    return r;
  });
  if (expanded === '~') return t.d!;
  if (expanded.startsWith('~/')) return path.join(t.d!, expanded.slice(2));
  return expanded;
}

const first = (v: string | string[] | undefined): string | undefined => (Array.isArray(v) ? v[0] : v);
const list = (v: string | string[] | undefined): string[] => (v === undefined ? [] : Array.isArray(v) ? v : [v]);

/** Settings for one connection: command line, then the config's first values, then defaults. */
export function resolveSsh(cfg: SshConfigFile | null, w: SshWanted, ctx: LocalContext = localContext()): SshResolved {
  // Match exec is refused at parse time; never let the library run it.
  // ssh(1) matches Host patterns against the name lowercased.
  const name = w.host.toLowerCase();
  const c = cfg ? cfg.config.compute(w.user !== undefined ? { Host: name, User: w.user } : { Host: name }, { ignoreCase: true, matchExec: false }) : {};
  const where = cfg ? `${cfg.file} (Host ${w.host})` : w.host;
  const hostNameRaw = first(c.hostname);
  const host = hostNameRaw ? hostNameRaw.replace(/%([%h])/g, (_, x: string) => (x === '%' ? '%' : w.host)) : w.host;
  const cfgPort = first(c.port);
  const port = w.port ?? (cfgPort !== undefined ? portOf(cfgPort, `${where}: Port`) : 22);
  // compute() reports the User given to it as the first value: the command line's wins.
  const user = w.user ?? first(c.user) ?? w.defaultUser;
  const tokens: Record<string, string> = { d: ctx.home, h: host, l: ctx.localHost, n: w.host, p: String(port), r: user, u: ctx.localUser };
  const identities = [
    ...(w.identities ?? []).map((file) => ({ file, from: 'flag' as const })),
    ...list(c.identityfile).map((f) => ({ file: expandPath(f, tokens, `${where}: IdentityFile ${f}`), from: 'config' as const })),
  ];
  const io = first(c.identitiesonly)?.toLowerCase();
  const kh = first(c.userknownhostsfile);
  const knownHostsFile = w.knownHostsFile ?? (kh !== undefined ? expandPath(kh, tokens, `${where}: UserKnownHostsFile ${kh}`) : undefined);
  const pj = first(c.proxyjump);
  const pc = first(c.proxycommand);
  // Connecting directly instead of through the command would reach some other machine, or none.
  if (pc !== undefined && pc.trim().toLowerCase() !== 'none' && pj === undefined && !w.proxyJump) {
    throw new UserError(`${where}: ProxyCommand is not supported; reach the host with ProxyJump [USER@]HOST[:PORT] instead, or pass --ssh-config none`);
  }
  const proxyJump = w.proxyJump ?? (pj !== undefined ? parseProxyJump(pj, where) : []);
  return { host, port, user, identities, identitiesOnly: io === 'yes', ...(knownHostsFile !== undefined ? { knownHostsFile } : {}), proxyJump };
}
