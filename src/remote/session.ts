/**
 * The SSH session the small host commands (share, panel) open: the shared SSH flags turned into
 * an SshTarget, with the appliance user as the default login.
 */
import type { SshCliOptions } from '../cli/provision.js';
import { parsePort, parsePositiveInt, sshConfigFile } from '../cli/provision.js';
import { parseDestination, SshTarget } from '../targets/ssh.js';

export async function openSession(dest: string, flags: SshCliOptions & { port?: string }): Promise<SshTarget> {
  const { user, host } = parseDestination(dest);
  return SshTarget.connect({
    host,
    port: parsePort(flags.port),
    user,
    defaultUser: 'pi',
    sshConfigFile: sshConfigFile(flags),
    identities: flags.identity,
    knownHostsFile: flags.knownHosts,
    acceptNewHostKey: !!flags.acceptNewHostKey,
    hostKeyFingerprint: flags.hostKeyFingerprint,
    connectTimeoutMs: parsePositiveInt('--connect-timeout', flags.connectTimeout ?? '20', 3600) * 1000,
  });
}
