/** systemd unit names derived from paths, as systemd-escape computes them. */

/** systemd's path escaping for unit names (systemd-escape --path --suffix=SUFFIX). */
export function unitNameForPath(path: string, suffix: 'mount' | 'device' | 'automount'): string {
  const body = path.replace(/^\/+|\/+$/g, '');
  if (body === '') return `-.${suffix}`;
  const esc = body
    .split('/')
    .map((seg) => Array.from(seg, (ch, i) => (/[A-Za-z0-9:_]/.test(ch) || (ch === '.' && i > 0) ? ch : [...Buffer.from(ch)].map((b) => `\\x${b.toString(16).padStart(2, '0')}`).join(''))).join(''))
    .join('-');
  return `${esc}.${suffix}`;
}

export const mountUnitName = (path: string): string => unitNameForPath(path, 'mount');

/** The device unit udev creates for the drive: what a late or re-plugged drive activates. */
export function driveDeviceUnit(d: { uuid?: string | undefined; label?: string | undefined }): string {
  return unitNameForPath(d.uuid ? `/dev/disk/by-uuid/${d.uuid}` : `/dev/disk/by-label/${d.label}`, 'device');
}

/** The unit (without suffix) a boot service NAME from appliance.yaml becomes: syncpi-NAME.service, and .timer when scheduled. */
export const serviceUnitBase = (name: string): string => `syncpi-${name}`;
