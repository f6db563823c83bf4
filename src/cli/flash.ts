/**
 * `syncpi flash IMAGE [--device DEV]`: the command-line face of src/flash/flash.ts.
 */
import type { Command } from 'commander';
import { createReporter, formatBytes } from '../util/report.js';
import { UserError } from '../util/errors.js';
import type { FlashOptions, Prompter } from '../flash/flash.js';

/** The command's flags: every FlashOptions field but the image (an argument), plus CLI-only switches. */
type Flags = Omit<FlashOptions, 'image'> & { list?: boolean; json?: boolean };

const collect = (v: string, prev: string[]): string[] => [...prev, v];

/** Prompts only where a person can answer: stdin and stderr both a terminal. */
async function terminalPrompter(): Promise<Prompter | undefined> {
  if (!process.stdin.isTTY || !process.stderr.isTTY) return undefined;
  const { select, confirm } = await import('@inquirer/prompts');
  const context = { output: process.stderr };
  return {
    pick: (message, choices) => select({ message, choices }, context),
    confirm: (message) => confirm({ message, default: false }, context),
  };
}

export function register(program: Command): void {
  program
    .command('flash')
    .description('write an image to an SD card: only the blocks holding data, then read back and verified')
    .argument('[image]', 'the .img or .img.xz from `syncpi build` (its .bmap beside it is used when present)')
    .option('-d, --device <dev>', 'the whole disk to overwrite, e.g. /dev/sdb or /dev/mmcblk0 (asked for when omitted)')
    .option('-y, --yes', 'do not ask for confirmation')
    .option('--allow-fixed', 'allow a disk that is not removable (e.g. a loop device or an internal card slot)')
    .option('--unmount', 'unmount the device\'s mounted partitions first')
    .option('--to-file', 'allow writing into a regular file instead of a device')
    .option('--no-verify', 'skip reading the card back')
    .option('--verify-only', 'do not write: check that the device holds the image')
    .option('--no-eject', 'leave the card attached when done')
    .option('--list', 'list devices and whether each could take the image, then exit')
    .option('--hostname <name>', 'per-card hostname, applied on first boot')
    .option('--ssh-key <file>', 'public key file for the admin user (repeatable), applied on first boot', collect, [])
    .option('--wifi-ssid <ssid>', 'Wi-Fi network to join (with --wifi-psk-file and --wifi-country)')
    .option('--wifi-psk-file <file>', 'file holding the Wi-Fi passphrase (kept out of the process list)')
    .option('--wifi-country <CC>', 'Wi-Fi regulatory country, e.g. DE')
    .option('--json', 'print one JSON event per line on stdout')
    .addHelpText(
      'after',
      '\nExit codes: 0 written (and verified), 1 failed (e.g. verification mismatch), 2 refused or bad input.\n' +
        'Examples:\n  syncpi flash out/appliance.img.xz\n  sudo syncpi flash out/appliance.img --device /dev/sdb --hostname pi-kitchen --ssh-key ~/.ssh/id_ed25519.pub',
    )
    .action(async (image: string | undefined, flags: Flags, cmd: Command) => {
      const all = { ...cmd.optsWithGlobals(), ...flags } as Flags;
      const reporter = createReporter({ json: !!all.json });
      const { flash, listForImage } = await import('../flash/flash.js');
      if (all.list) {
        const rows = await listForImage(image, { image: image ?? '', ...all });
        if (reporter.json) reporter.result(rows.map((r) => ({ path: r.device.path, size: r.device.size, model: r.device.model, tran: r.device.tran, refusal: r.refusal })));
        else for (const r of rows) reporter.result(`${r.refusal ? '  ' : '✔ '}${r.device.path}\t${formatBytes(r.device.size)}\t${r.device.model || '-'}\t${r.refusal ?? 'candidate'}`);
        return;
      }
      if (!image) throw new UserError('no image given: syncpi flash IMAGE.img[.xz] [--device DEV]');
      const opts: FlashOptions = { ...all, image, sshKey: all.sshKey?.length ? all.sshKey : undefined };
      await flash(opts, reporter, await terminalPrompter());
    });
}
