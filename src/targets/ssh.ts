/**
 * The SSH Target: a live host, reached over one SSH connection, where scripts run as root. A
 * login other than root goes through `sudo -n`, here and nowhere else, so a host that wants a
 * sudo password fails at once with a clear message instead of hanging on a prompt.
 */
import { UserError } from '../util/errors.js';
import { shJoin } from '../util/shell.js';
import type { SshConnection } from './ssh-connection.js';
import { lineSplitter, type RunScriptOptions, type ScriptResult, type Target } from './target.js';

/** sudo -n prints this (and exits 1) when the user has no passwordless rule. */
function assertSudoWorked(c: SshConnection, r: { code: number | null; stderr: string }): void {
  if (c.isRoot || r.code !== 1) return;
  if (/sudo: (a password is required|a terminal is required)/.test(r.stderr)) {
    throw new UserError(`${c.label}: user ${c.user} needs a password for sudo; give it passwordless sudo (e.g. "${c.user} ALL=(ALL) NOPASSWD: ALL" in /etc/sudoers.d/) or connect as root`);
  }
  if (/is not in the sudoers file|not allowed to execute/.test(r.stderr)) {
    throw new UserError(`${c.label}: user ${c.user} may not use sudo; connect as root or a user with passwordless sudo`);
  }
}

export class SshTarget implements Target {
  readonly env = 'live' as const;
  readonly name: string;
  constructor(readonly connection: SshConnection) {
    this.name = `${connection.user}@${connection.host}:${connection.port}`;
  }

  /** The script runs as root in one channel; a sudo that wants a password becomes a UserError. */
  async runScript(script: string, o: RunScriptOptions = {}): Promise<ScriptResult> {
    const c = this.connection;
    const split = o.onLine ? lineSplitter(o.onLine) : undefined;
    // The trailing word is the script's $0: what `ps` shows for it on the host.
    const argv = [...(c.isRoot ? [] : ['sudo', '-n', '--']), 'sh', '-c', script, 'syncpi'];
    const r = await c.exec(shJoin(argv), { ...(o.stdin ? { stdin: o.stdin } : {}), ...(split ? { onStdout: (d: Buffer) => split.push(d) } : {}) });
    split?.end();
    assertSudoWorked(c, r);
    return { exitCode: r.code, signal: r.signal, stdout: r.stdout, stderr: r.stderr };
  }
}
