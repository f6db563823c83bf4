/**
 * `syncpi panel [USER@]HOST`: an SSH local forward from a loopback port here to the panel on the
 * appliance's loopback, so a tunnel-only panel (never exposed to the network) is still one command
 * away. Prints the local URL and keeps the tunnel open until Ctrl-C.
 */
import net from 'node:net';
import tls from 'node:tls';
import type { Command } from 'commander';
import { UserError } from '../util/errors.js';
import type { SshConnection } from '../targets/ssh-connection.js';
import { parsePositiveInt } from './args.js';
import { addSshOptions, sshOptions, type SshCliOptions } from './ssh-flags.js';

interface PanelFlags extends SshCliOptions {
  localPort: string;
  remotePort: string;
}

export interface Tunnel {
  localPort: number;
  scheme: 'https' | 'http';
  close(): Promise<void>;
}

/** Each local connection becomes one direct-tcpip channel to 127.0.0.1:remotePort on the host. */
export async function openTunnel(ssh: Pick<SshConnection, 'forward'>, remotePort: number, localPort = 0): Promise<Tunnel> {
  const open = () => ssh.forward('127.0.0.1', remotePort);
  const sockets = new Set<net.Socket>();
  const server = net.createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    open().then(
      (ch) => {
        sock.pipe(ch).pipe(sock);
        ch.on('error', () => sock.destroy());
        sock.on('error', () => ch.destroy());
      },
      () => sock.destroy(),
    );
  });
  await new Promise<void>((res, rej) => {
    server.once('error', (e: NodeJS.ErrnoException) =>
      rej(e.code === 'EADDRINUSE' ? new UserError(`--local-port ${localPort} is already in use on this machine; pick another or omit it`) : e),
    );
    server.listen(localPort, '127.0.0.1', () => res());
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : localPort;
  // The panel speaks TLS unless the config turned it off: a handshake through the tunnel tells.
  const scheme = await new Promise<'https' | 'http'>((res) => {
    const s = tls.connect({ host: '127.0.0.1', port, rejectUnauthorized: false });
    const timer = setTimeout(() => {
      s.destroy();
      res('http');
    }, 10_000);
    s.once('secureConnect', () => {
      clearTimeout(timer);
      s.destroy();
      res('https');
    });
    s.once('error', () => {
      clearTimeout(timer);
      res('http');
    });
  });
  return {
    localPort: port,
    scheme,
    close: () =>
      new Promise((res) => {
        for (const s of sockets) s.destroy();
        server.close(() => res());
      }),
  };
}

export function register(program: Command): void {
  addSshOptions(
    program
      .command('panel')
      .description("open an SSH tunnel to the appliance's control panel and print its local URL")
      .argument('<destination>', '[USER@]HOST of the appliance (default user: pi)')
      .option('-p, --port <port>', 'SSH port (default: the SSH config\'s, else 22)')
      .option('--local-port <port>', 'loopback port here (default: a free one)', '0')
      .option('--remote-port <port>', 'panel port on the appliance', '8384'),
    true,
  ).action(async (dest: string, flags: PanelFlags) => {
    const localPort = flags.localPort === '0' ? 0 : parsePositiveInt('--local-port', flags.localPort, 65535);
    const remotePort = parsePositiveInt('--remote-port', flags.remotePort, 65535);
    const { SshConnection } = await import('../targets/ssh-connection.js');
    const ssh = await SshConnection.connect(sshOptions(dest, flags, 'pi'));
    const tunnel = await openTunnel(ssh, remotePort, localPort);
    process.stdout.write(`panel of ${ssh.label}: ${tunnel.scheme}://127.0.0.1:${tunnel.localPort}/\n`);
    process.stderr.write(
      `${tunnel.scheme === 'https' ? 'the certificate is the appliance\'s own (self-signed): your browser asks once. ' : ''}Ctrl-C closes the tunnel.\n`,
    );
    await new Promise<void>((res) => {
      const stop = (): void => res();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
      ssh.onClose(stop);
    });
    await tunnel.close();
    ssh.close();
  });
}
