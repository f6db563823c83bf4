/**
 * Per-card settings as rpi-imager's firstrun.sh, for cards of a Raspberry Pi OS base that boots
 * with raspberrypi-sys-mods' firstboot (bookworm-based images, rpi-imager's "systemd" format):
 * cmdline.txt names the script through systemd.run=, systemd runs it once on the boot after the
 * firstboot (in kernel-command-line.target, then reboots), and the script takes itself off
 * cmdline.txt and deletes itself, as rpi-imager's does. Where rpi-imager's script inlines each
 * setting as shell commands, this one hands the settings file to the image's own applier
 * (templates/firstboot/firstboot.sh), which validates every value as data: nothing from a setting is
 * ever run as shell.
 */
import { FIRSTBOOT_SCRIPT } from '../plan/features/firstboot.js';

export const FIRSTRUN = 'firstrun.sh';
const SCRIPT = `/boot/firmware/${FIRSTRUN}`;
const CMDLINE_ARGS = [`systemd.run=${SCRIPT}`, 'systemd.run_success_action=reboot', 'systemd.unit=kernel-command-line.target'];
const END = 'SYNCPI_SETTINGS_END';

/** The script; `settings` is syncpi's settings file (validated key=value lines, no END line). */
export function renderFirstrun(settings: string, settingsFile: string): string {
  const drop = CMDLINE_ARGS.map((a) => `s| ${a.replace(/[.]/g, '\\.')}||`).join('; ');
  return [
    '#!/bin/sh',
    '# Per-card settings written by `syncpi flash`; systemd runs this once on first boot (cmdline.txt).',
    'set +e',
    `sed -i '${drop}' /boot/firmware/cmdline.txt`,
    `cat >/boot/firmware/${settingsFile} <<'${END}'`,
    settings.trimEnd(),
    END,
    FIRSTBOOT_SCRIPT,
    `rm -f ${SCRIPT}`,
    'exit 0',
    '',
  ].join('\n');
}

/** cmdline.txt with the script armed (one line; arming twice changes nothing). */
export function withFirstrun(cmdline: string): string {
  const words = cmdline.split('\n')[0]!.trim().split(/\s+/).filter((w) => !CMDLINE_ARGS.includes(w));
  return `${[...words, ...CMDLINE_ARGS].join(' ')}\n`;
}
