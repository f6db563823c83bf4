/**
 * The Plan's checks against a running appliance reached over SSH. The on-host checks run in one
 * go through the converger's verify.sh (the same script a rootfs verify uses); the checks that
 * must be judged from outside — the panel over HTTP(S), SSH password logins — run from here.
 */
import net from 'node:net';
import tls from 'node:tls';
import http from 'node:http';
import type { Duplex } from 'node:stream';
import ssh2 from 'ssh2';
import type { Plan, PlanCheck } from '../plan/types.js';
import { archiveOf, verifyBundle, type CheckOutcome } from '../targets/apply.js';
import type { SshConnection } from '../targets/ssh-connection.js';
import type { SshTarget } from '../targets/ssh.js';

export type { CheckOutcome };

/** How to open a TCP stream to HOST:PORT as the appliance sees it (through SSH, or a forwarded port). */
export type Connector = (host: string, port: number) => Promise<Duplex>;

/** Through the connection the checks run on: one login, one known_hosts decision. */
export function sshConnector(c: SshConnection): Connector {
  return (host, port) => c.forward(host, port);
}

export interface HttpAnswer {
  status: number;
  location?: string;
  setCookies: string[];
}

/** One GET over a stream the connector opens; TLS without certificate checks (per-device self-signed). */
export async function httpGetVia(
  connect: Connector,
  url: string,
  auth?: { user: string; password: string },
  extraHeaders: Record<string, string> = {},
  timeoutMs = 15_000,
): Promise<HttpAnswer> {
  const u = new URL(url);
  const port = Number(u.port || (u.protocol === 'https:' ? 443 : 80));
  const raw = await connect(u.hostname, port);
  const stream: Duplex = u.protocol === 'https:' ? tls.connect({ socket: raw as net.Socket, rejectUnauthorized: false, servername: undefined }) : raw;
  const headers: Record<string, string> = { host: u.host, connection: 'close', ...extraHeaders };
  if (auth) headers.authorization = `Basic ${Buffer.from(`${auth.user}:${auth.password}`).toString('base64')}`;
  return new Promise((res, rej) => {
    const req = http.request({ method: 'GET', path: `${u.pathname}${u.search}`, headers, createConnection: () => stream as net.Socket, timeout: timeoutMs }, (r) => {
      r.resume();
      r.on('end', () => res({ status: r.statusCode ?? 0, ...(r.headers.location ? { location: r.headers.location } : {}), setCookies: r.headers['set-cookie'] ?? [] }));
      r.on('error', rej);
    });
    req.on('timeout', () => req.destroy(new Error(`no answer within ${timeoutMs / 1000} s`)));
    req.on('error', rej);
    req.end();
  }).finally(() => stream.destroy()) as Promise<HttpAnswer>;
}

/**
 * The authentication methods an SSH server still offers after the "none" probe. This is what a
 * client sees before trying anything, so "password" missing from it means no password is ever
 * asked for, whatever the password.
 */
export async function sshAuthMethods(host: string, port: number, user: string, timeoutMs = 20_000): Promise<string[]> {
  return new Promise((res, rej) => {
    const c = new ssh2.Client();
    let methods: string[] | undefined;
    const timer = setTimeout(() => {
      c.end();
      rej(new Error(`no SSH answer from ${host}:${port} within ${timeoutMs / 1000} s`));
    }, timeoutMs);
    const finish = (): void => {
      clearTimeout(timer);
      c.end();
      if (methods) res(methods);
      else rej(new Error('the server did not list its authentication methods'));
    };
    c.on('error', finish);
    c.on('close', finish);
    c.connect({
      host,
      port,
      username: user,
      readyTimeout: timeoutMs,
      // host keys do not matter for this probe: nothing is authenticated or sent
      hostVerifier: () => true,
      authHandler: ((left: string[] | null, _partial: boolean, next: (m: unknown) => void) => {
        if (left === null) return next({ type: 'none', username: user });
        methods = left;
        return next(false);
      }) as never,
    });
  });
}

