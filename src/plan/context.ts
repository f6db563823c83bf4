/**
 * Values derived once from the Config and shared by all features and templates, so two features
 * never compute the same fact (the panel port, a folder's absolute path) in two ways.
 */
import { isIPv6 } from 'node:net';
import { DEFAULT_DRIVE_MOUNT, type Config } from '../config/schema.js';
import type { ResolvedInputs } from '../config/secrets.js';
import { isLoopbackHost, parseListen } from '../config/validators.js';
import { folderPath, hasUnixOwners, readonlyDir, readonlyFolderId, versionsDir } from '../config/drive-layout.js';
import { readInput, render, type TemplateSource } from './render.js';
import { syncthingVersioning, type SyncthingVersioning } from './versioning.js';
import { driveDeviceUnit } from './units.js';
import type { FeatureName, PlanCheck, PlanDir, PlanFile, PlanHandler, PlanUser } from './types.js';

export const SYNCTHING_HOME = '/var/lib/syncthing';
export const SYNCPI_LIB = '/usr/local/lib/syncpi';
/** The account rsync keys log into: unprivileged, no password, a member of UPLOAD_GROUP only. */
export const RSYNC_USER = 'syncpi-rsync';
/** Shared by Syncthing and RSYNC_USER; only folders with rsync keys carry it. */
export const UPLOAD_GROUP = 'syncpi-upload';

export interface DerivedFolder {
  id: string;
  label: string;
  path: string;
  type: string;
  rescan_interval: number;
  watch: boolean;
  device_ids: string[];
  versioning: SyncthingVersioning;
  /** Where this folder's versions go, made by syncthing-prepare (null: no versioning). */
  versions_dir: string | null;
  /** Syncthing ignores permission bits: a FAT-like drive, or a folder rsync keys write into. */
  ignore_perms: boolean;
  /** rsync keys write into it (its group is shared with the upload account). */
  upload: boolean;
}

export interface Derived {
  panelListen: string;
  panelHost: string;
  panelPort: number;
  panelLoopback: boolean;
  syncTcpPorts: number[];
  syncUdpPorts: number[];
  /** Every Syncthing folder on the appliance: the configured ones, then each read-only copy. */
  folders: DerivedFolder[];
  /** Each read-only copy: the folder it mirrors (source) into its send-only folder (target). */
  mirrors: { folder: string; id: string; source: string; target: string }[];
  /** access.rsync with each key's folder resolved to its absolute path. */
  rsyncKeys: { name: string; key: string; mode: 'read-only' | 'write-only' | 'read-write'; folderId: string; path: string }[];
  driveMount: string | null;
  /** Where every folder lives (the drive's mount, or DEFAULT_DRIVE_MOUNT): writable by the daemon. */
  storageRoot: string;
  /** access.web, when on: where it listens and who the firewall lets in (none when on loopback). */
  web: { listen: string; host: string; port: number; loopback: boolean; allowed: string[] } | null;
}

function portsOf(listen: string[], schemes: RegExp): number[] {
  const ports = new Set<number>();
  for (const l of listen) {
    const m = /^([a-z0-9]+):\/\/.*:(\d+)$/.exec(l);
    if (m && schemes.test(m[1]!)) ports.add(Number(m[2]));
  }
  return [...ports].sort((a, b) => a - b);
}

export function derive(config: Config): Derived {
  const tunnel = config.panel.tunnel_only;
  const listen = tunnel ? `127.0.0.1:${parseListen(config.panel.listen)!.port}` : config.panel.listen;
  const parsed = parseListen(listen)!;
  const driveMount = config.drive?.mount ?? null;
  const storageRoot = driveMount ?? DEFAULT_DRIVE_MOUNT;
  const byName = new Map(config.sync.devices.map((d) => [d.name, d.id]));
  const abs = (p: string) => folderPath(storageRoot, p);
  const rsyncKeys = config.access.rsync.map((k) => {
    const f = config.sync.folders.find((x) => x.id === k.folder) ?? config.sync.folders.find((x) => abs(x.path) === abs(k.folder))!;
    return { name: k.name, key: k.key, mode: k.mode, folderId: f.id, path: abs(f.path) };
  });
  const uploads = new Set(rsyncKeys.map((k) => k.folderId));
  const foreignFs = config.drive ? !hasUnixOwners(config.drive.fs) : false;
  const ids = (refs: string[]): string[] => [...new Set(refs.map((d) => byName.get(d) ?? d))].sort();
  const owned = config.sync.folders.map((f): DerivedFolder => {
    const v = f.versioning ?? config.sync.versioning;
    const dir = v.type === 'none' ? null : versionsDir(storageRoot, f.id);
    return {
      id: f.id,
      label: f.label ?? f.id,
      path: abs(f.path),
      type: f.type,
      rescan_interval: f.rescan_interval,
      watch: f.watch,
      device_ids: ids(f.devices),
      versioning: syncthingVersioning(v, dir ?? ''),
      versions_dir: dir,
      // A folder rsync writes into keeps Syncthing from copying the senders' permission bits onto
      // it: its files then stay group-readable for the upload account (see features/rsync.ts).
      ignore_perms: foreignFs || uploads.has(f.id),
      upload: uploads.has(f.id),
    };
  });
  // Send-only: the appliance never pulls what a reader changes, so nothing a reader sends is ever
  // written on the appliance; it is fed only by the hard-link mirror of its source.
  const shared = config.sync.folders.filter((f) => f.readers.length);
  const mirrors = shared.map((f) => ({ folder: f.id, id: readonlyFolderId(f.id), source: owned.find((o) => o.id === f.id)!.path, target: readonlyDir(storageRoot, f.id) }));
  const folders = [
    ...owned,
    ...shared.map((f, i): DerivedFolder => ({
      id: mirrors[i]!.id,
      label: `${f.label ?? f.id} (read-only)`,
      path: mirrors[i]!.target,
      type: 'sendonly',
      rescan_interval: f.rescan_interval,
      watch: true,
      device_ids: ids(f.readers),
      versioning: syncthingVersioning({ type: 'none' }, ''),
      versions_dir: null,
      ignore_perms: foreignFs,
      upload: false,
    })),
  ];
  return {
    panelListen: listen,
    panelHost: parsed.host,
    panelPort: parsed.port,
    panelLoopback: isLoopbackHost(parsed.host),
    syncTcpPorts: portsOf(config.sync.listen, /^tcp/),
    syncUdpPorts: portsOf(config.sync.listen, /^quic/),
    folders,
    mirrors,
    rsyncKeys,
    driveMount,
    storageRoot,
    web: webOf(config),
  };
}

