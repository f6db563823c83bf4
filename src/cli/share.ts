/**
 * `syncpi share [USER@]HOST`: the appliance's Syncthing device ID, as text and as a QR code in the
 * terminal, so a phone app can pair by scanning it. Read over SSH from the daemon's own key.
 */
import type { Command } from 'commander';
import { Failure } from '../util/errors.js';
import { addSshOptions, type SshCliOptions } from './provision.js';

/** Syncthing device IDs: 8 groups of 7 base32 characters (with check characters). */
export const DEVICE_ID_RE = /^[A-Z2-7]{7}(-[A-Z2-7]{7}){7}$/;

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
    .find((l) => DEVICE_ID_RE.test(l));
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

export function register(program: Command): void {
  addSshOptions(
    program
      .command('share')
      .description("print the appliance's Syncthing device ID and a QR code of it for phone apps")
      .argument('<destination>', '[USER@]HOST of the appliance (default user: pi)')
      .option('-p, --port <port>', 'SSH port (default: the SSH config\'s, else 22)')
      .option('--no-qr', 'print the device ID only'),
    true,
  ).action(async (dest: string, flags: SshCliOptions & { port?: string; qr: boolean }) => {
    const { openSession } = await import('../remote/session.js');
    const ssh = await openSession(dest, flags);
    let id: string | undefined;
    try {
      const r = await ssh.runAsRoot(['sh', '-c', DEVICE_ID_SCRIPT]);
      id = parseDeviceId(r.stdout);
      if (!id) throw new Failure(`${ssh.label}: could not read the Syncthing device ID (exit ${r.code})`, r.stderr.trim().split('\n').slice(-5));
    } finally {
      ssh.close();
    }
    const out = [`Device ID of ${ssh.label}:`, id];
    if (flags.qr) out.push('', await qrText(id), 'Scan it in the Syncthing app: Add device → scan QR code.');
    process.stdout.write(out.join('\n') + '\n');
  });
}
