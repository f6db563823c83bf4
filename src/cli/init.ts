/**
 * `syncpi init`: the command's flags; the work is in init-run.ts, loaded only when init runs.
 */
import type { Command } from 'commander';
import type { InitFlags } from './init-run.js';

export function register(program: Command): void {
  program
    .command('init')
    .description('write a new appliance.yaml: asks on a terminal, or takes every answer as flags')
    .option('-o, --out <file>', 'where to write it', 'appliance.yaml')
    .option('--force', 'overwrite an existing file')
    .option('--hostname <name>', 'hostname of the Pi')
    .option('--timezone <zone>', 'IANA time zone, e.g. Europe/Berlin')
    .option('--user <name>', 'login user (SSH keys only)')
    .option('--ssh-key <file...>', 'public key file(s) for the user; giving it skips the questions')
    .option('--drive-uuid <uuid>', 'external drive by filesystem UUID')
    .option('--drive-label <label>', 'external drive by filesystem label')
    .option('--drive-fs <type>', 'drive filesystem: ext4, exfat, ntfs, vfat, btrfs, xfs')
    .option('--panel-network <cidr...>', 'networks allowed to reach the panel')
    .option('--tunnel-only', 'panel reachable only through an SSH tunnel')
    .action(async (flags: InitFlags) => {
      const { runInit } = await import('./init-run.js');
      await runInit(flags);
    });
}