function webOf(config: Config): Derived['web'] {
  const web = config.access.web;
  if (!web) return null;
  const { host, port } = parseListen(web.listen)!;
  const loopback = isLoopbackHost(host);
  return { listen: web.listen, host, port, loopback, allowed: loopback ? [] : (web.allowed_networks ?? config.panel.allowed_networks) };
}

export function splitFamilies(cidrs: string[]): { v4: string[]; v6: string[] } {
  const v4: string[] = [];
  const v6: string[] = [];
  for (const c of cidrs) (isIPv6(c.split('/')[0]!) ? v6 : v4).push(c);
  return { v4, v6 };
}

/** What a feature adds to the Plan; compile() merges contributions and rejects collisions. */
export interface Contribution {
  install?: string[];
  purge?: string[];
  /** authorizedKeys: the lines of the user's ~/.ssh/authorized_keys (none: it is left alone). */
  users?: (Omit<PlanUser, 'feature'> & { authorizedKeys?: string[] })[];
  dirs?: Omit<PlanDir, 'feature'>[];
  files?: Omit<PlanFile, 'feature'>[];
  enable?: string[];
  disable?: string[];
  mask?: string[];
  sysctls?: Record<string, string>;
  kernelParams?: Record<string, string>;
  handlers?: PlanHandler[];
  checks?: PlanCheck[];
  notes?: string[];
}

export interface FeatureContext {
  config: Config;
  inputs: ResolvedInputs;
  derived: Derived;
  /** The context every template sees (strict mode: templates may use only what is here). */
  vars: Record<string, unknown>;
  render(template: string, extra?: Record<string, unknown>): string;
  /** A plain input file (no template), found the same way as templates: e.g. a package profile. */
  read(name: string): string;
}

export type Feature = { name: FeatureName; contribute(ctx: FeatureContext): Contribution };

export function makeContext(config: Config, inputs: ResolvedInputs, templates: TemplateSource): FeatureContext {
  const derived = derive(config);
  const d = config.drive;
  const [layout, variant] = /^([a-z]+)(?:\(([^)]+)\))?$/.exec(config.system.keyboard)!.slice(1);
  const sshAllow = splitFamilies(config.hardening.ssh.allow_from);
  const panelAllow = splitFamilies(derived.panelLoopback ? [] : config.panel.allowed_networks);
  const webAllow = splitFamilies(derived.web?.allowed ?? []);
  const vars: Record<string, unknown> = {
    ...config,
    drive: d ?? null,
    drive_device_unit: d ? driveDeviceUnit(d) : null,
    folders: derived.folders,
    mirrors: derived.mirrors,
    sync_storage_root: derived.storageRoot,
    devices: config.sync.devices,
    panel_listen: derived.panelListen,
    panel_port: derived.panelPort,
    panel_loopback: derived.panelLoopback,
    panel_password_hash: inputs.panelPasswordHash,
    sync_tcp_ports: derived.syncTcpPorts,
    sync_udp_ports: derived.syncUdpPorts,
    keyboard_layout: layout,
    keyboard_variant: variant ?? '',
    ssh_any: config.hardening.ssh.allow_from.length === 0,
    ssh_allow_v4: sshAllow.v4.length ? sshAllow.v4 : null,
    ssh_allow_v6: sshAllow.v6.length ? sshAllow.v6 : null,
    panel_allow_v4: panelAllow.v4.length ? panelAllow.v4 : null,
    panel_allow_v6: panelAllow.v6.length ? panelAllow.v6 : null,
    web_port: derived.web?.port ?? null,
    web_allow_v4: webAllow.v4.length ? webAllow.v4 : null,
    web_allow_v6: webAllow.v6.length ? webAllow.v6 : null,
    ssh_allow_users: [config.system.user.name, ...(derived.rsyncKeys.length ? [RSYNC_USER] : [])].join(' '),
    rsync_user: derived.rsyncKeys.length ? RSYNC_USER : null,
    upload_group: UPLOAD_GROUP,
  };
  return {
    config,
    inputs,
    derived,
    vars,
    render: (template, extra) => render(templates, template, extra ? { ...vars, ...extra } : vars),
    read: (name) => readInput(templates, name),
  };
}
