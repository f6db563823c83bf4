/**
 * The systemd units syncpi's own features write or switch, read off a plan that has every
 * feature switched on, so a boot service can never take one's name (services.firstboot would
 * otherwise replace syncpi-firstboot.service) and a new feature unit is reserved as it appears.
 */
import { ConfigSchema } from '../config/schema.js';
import type { ResolvedInputs } from '../config/secrets.js';
import { compilePlan } from './compile.js';
import { serviceUnitBase } from './units.js';

const UNIT_DIR = '/etc/systemd/system/';

/** Every optional part switched on; no services, so everything found belongs to syncpi. */
const PROBE = {
  system: {
    user: { ssh_keys: ['ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEQFxHFAAuqDnFat+fAaazwCt3EzGYTIki0T56kp4/9k probe'] },
    wifi: { country: 'DE', networks: [{ ssid: 'probe' }] },
  },
  // a read-only share, for its mirror's units
  sync: {
    devices: [{ id: 'JB2RL7S-VHDZAR2-G34LH2K-277GIJZ-ZIZMV6I-NNOFVUF-BJ2ZYLO-YNAK7A5', name: 'probe' }],
    folders: [{ id: 'probe', path: 'probe', readers: ['probe'] }],
  },
  drive: { label: 'PROBE', spin_down: 60 },
  access: { web: { folders: ['probe'] } },
  panel: { allowed_networks: ['192.168.0.0/16'] },
  hardening: { fail2ban: true, ssh: { allow_from: ['10.0.0.0/8'] } },
  health: { alert: { url: 'https://alerts.home.arpa/syncpi', command: ['/usr/bin/true'] } },
};

const PROBE_INPUTS: ResolvedInputs = {
  panelPasswordHash: `$2b$10$${'p'.repeat(53)}`,
  panelPassword: null,
  wifiPsks: [null],
  tls: null,
  announcements: [],
  secretsFile: '',
};

let cached: ReadonlySet<string> | null = null;

export function ownUnitNames(): ReadonlySet<string> {
  if (cached) return cached;
  const plan = compilePlan(ConfigSchema.parse(PROBE), PROBE_INPUTS, { configDir: '/' });
  cached = new Set([
    ...plan.files.filter((f) => f.path.startsWith(UNIT_DIR)).map((f) => f.path.slice(UNIT_DIR.length)),
    ...plan.units.enable,
    ...plan.units.disable,
    ...plan.units.mask,
  ]);
  return cached;
}

/** The syncpi unit a boot service of this name would replace (as its unit or its timer), if any. */
export function ownUnitTakenBy(serviceName: string): string | null {
  const own = ownUnitNames();
  const base = serviceUnitBase(serviceName);
  return [`${base}.service`, `${base}.timer`].find((u) => own.has(u)) ?? null;
}
