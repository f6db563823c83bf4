/**
 * access.web in appliance.yaml (its shape is in schema.ts): chosen sync folders in a browser and
 * over WebDAV, off unless the section is there. One server for all of them (one address, one set
 * of users, one mode), each folder under its ID. These are the rules that need the rest of the
 * config; the port is claimed with the others in the config's final refine.
 */
import type { WebAccessConfig } from './schema.js';
import * as v from './validators.js';

/** Where a share listens when the config gives only its folders. */
export const DEFAULT_WEB_LISTEN = '0.0.0.0:8443';

export interface WebIssue {
  path: PropertyKey[];
  message: string;
  input: unknown;
}

/** What the rest of the config must say for this share to be served (paths relative to access.web). */
export function checkWebAccess(web: WebAccessConfig, c: { folderIds: string[]; firewallOff: boolean }): WebIssue[] {
  const issues: WebIssue[] = [];
  const seen = new Set<string>();
  web.folders.forEach((id, i) => {
    if (!c.folderIds.includes(id)) {
      const hint = v.didYouMean(id, c.folderIds);
      issues.push({ path: ['folders', i], message: `expected the ID of a folder in sync.folders${hint ? ` (did you mean "${hint}"?)` : c.folderIds.length ? ` (one of: ${c.folderIds.join(', ')})` : ' (none are listed)'}`, input: id });
    } else if (id === '.' || id === '..') {
      // The ID names the folder's directory in the served tree: "." or ".." would be another one.
      issues.push({ path: ['folders', i], message: 'expected a folder ID other than "." or "..", which cannot name a directory', input: id });
    } else if (seen.has(id)) {
      issues.push({ path: ['folders', i], message: `expected each folder once; "${id}" is listed twice`, input: id });
    }
    seen.add(id);
  });
  const names = new Set<string>();
  (web.users ?? []).forEach((u, i) => {
    if (names.has(u.name)) issues.push({ path: ['users', i, 'name'], message: `expected a unique user name; "${u.name}" is listed twice`, input: u.name });
    names.add(u.name);
  });
  if (c.firewallOff && web.allowed_networks?.length) {
    issues.push({ path: ['allowed_networks'], message: 'expected no access.web.allowed_networks with hardening.firewall: off (no firewall would enforce it); set hardening.firewall: deny, or remove access.web.allowed_networks', input: web.allowed_networks });
  }
  return issues;
}
