/**
 * The external drive: an fstab line that can never block boot (nofail, automount, device
 * timeout), per-filesystem ownership options, and optional spin-down.
 */
import { SYNCPI_LIB, type Feature } from '../context.js';
import type { PlanHandler } from '../types.js';
import { hasUnixOwners } from '../../config/drive-layout.js';
import { USB_QUIRKS_PARAM, usbQuirksValue } from '../../hardware/usb-quirks.js';
export { driveDeviceUnit, mountUnitName, unitNameForPath } from '../units.js';

const FSTYPE: Record<string, string> = { ext4: 'ext4', btrfs: 'btrfs', xfs: 'xfs', exfat: 'exfat', vfat: 'vfat', ntfs: 'ntfs3' };

const FSTAB_SYNC: PlanHandler = { name: 'fstab-sync', action: 'command', argv: [`${SYNCPI_LIB}/fstab-sync`], liveOnly: false };

export const drive: Feature = {
  name: 'drive',
  contribute(ctx) {
    const d = ctx.config.drive;
    const base = {
      files: [
        { path: `${SYNCPI_LIB}/fstab-sync`, mode: '0755', owner: 'root', group: 'root', content: ctx.render('drive/fstab-sync.sh.hbs'), notify: ['fstab-sync'] },
      ],
      dirs: [{ path: '/etc/syncpi/fstab.d', mode: '0755', owner: 'root', group: 'root' }],
      handlers: [FSTAB_SYNC],
    };
    if (!d) {
      return { ...base, files: [...base.files, { path: '/etc/syncpi/fstab.d/drive.fstab', mode: '0644', owner: 'root', group: 'root', content: ctx.render('drive/drive.fstab.hbs', { drive: null }), notify: ['fstab-sync'] }] };
    }
    const foreign = !hasUnixOwners(d.fs);
    const options = ['nofail', 'x-systemd.automount', `x-systemd.device-timeout=${d.timeout}s`, 'x-systemd.mount-timeout=90s', 'noatime'];
    // FAT-like filesystems have no owners: map everything to the daemon's user.
    if (foreign) options.push('uid=syncthing', 'gid=syncthing', 'umask=0007');
    if (d.fs === 'vfat') options.push('utf8');
    options.push(...d.options.filter((o) => !options.includes(o)));
    const spec = d.uuid ? `UUID=${d.uuid}` : `LABEL=${d.label}`;
    const link = d.uuid ? `/dev/disk/by-uuid/${d.uuid}` : `/dev/disk/by-label/${d.label}`;
    const fstab = ctx.render('drive/drive.fstab.hbs', {
      drive_spec: spec,
      drive_fstype: FSTYPE[d.fs],
      drive_options: options.join(','),
      drive_pass: d.fs === 'ext4' || d.fs === 'btrfs' || d.fs === 'xfs' ? 2 : 0,
    });
    const install: string[] = [];
    if (d.fs === 'exfat') install.push('exfatprogs');
    if (d.fs === 'vfat') install.push('dosfstools');
    if (d.fs === 'btrfs') install.push('btrfs-progs');
    if (d.fs === 'xfs') install.push('xfsprogs');
    const files = [
      ...base.files,
      { path: '/etc/syncpi/fstab.d/drive.fstab', mode: '0644', owner: 'root', group: 'root', content: fstab, notify: ['fstab-sync', 'daemon-reload'] },
    ];
    const enable: string[] = [];
    const handlers: PlanHandler[] = [...base.handlers];
    if (d.spin_down > 0) {
      install.push('hd-idle');
      files.push({ path: '/etc/default/hd-idle', mode: '0644', owner: 'root', group: 'root', content: ctx.render('drive/hd-idle.hbs', { drive_device_link: link }), notify: ['restart-hd-idle'] });
      enable.push('hd-idle.service');
      handlers.push({ name: 'restart-hd-idle', action: 'restart', unit: 'hd-idle.service', liveOnly: true });
    }
    return {
      install,
      files,
      ...(d.usb_quirks.length ? { kernelParams: { [USB_QUIRKS_PARAM]: usbQuirksValue(d.usb_quirks) } } : {}),
      dirs: base.dirs,
      enable,
      handlers,
      checks: [
        { kind: 'fstab', path: d.mount, spec, description: `drive ${spec} is in fstab at ${d.mount} with nofail` },
        { kind: 'mount', path: d.mount, description: `drive is mounted at ${d.mount}` },
      ],
      notes: [
        `drive ${spec} mounts at ${d.mount} on first access; boot waits at most ${d.timeout} s for it`,
        ...(d.usb_quirks.length ? [`${USB_QUIRKS_PARAM}=${usbQuirksValue(d.usb_quirks)} goes on the kernel command line; on a running Pi it takes effect at the next reboot`] : []),
      ],
    };
  },
};
