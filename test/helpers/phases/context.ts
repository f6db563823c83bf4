/**
 * A phase is one feature's checks on the booted test appliance. e2e-sync boots the appliance once
 * (a boot costs minutes under emulation) and runs every phase in that boot, after the laptop's
 * first file has arrived, so the features are tested on a running, synced appliance.
 */
import type { Forward, Vm } from '../../../src/vm/qemu.js';
import type { ExecResult, SshConnection } from '../../../src/targets/ssh-connection.js';
import type { Laptop } from '../laptop-syncthing.js';
import type { TestAppliance } from '../appliance-image.js';

export interface PhaseContext {
  vm: Vm;
  ssh: SshConnection;
  /** A shell script run as root on the appliance. */
  root(script: string): Promise<ExecResult>;
  laptop: Laptop;
  /** The laptop's copy of the `documents` folder, shared with the appliance (send-receive). */
  laptopFolder: string;
  applianceId: string;
  app: TestAppliance;
  /** A temporary directory of this test run (removed afterwards). */
  dir: string;
}

export interface Phase {
  name: string;
  /** Guest ports the phase needs forwarded to loopback (their host ports: ctx.vm.ports[name]). */
  forwards?: Forward[];
  run(ctx: PhaseContext): Promise<void>;
}

/** The test appliance's drive mount, and the folder e2e-sync shares with the laptop. */
export const TEST_MOUNT = '/srv/sync';
export const SHARED_FOLDER = 'documents';

/** Run SCRIPT as root every 2 s until it exits 0 (its stdout), bounded by MS. */
export async function rootUntil(ctx: PhaseContext, phase: string, what: string, script: string, ms = 180_000): Promise<string> {
  const deadline = Date.now() + ms;
  for (;;) {
    const r = await ctx.root(script);
    if (r.code === 0) return r.stdout;
    if (Date.now() > deadline) throw new Error(`${phase} phase: timed out after ${ms / 1000} s waiting for ${what}: ${r.stdout}${r.stderr}`);
    await new Promise((res) => setTimeout(res, 2000));
  }
}
