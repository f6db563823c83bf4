/**
 * A phase is one feature's checks on the booted test appliance. e2e-sync boots the appliance once
 * (a boot costs minutes under emulation) and runs every phase in that boot, after the laptop's
 * first file has arrived, so the features are tested on a running, synced appliance.
 */
import type { Forward, Vm } from '../../../src/vm/qemu.js';
import type { ExecResult, SshTarget } from '../../../src/targets/ssh.js';
import type { Laptop } from '../laptop-syncthing.js';
import type { TestAppliance } from '../appliance-image.js';

export interface PhaseContext {
  vm: Vm;
  ssh: SshTarget;
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
