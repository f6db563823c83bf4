/**
 * `syncpi share [USER@]HOST`: the appliance's Syncthing device ID, as text and as a QR code in the
 * terminal, so a phone app can pair by scanning it. Read over SSH from the daemon's own key.
 * With --config, also who each folder is shared with and how, as the config declares it.
 * `syncpi share add CONFIG`: a device pasted from a message, added to a folder in one step.
 */
import type { Command } from 'commander';
import type { Config } from '../config/schema.js';
import { checkDeviceId } from '../config/validators.js';
import { Failure } from '../util/errors.js';
import { addSshOptions, parseDestination, parsePort, sshOptions, type SshCliOptions } from './ssh-flags.js';


/**
 * Runs on the appliance as root. It holds no user value: the daemon's home comes from its unit,
 * so a home moved by the config is still found.
 */
export const DEVICE_ID_SCRIPT = [
  'home=$(systemctl show -p ExecStart --value syncthing.service 2>/dev/null | sed -n \'s/.*--home[= ]\\([^ ;]*\\).*/\\1/p\' | head -n 1)',
  'home=${home:-/var/lib/syncthing}',
  // a daemon on its first start is "active" before it has written its key pair: wait, bounded
  'for i in $(seq 1 60); do [ -s "$home/cert.pem" ] && break; sleep 2; done',
  'exec syncthing --home="$home" --device-id',
].join('\n');

export function parseDeviceId(stdout: string): string | undefined {
  return stdout
    .split('\n')
    .map((l) => l.trim())
    // the one check of an ID: canonical spelling and its Luhn characters (config/device-id.ts)
    .find((l) => checkDeviceId(l) === null);
}

export function qrText(text: string): Promise<string> {
  return import('qrcode-terminal').then(
    (m) =>
      new Promise((res) => {
        const qr = (m as unknown as { default: { generate(t: string, o: { small: boolean }, cb: (s: string) => void): void } }).default;
        qr.generate(text, { small: true }, res);
      }),
  );
}

const HOW: Record<Config['sync']['folders'][number]['type'], string> = {
  sendreceive: 'send-receive',
  sendonly: 'send-only (the appliance only sends)',
  receiveonly: 'receive-only (the appliance keeps no change of its own)',
};

/** Per folder: the appliance's side, then each device and how it shares the folder. */
export function describeSharing(config: Config): string[] {
  if (config.sync.folders.length === 0) return ['No folders (sync.folders is empty).'];
  const named = (ref: string) => {
    const d = config.sync.devices.find((x) => x.name === ref || x.id === ref);
    return d ? `${d.name} (${d.id.slice(0, 7)})` : ref;
  };
  const out: string[] = [];
  for (const f of config.sync.folders) {
    out.push(`${f.id}${f.label ? ` "${f.label}"` : ''}: ${HOW[f.type]}`);
    const rows = [...f.devices.map((d) => [named(d), HOW[f.type].split(' ')[0]!]), ...(f.readers ?? []).map((d) => [named(d), 'read-only reader (nothing it changes comes back)'])];
    if (rows.length === 0) out.push('  shared with no device yet');
    const w = Math.max(...rows.map((r) => r[0]!.length), 0);
    for (const [who, how] of rows) out.push(`  ${who!.padEnd(w)}  ${how}`);
  }
  return out;
}

interface ShareAddFlags {
  device: string;
  name: string;
  folder: string;
  readOnly?: boolean;
  apply?: string;
  secrets?: string;
}

function registerAdd(share: Command): void {
  share
    .command('add')
    .description('add a device (its ID pasted from a message) to a folder in appliance.yaml, keeping the file\'s comments; --apply puts it on the Pi')
    .argument('<config>', 'path to appliance.yaml')
    .requiredOption('--device <id>', "the device's Syncthing ID (any case; dashes or spaces optional)")
    .requiredOption('--name <name>', 'a name for the device, e.g. laptop or grandma-phone')
    .requiredOption('--folder <id>', 'ID of the folder under sync.folders to share with it')
    .option('--read-only', 'the device receives the folder only: listed under the folder\'s readers')
    .option('--apply <destination>', 'then provision [USER@]HOST with the changed config, as syncpi provision does (SSH flags: those of syncpi share, e.g. -p, -i, --known-hosts)')
    .option('--secrets <file>', 'secrets file for --apply (default: CONFIG.secrets.yaml beside the config)')
    .action(async (config: string, flags: ShareAddFlags) => {
      const { addShare } = await import('../config/share-edit.js');
      // a bad --apply flag is refused before the file changes
      // The SSH flags are share's own: Commander hands them to the parent wherever they stand.
      const ssh = share.opts<SshCliOptions>();
      if (flags.apply) {
        parsePort(ssh.port);
        parseDestination(flags.apply);
      }
      const r = addShare(config, { device: flags.device, name: flags.name, folder: flags.folder, readOnly: !!flags.readOnly });
      process.stdout.write(r.changes.length ? `${config}: ${r.changes.join('; ')}\n` : `${config}: already shares ${flags.folder} with ${flags.name} that way; nothing changed\n`);
      if (flags.apply) {
        const { runProvision } = await import('./provision.js');
        await runProvision(flags.apply, config, { ...ssh, ...(flags.secrets ? { secrets: flags.secrets } : {}), diff: true });
      }
    });
}

export function register(program: Command): void {
  const share = addSshOptions(
    program
      .command('share')
      .description("print the appliance's Syncthing device ID and a QR code of it for phone apps; share add: add a device to a folder")
      .argument('<destination>', '[USER@]HOST of the appliance (default user: pi)')
      .option('-p, --port <port>', 'SSH port (default: the SSH config\'s, else 22)')
      .option('--config <file>', 'appliance.yaml: also show, per folder, who it is shared with and how')
      .option('--no-qr', 'print the device ID only'),
    true,
  );
  registerAdd(share);
  share.action(async (dest: string, flags: SshCliOptions & { qr: boolean; config?: string }) => {
    // the config is read first: a bad file is reported before any connection is made
    const { loadConfig } = await import('../config/load.js');
    const sharing = flags.config ? describeSharing(loadConfig(flags.config).config) : undefined;
    const { SshConnection } = await import('../targets/ssh-connection.js');
    const { SshTarget } = await import('../targets/ssh.js');
    const ssh = await SshConnection.connect(sshOptions(dest, flags, 'pi'));
    let id: string | undefined;
    try {
      const r = await new SshTarget(ssh).runScript(DEVICE_ID_SCRIPT);
      id = parseDeviceId(r.stdout);
      if (!id) throw new Failure(`${ssh.label}: could not read the Syncthing device ID (exit ${r.exitCode})`, r.stderr.trim().split('\n').slice(-5));
    } finally {
      ssh.close();
    }
    const out = [`Device ID of ${ssh.label}:`, id];
    if (flags.qr) out.push('', await qrText(id), 'Scan it in the Syncthing app: Add device → scan QR code.');
    if (sharing) out.push('', `Folders (as ${flags.config} declares them):`, ...sharing.map((l) => `  ${l}`));
    process.stdout.write(out.join('\n') + '\n');
  });
}
