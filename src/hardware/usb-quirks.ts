/**
 * usb-storage.quirks: per-device overrides of the kernel's USB mass-storage table, for USB-SATA
 * bridges that fail under UAS ("u": IGNORE_UAS) and the like. The kernel reads one parameter,
 * a comma-separated list of VID:PID:FLAGS entries (Documentation/admin-guide/kernel-parameters.txt,
 * drivers/usb/storage/usb.c usb_stor_adjust_quirks); it is written to cmdline.txt by the converger.
 */

export const USB_QUIRKS_PARAM = 'usb-storage.quirks';

/** The flag letters the kernel documents for usb-storage.quirks (as of Linux 6.12). */
export const USB_QUIRK_FLAGS: Record<string, string> = {
  a: 'SANE_SENSE', b: 'BAD_SENSE', c: 'FIX_CAPACITY', d: 'NO_READ_DISC_INFO', e: 'NO_READ_CAPACITY_16',
  f: 'NO_REPORT_OPCODES', g: 'MAX_SECTORS_240', h: 'CAPACITY_HEURISTICS', i: 'IGNORE_DEVICE',
  j: 'NO_REPORT_LUNS', k: 'NO_SAME', l: 'NOT_LOCKABLE', m: 'MAX_SECTORS_64', n: 'INITIAL_READ10',
  o: 'CAPACITY_OK', p: 'WRITE_CACHE', r: 'IGNORE_RESIDUE', s: 'SINGLE_LUN', t: 'NO_ATA_1X',
  u: 'IGNORE_UAS', w: 'NO_WP_DETECT', y: 'ALWAYS_SYNC',
};

/** The module keeps the parameter in a 128-byte buffer (module_param_string): longer is refused at boot. */
export const USB_QUIRKS_MAX = 127;

/** Why S is no quirk entry, or null: 4 hex digits, ":", 4 hex digits, ":", flag letters. */
export function checkUsbQuirk(s: string): string | null {
  const m = /^([0-9a-f]{4}):([0-9a-f]{4}):([a-z]+)$/.exec(s);
  if (!m) return 'VID:PID:FLAGS as lsusb shows the IDs, e.g. 174c:55aa:u (4 lowercase hex digits each, then flag letters)';
  const unknown = [...m[3]!].filter((f) => !(f in USB_QUIRK_FLAGS));
  if (unknown.length) return `flag letters the kernel knows (${Object.keys(USB_QUIRK_FLAGS).join('')}; u: do not use UAS), not "${[...new Set(unknown)].join('')}"`;
  if (new Set(m[3]).size !== m[3]!.length) return 'each flag letter once';
  return null;
}

/** The parameter's value for a list of checked entries. */
export function usbQuirksValue(quirks: readonly string[]): string {
  return quirks.join(',');
}
