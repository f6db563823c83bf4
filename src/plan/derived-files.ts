/**
 * Files the compiler derives from what several features contribute rather than from one
 * feature's template: each user's authorized_keys (from the keys a feature gives its user) and
 * the one sysctl drop-in (from every feature's sysctls). They are Plan files like any other, so
 * `syncpi plan` shows them and the bundle only encodes them.
 */
import { hasControlChars } from '../config/validators.js';
import type { FeatureName, PlanDir, PlanFile, PlanHandler } from './types.js';

/** Where the Plan's sysctls persist on the target; set live by the SYSCTL_HANDLER. */
export const SYSCTL_DROPIN = '/etc/sysctl.d/90-syncpi.conf';
export const SYSCTL_HANDLER = 'syncpi-sysctl';

export function sshDirOf(home: string): string {
  return home === '/' ? '/.ssh' : `${home}/.ssh`;
}

export function authorizedKeysPath(home: string): string {
  return `${sshDirOf(home)}/authorized_keys`;
}

/**
 * A user's ~/.ssh (0700) and authorized_keys (0600), both the user's and in its primary group
 * ("-": resolved on the target). No keys: nothing, and an existing file is left alone.
 */
export function authorizedKeysItems(user: { name: string; home: string }, keys: readonly string[], feature: FeatureName): { dirs: PlanDir[]; files: PlanFile[] } {
  if (keys.length === 0) return { dirs: [], files: [] };
  const lines = keys.map((k, i) => {
    const line = k.trim();
    // The config refuses these; one here would turn a key into two lines of authorized_keys.
    if (line === '' || hasControlChars(line)) throw new Error(`internal: SSH key ${i} of ${user.name} is empty or holds a control character`);
    return line;
  });
  const dir = sshDirOf(user.home);
  return {
    dirs: [{ path: dir, mode: '0700', owner: user.name, group: '-', feature }],
    files: [{ path: authorizedKeysPath(user.home), mode: '0600', owner: user.name, group: '-', content: `${lines.join('\n')}\n`, notify: [], feature }],
  };
}

/** The drop-in that makes the sysctls last across boots, and the handler that sets them now. */
export function sysctlItems(sysctls: Readonly<Record<string, string>>, feature: FeatureName): { files: PlanFile[]; handlers: PlanHandler[] } {
  const keys = Object.keys(sysctls).sort();
  if (keys.length === 0) return { files: [], handlers: [] };
  const body = keys.map((k) => `${k} = ${sysctls[k]!}`).join('\n');
  return {
    files: [{ path: SYSCTL_DROPIN, mode: '0644', owner: 'root', group: 'root', content: `# Written by syncpi; changes are overwritten on the next apply.\n${body}\n`, notify: [SYSCTL_HANDLER], feature }],
    handlers: [{ name: SYSCTL_HANDLER, action: 'sysctl', liveOnly: true }],
  };
}
