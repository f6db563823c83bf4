/**
 * Secrets: the panel password, the Syncthing API key, Wi-Fi passphrases and TLS keys.
 * Generated ones live in a local YAML file (mode 0600, beside the config by default) keyed by
 * hostname, and are reused so a rebuild never rotates them by accident. A generated password is
 * shown once, on the terminal only (stderr when it is one): never on stdout or in a log, where
 * --json output and CI runs end up; the messages returned name the secrets file instead.
 * bcrypt salts are random, so a stored hash is reused while it still matches the password: that
 * keeps plans deterministic.
 */
import { randomBytes } from 'node:crypto';
import { closeSync, existsSync, fsyncSync, openSync, readFileSync, renameSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import bcrypt from 'bcryptjs';
import { parse, stringify } from 'yaml';
import { UserError } from '../util/errors.js';
import type { Config } from './schema.js';
import { checkWifiPsk } from './validators.js';

export interface HostSecrets {
  /** Written by syncpi before 0.2; the API key is now each appliance's own (made on the Pi). */
  api_key?: string;
  /** Only present when syncpi generated the password: the user has no other copy. */
  panel_password?: string;
  panel_password_bcrypt: string;
}

interface SecretsFile {
  version: 1;
  hosts: Record<string, HostSecrets>;
}

export interface ResolvedInputs {
  panelPasswordHash: string;
  /** Plaintext, in memory only: used by verify to log in; never written into a Plan. */
  panelPassword: string | null;
  wifiPsks: (string | null)[];
  tls: { cert: string; key: string } | null;
  /** Messages to show once (e.g. that a password was generated, and where it is kept); never a secret. */
  announcements: string[];
  secretsFile: string;
}

/** A secret the config points at that is missing or malformed; `path` is its key in the config. */
export class SecretInputError extends UserError {
  readonly path: (string | number)[];
  readonly detail: string;
  constructor(path: (string | number)[], detail: string) {
    super(`${path.map((k, i) => (typeof k === 'number' ? `[${k}]` : i ? `.${k}` : k)).join('')}: ${detail}`);
    this.path = path;
    this.detail = detail;
  }
}

export function defaultSecretsPath(configFile: string): string {
  const base = basename(configFile).replace(/\.(ya?ml)$/i, '');
  return join(dirname(configFile), `${base}.secrets.yaml`);
}

function readSecretsFile(path: string): SecretsFile {
  if (!existsSync(path)) return { version: 1, hosts: {} };
  const st = statSync(path);
  if ((st.mode & 0o077) !== 0) {
    throw new UserError(`${path}: secrets file is readable by others (mode ${(st.mode & 0o777).toString(8)}); expected mode 0600 (chmod 600 ${path})`);
  }
  let data: unknown;
  try {
    data = parse(readFileSync(path, 'utf8'), { maxAliasCount: 10 });
  } catch (e) {
    throw new UserError(`${path}: not valid YAML (${(e as Error).message.split('\n')[0]}); expected a secrets file written by syncpi`);
  }
  const f = data as Partial<SecretsFile> | null;
  if (!f || typeof f !== 'object' || f.version !== 1 || typeof f.hosts !== 'object' || f.hosts === null) {
    throw new UserError(`${path}: not a syncpi secrets file; expected "version: 1" and "hosts:"`);
  }
  for (const [host, s] of Object.entries(f.hosts)) {
    if (!s || typeof s.panel_password_bcrypt !== 'string') {
      throw new UserError(`${path}: hosts.${host}: expected panel_password_bcrypt`);
    }
  }
  return f as SecretsFile;
}

function writeSecretsFile(path: string, data: SecretsFile): void {
  const tmp = `${path}.${process.pid}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, `# syncpi secrets: keep this file private (mode 0600) and out of version control.\n${stringify(data)}`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
}

function readSecretRef(ref: { env: string } | { file: string }, configDir: string, what: (string | number)[]): string {
  if ('env' in ref) {
    const value = process.env[ref.env];
    if (value === undefined || value === '') throw new SecretInputError(what, `environment variable ${ref.env} is not set; expected it to hold the secret`);
    return value;
  }
  const p = resolve(configDir, ref.file);
  let text: string;
  try {
    text = readFileSync(p, 'utf8');
  } catch (e) {
    throw new SecretInputError(what, `cannot read ${p} (${(e as NodeJS.ErrnoException).code ?? e}); expected a file holding the secret`);
  }
  return text.replace(/\r?\n$/, '');
}

/** A password a person can read aloud: 4 groups of 5 without look-alike characters. */
function randomPassword(): string {
  const alphabet = 'abcdefghijkmnpqrstuvwxyz23456789';
  const bytes = randomBytes(20);
  return Array.from(bytes, (b) => alphabet[b % alphabet.length]).join('').match(/.{5}/g)!.join('-');
}

export interface ResolveOptions {
  secretsFile?: string;
  /** Create missing secrets and store them (default true). False: fail if any is missing. */
  generate?: boolean;
  /**
   * Write nothing: secrets not generated yet become placeholders (syncpi plan). Only the
   * commands that install secrets (build, provision, fleet, image test, verify) create them.
   */
  preview?: boolean;
}

/** Stands in for a secret that a preview does not create (its text says who will). */
export const NOT_GENERATED = '(not generated yet: syncpi build, provision or fleet apply creates it)';

export function resolveInputs(config: Config, configFile: string, opts: ResolveOptions = {}): ResolvedInputs {
  const configDir = dirname(configFile);
  const secretsFile = opts.secretsFile ?? defaultSecretsPath(configFile);
  const file = readSecretsFile(secretsFile);
  const host = config.system.hostname;
  const existing = file.hosts[host];
  const announcements: string[] = [];
  let changed = false;

  const preview = opts.preview === true;
  if (!existing) changed = true;
  let generated: string | null = null;

  let panelPassword: string | null;
  let hash: string;
  const ref = config.panel.password;
  if (ref && 'bcrypt' in ref) {
    panelPassword = null;
    hash = ref.bcrypt;
  } else {
    if (ref) {
      panelPassword = readSecretRef(ref, configDir, ['panel', 'password']);
      if (panelPassword.length < 8) throw new SecretInputError(['panel', 'password'], 'the password is shorter than 8 characters; expected at least 8');
    } else if (existing?.panel_password) {
      panelPassword = existing.panel_password;
    } else if (preview) {
      panelPassword = null;
      announcements.push(`panel password for ${config.panel.user}@${host} not generated yet: syncpi build, provision or fleet apply generates it into ${secretsFile}`);
    } else {
      panelPassword = generated = randomPassword();
      announcements.push(`generated panel password for ${config.panel.user}@${host}, kept in ${secretsFile} (mode 0600)`);
    }
    const stored = existing?.panel_password_bcrypt;
    if (panelPassword === null) {
      hash = NOT_GENERATED;
    } else if (stored && bcrypt.compareSync(panelPassword, stored)) {
      hash = stored;
    } else {
      hash = bcrypt.hashSync(panelPassword, 10);
      changed = true;
    }
  }

  const next: HostSecrets = { panel_password_bcrypt: hash };
  if (!ref && panelPassword) next.panel_password = panelPassword;
  if (existing?.panel_password && !next.panel_password) changed = true;
  if (existing?.api_key) changed = true;

  const wifiPsks = (config.system.wifi?.networks ?? []).map((n, i) => {
    if (!n.psk) return null;
    const psk = readSecretRef(n.psk, configDir, ['system', 'wifi', 'networks', i, 'psk']);
    const problem = checkWifiPsk(psk);
    if (problem) throw new SecretInputError(['system', 'wifi', 'networks', i, 'psk'], `expected ${problem}`);
    return psk;
  });

  let tls: ResolvedInputs['tls'] = null;
  if (typeof config.panel.tls === 'object') {
    const cert = readSecretRef({ file: config.panel.tls.cert }, configDir, ['panel', 'tls', 'cert']);
    const key = readSecretRef({ file: config.panel.tls.key }, configDir, ['panel', 'tls', 'key']);
    if (!/-----BEGIN CERTIFICATE-----/.test(cert)) throw new SecretInputError(['panel', 'tls', 'cert'], `${config.panel.tls.cert} is not a PEM certificate; expected "-----BEGIN CERTIFICATE-----"`);
    if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(key)) throw new SecretInputError(['panel', 'tls', 'key'], `${config.panel.tls.key} is not a PEM private key; expected "-----BEGIN … PRIVATE KEY-----"`);
    tls = { cert: cert + '\n', key: key + '\n' };
  }

  if (changed && !preview) {
    if (opts.generate === false) throw new UserError(`secrets for ${host} are missing from ${secretsFile}; expected them there (run syncpi build or provision once to create them)`);
    file.hosts[host] = next;
    writeSecretsFile(secretsFile, file);
    if (generated && process.stderr.isTTY) process.stderr.write(`panel password for ${config.panel.user}@${host}: ${generated} (shown once; kept in ${secretsFile})\n`);
  }
  return { panelPasswordHash: hash, panelPassword, wifiPsks, tls, announcements, secretsFile };
}
