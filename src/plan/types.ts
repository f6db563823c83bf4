/**
 * The Plan: pure data computed from a validated Config and the templates.
 * Every target (image rootfs via chroot, live host via SSH, a fleet) consumes this and only this,
 * so anything a target needs to know must be expressed here, never re-derived from the Config.
 */

import type { ModelId } from '../hardware/models.js';

/** Name of the feature module that contributed an item; shown in `syncpi plan` and reports. */
export type FeatureName =
  | 'system'
  | 'packages'
  | 'sync'
  | 'readers'
  | 'panel'
  | 'drive'
  | 'services'
  | 'web'
  | 'hardening'
  | 'rsync'
  | 'health'
  | 'firstboot';

export interface PlanFile {
  /** Absolute path on the target, normalised, never containing `..`, tabs or newlines. */
  path: string;
  /** Octal permission string, e.g. "0644". */
  mode: string;
  owner: string;
  /** "-": the owner's primary group, resolved on the target (a login user's need not be named after it). */
  group: string;
  content: string;
  /** Content holds a secret (password hash, PSK, TLS key): redacted in output unless asked. */
  secret?: boolean;
  /** Handler names to notify when this file changes on the target. */
  notify: string[];
  /**
   * A command that must accept the new content before it replaces the old file (argv; the
   * element "%s" is the path of the new content), e.g. ["nft", "-c", "-f", "%s"].
   */
  validate?: string[];
  feature: FeatureName;
}

export interface PlanDir {
  path: string;
  mode: string;
  owner: string;
  /** "-": the owner's primary group, resolved on the target. */
  group: string;
  feature: FeatureName;
}

export interface PlanUser {
  name: string;
  /** System users get no password, no login shell and a fixed home. */
  system: boolean;
  home: string;
  shell: string;
  groups: string[];
  feature: FeatureName;
}

export interface PlanPackages {
  /** Packages the appliance needs; installed when absent. */
  install: string[];
  /** Packages to purge when present (already filtered against install, keep and protected). */
  purge: string[];
  /** Packages the user asked to keep; never purged even if a profile lists them. */
  keep: string[];
}

export interface PlanUnits {
  enable: string[];
  disable: string[];
  mask: string[];
}

/**
 * Run once, after all changes, when any file notifying it changed. Restarts, reloads,
 * daemon-reload and sysctl act on the running system only (nothing runs in a chroot); a command
 * says itself whether it does.
 */
export type PlanHandler =
  | { name: string; action: 'restart' | 'reload'; unit: string; liveOnly: true }
  | { name: string; action: 'daemon-reload'; liveOnly: true }
  /** Sets the Plan's sysctls on the running kernel. */
  | { name: string; action: 'sysctl'; liveOnly: true }
  | { name: string; action: 'command'; argv: [string, ...string[]]; liveOnly: boolean };

/** What must be true on the target afterwards; run by `syncpi verify` and the image test. */
export type PlanCheck =
  | { kind: 'service-active'; unit: string; description: string }
  | { kind: 'service-enabled'; unit: string; description: string }
  | { kind: 'file'; path: string; mode?: string; owner?: string; sha256?: string; description: string }
  | { kind: 'package-present'; name: string; description: string }
  | { kind: 'package-absent'; name: string; description: string }
  | { kind: 'mount'; path: string; description: string }
  | { kind: 'fstab'; path: string; spec: string; description: string }
  | { kind: 'sysctl'; key: string; value: string; description: string }
  | {
      kind: 'http';
      url: string;
      /** Expected status without credentials (any of them) and with them. */
      expectUnauthenticated: number | number[];
      expectAuthenticated?: number;
      /** Name of a secret in the secrets file holding the credential to try. */
      credential?: 'panel';
      tls: boolean;
      description: string;
    }
  | { kind: 'ssh-password-refused'; description: string }
  | { kind: 'command'; argv: string[]; expectExit: number; description: string; liveOnly: boolean };

export type PlanBase =
  | { kind: 'debian'; suite: string; arch: 'arm64' | 'armhf'; mirror?: string }
  /** A Raspberry Pi OS image: its path or URL and the SHA-256 it must have. */
  | { kind: 'image'; arch: 'arm64' | 'armhf'; source: string; sha256: string };

export interface Plan {
  /** Plan format version; bump when the converger contract changes. */
  format: 1;
  name: string;
  hostname: string;
  base: PlanBase;
  /** sha256 of the canonical Config (not of the YAML bytes): what the image manifest records. */
  configHash: string;
  packages: PlanPackages;
  users: PlanUser[];
  dirs: PlanDir[];
  /** Every file syncpi writes on the target, each user's authorized_keys and the sysctl drop-in among them: a bundle adds none. */
  files: PlanFile[];
  units: PlanUnits;
  /** Set live by the sysctl handler; they persist through their drop-in, one of the files. */
  sysctls: Record<string, string>;
  /**
   * Parameters syncpi owns on the kernel command line (cmdline.txt), name → value: set on the
   * target, removed again when they leave the plan; the rest of the line is never touched.
   */
  kernelParams: Record<string, string>;
  handlers: PlanHandler[];
  checks: PlanCheck[];
  /** Human-readable notes the features want the user to see (e.g. "panel is tunnel-only"). */
  notes: string[];
  /** The Raspberry Pi models the config names (hardware.models); the build checks the image boots each. */
  models: ModelId[];
}
