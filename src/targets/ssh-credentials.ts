/**
 * What a connection offers to authenticate: key files and the agent, chosen as ssh(1) chooses
 * them. A key named on the command line must be usable; one named in the SSH config may be
 * missing or under a passphrase (then the agent usually holds it).
 */
import { existsSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { homedir } from 'node:os';
import path from 'node:path';
import ssh2 from 'ssh2';
import { UserError } from '../util/errors.js';
import type { SshResolved } from './ssh-config.js';

export interface Credentials {
  /** Private keys read from files, in the order to offer them. */
  keys: Buffer[];
  /** The agent socket to ask first, when the agent may be used. */
  agent?: string;
}

/** The keys to offer a host: named files (flag, then config) or ssh(1)'s default files, and the agent. */
export async function loadIdentities(files: SshResolved['identities'], identitiesOnly: boolean, label: string): Promise<Credentials> {
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