export interface LiveCheckOptions {
  /** How the HTTP checks reach the panel; default: through the SSH connection. */
  connect?: Connector;
  /** Where the SSH server is reachable from here, for the password probe. */
  sshHost: string;
  sshPort: number;
  user: string;
  /** Panel credentials for checks with credential "panel"; null when unknown. */
  panel: { user: string; password: string } | null;
}

/**
 * Syncthing's GUI refuses every /rest/ call without its CSRF token (403, whatever the credentials),
 * as a browser would get it: from a cookie set on the first page load, echoed back as a header.
 * Fetching it first makes a REST URL answer by credentials alone (403 without, 200 with).
 */
async function csrfHeaders(connect: Connector, url: string, auth?: { user: string; password: string }): Promise<Record<string, string>> {
  const u = new URL(url);
  if (!u.pathname.startsWith('/rest/')) return {};
  // Older Syncthing (basic auth) sets the cookie only for a logged-in page load; newer serves a
  // login page with the cookie to anyone.
  const first = await httpGetVia(connect, `${u.origin}/`, auth);
  for (const c of first.setCookies) {
    const m = /^(CSRF-Token-[A-Za-z0-9]+)=([^;]+)/.exec(c);
    if (m) return { cookie: `${m[1]}=${m[2]}`, [`x-${m[1]!.toLowerCase()}`]: m[2]! };
  }
  return {};
}

async function remoteCheck(check: PlanCheck, o: LiveCheckOptions & { connect: Connector }): Promise<Pick<CheckOutcome, 'status' | 'detail'>> {
  if (check.kind === 'ssh-password-refused') {
    const methods = await sshAuthMethods(o.sshHost, o.sshPort, o.user);
    const offered = methods.filter((m) => m === 'password' || m === 'keyboard-interactive');
    return offered.length
      ? { status: 'fail', detail: `server offers ${offered.join(', ')} (methods: ${methods.join(', ')})` }
      : { status: 'pass', detail: `server offers only ${methods.join(', ') || 'nothing'}` };
  }
  if (check.kind === 'http') {
    const csrf = await csrfHeaders(o.connect, check.url);
    const a = await httpGetVia(o.connect, check.url, undefined, csrf);
    const parts = [`${check.url} → ${a.status}${a.location ? ` (Location: ${a.location})` : ''} without credentials`];
    const refused = ([] as number[]).concat(check.expectUnauthenticated);
    let ok = refused.includes(a.status);
    // a redirect must lead to HTTPS, otherwise it could downgrade the login
    if (ok && a.status >= 300 && a.status < 400 && !check.tls && !(a.location ?? '').startsWith('https:')) ok = false;
    if (check.expectAuthenticated !== undefined) {
      if (!o.panel) {
        ok = false;
        parts.push('no panel password known to try (secrets file)');
      } else {
        const b = await httpGetVia(o.connect, check.url, o.panel, await csrfHeaders(o.connect, check.url, o.panel));
        parts.push(`${b.status} with credentials`);
        if (b.status !== check.expectAuthenticated) ok = false;
      }
    }
    return { status: ok ? 'pass' : 'fail', detail: `${parts.join(', ')} (expected ${refused.join(' or ')}${check.expectAuthenticated !== undefined ? `/${check.expectAuthenticated}` : ''})` };
  }
  return { status: 'skip', detail: `no remote runner for ${check.kind}` };
}

/** Every check of the Plan against the live host: on-host ones in one run, the rest from here. */
export async function verifyLive(t: SshTarget, plan: Plan, o: LiveCheckOptions): Promise<CheckOutcome[]> {
  const outcomes = await verifyBundle(t, await archiveOf(plan), plan);
  const connect = o.connect ?? sshConnector(t.connection);
  for (const out of outcomes) {
    if (out.status !== 'remote') continue;
    try {
      Object.assign(out, await remoteCheck(out.check, { ...o, connect }));
    } catch (e) {
      out.status = 'fail';
      out.detail = e instanceof Error ? e.message : String(e);
    }
  }
  return outcomes;
}
