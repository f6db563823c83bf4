/**
 * `syncpi adopt-drive [USER@]HOST`: take the drive mounted on the appliance now as the home of
 * every folder — a replacement for a failed drive, a reformatted one, a folder moved to a new
 * path. syncthing-prepare holds such folders back so that an empty drive is never read as "all
 * files deleted"; this resets Syncthing's index on the Pi so the drive fills again from the other
 * devices, and nothing is deleted anywhere.
 */
import type { Command } from 'commander';
import { Failure, UserError } from '../util/errors.js';
import { shJoin } from '../util/shell.js';
import { addSshOptions, sshOptions, type SshCliOptions } from './ssh-flags.js';

export function register(program: Command): void {
  addSshOptions(
    program
      .command('adopt-drive')
      .description('use the drive now in the appliance for every folder: reset the index, refill from the other devices (nothing is deleted)')
      .argument('<destination>', '[USER@]HOST of the appliance (default user: pi)')
      .option('-p, --port <port>', 'SSH port (default: the SSH config\'s, else 22)')
      .option('-y, --yes', 'do not ask for confirmation'),
    true,
  ).action(async (dest: string, flags: SshCliOptions & { yes?: boolean }) => {
    if (!flags.yes) {
      if (!process.stdin.isTTY || !process.stderr.isTTY) throw new UserError(`adopt-drive ${dest}: resets Syncthing's index on the appliance; pass --yes to confirm (no terminal to ask on)`);
      const { confirm } = await import('@inquirer/prompts');
      const ok = await confirm({ message: `Adopt the drive now in ${dest} for every folder? Syncthing's index is reset and the folders fill again from your other devices.`, default: false }, { output: process.stderr });
      if (!ok) throw new UserError('adopt-drive: not confirmed; nothing changed');
    }
    const { SshConnection } = await import('../targets/ssh-connection.js');
    const { SshTarget } = await import('../targets/ssh.js');
    const { ADOPT_DRIVE } = await import('../plan/features/sync.js');
    const ssh = await SshConnection.connect(sshOptions(dest, flags, 'pi'));
    try {
      const r = await new SshTarget(ssh).runScript(shJoin([ADOPT_DRIVE]));
      const said = `${r.stdout}${r.stderr}`.trim().split('\n').filter(Boolean);
      if (r.exitCode !== 0) throw new Failure(`${ssh.label}: adopt-drive failed (exit ${r.exitCode})`, said.slice(-8));
      process.stdout.write(`${said.join('\n')}\n`);
    } finally {
      ssh.close();
    }
  });
}
