/**
 * The SSH flags every host command shares, declared once and turned into connection settings
 * once: the commands hand the result to the connection, which applies the SSH config and the
 * defaults under it (targets/ssh-connection.ts).
 */
import type { Command } from 'commander';
import type { ConnectPolicy, SshOptions } from '../targets/ssh-connection.js';
import { UserError } from '../util/errors.js';
import { parsePositiveInt } from './args.js';

export interface SshCliOptions {
  identity?: string[];
  knownHosts?: string;
  acceptNewHostKey?: boolean;
  hostKeyFingerprint?: string;
  connectTimeout?: string;
  sshConfig?: string;
  /** `-p`, on the commands that take one destination. */
  port?: string;
}

/** The SSH flags shared by the host commands; `single`: one destination (a fingerprint can be given). */
export function addSshOptions(cmd: Command, single: boolean): Command {
  cmd
    .option('-i, --identity <file>', 'private key file (repeatable; default: ssh-agent and ~/.ssh/id_*)', (v: string, prev: string[] = []) => [...prev, v])
    .option('--known-hosts <file>', 'known_hosts file to check host keys against (default ~/.ssh/known_hosts)')
    .option('-F, --ssh-config <file>', 'OpenSSH client config for Host aliases, Port, User, IdentityFile, ProxyJump… (default ~/.ssh/config if present; "none" for none)')
    .option('--accept-new-host-key', 'trust and record the key of a host never seen before (a changed key is still refused)')
    .option('--connect-timeout <seconds>', 'give up connecting after this long', '20');
  if (single) cmd.option('--host-key-fingerprint <SHA256:...>', 'trust a new host whose key has this fingerprint');
  return cmd;
}

/** `--port`, when given: unset leaves the SSH config's Port (or 22) to apply. */
export function parsePort(v: string | undefined): number | undefined {
  return v === undefined ? undefined : parsePositiveInt('--port', v, 65535);
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

/** How to reach any host: the flags without a destination (fleet, status). */
export function connectPolicy(flags: SshCliOptions): ConnectPolicy {
  return {
    // `--ssh-config none`: no config at all; unset: ~/.ssh/config when present.
    sshConfigFile: flags.sshConfig === 'none' ? null : flags.sshConfig,
    identities: flags.identity,
    knownHostsFile: flags.knownHosts,
    acceptNewHostKey: !!flags.acceptNewHostKey,
    hostKeyFingerprint: flags.hostKeyFingerprint,
    connectTimeoutMs: parsePositiveInt('--connect-timeout', flags.connectTimeout ?? '20', 3600) * 1000,
  };
}

/** One destination `[USER@]HOST` and the flags; `defaultUser` logs in when neither names a user. */
export function sshOptions(dest: string, flags: SshCliOptions, defaultUser: string): SshOptions {
  const { user, host } = parseDestination(dest);
  return { host, port: parsePort(flags.port), user, defaultUser, ...connectPolicy(flags) };
}
