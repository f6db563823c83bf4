/**
 * `syncpi verify TARGET CONFIG`: the Plan's checks against an image's root filesystem (a
 * directory: what can be judged from files) or a running appliance ([USER@]HOST over SSH: all of
 * them, the panel and SSH password checks from this machine). One line per check; exit 1 on any
 * failure.
 */
import { existsSync, statSync } from 'node:fs';
import type { Command } from 'commander';
import { Failure } from '../util/errors.js';
import { addSshOptions, sshOptions, type SshCliOptions } from './ssh-flags.js';

interface VerifyFlags extends SshCliOptions {
  secrets?: string;
  json?: boolean;
}

/** Panel credentials for the HTTP checks: the config's user and the password from the secrets file. */
export function panelCredentials(loaded: { config: { panel?: { user?: string } } }, inputs: { panelPassword: string | null }): { user: string; password: string } | null {
  const user = loaded.config.panel?.user;
  return user && inputs.panelPassword ? { user, password: inputs.panelPassword } : null;
}

export function register(program: Command): void {
  addSshOptions(
    program
      .command('verify')
      .description("run the plan's checks against a root filesystem directory or a running appliance and print pass/fail per check")
      .argument('<target>', 'a root filesystem directory, or [USER@]HOST of a running appliance (default user: the config\'s)')
      .argument('<config>', 'path to appliance.yaml')
      .option('-p, --port <port>', 'SSH port (default: the SSH config\'s, else 22)')
      .option('--secrets <file>', 'secrets file (default: CONFIG.secrets.yaml beside the config)')
      .option('--json', 'print the results as JSON'),
    true,
  ).action(async (target: string, config: string, flags: VerifyFlags) => {
    const { planFromFile } = await import('../plan/load.js');
    const { createReporter } = await import('../util/report.js');
    const reporter = createReporter({ json: !!flags.json });
    const { plan, loaded, inputs } = planFromFile(config, flags.secrets ? { secretsFile: flags.secrets } : {});

    let outcomes: Array<{ status: string; detail: string; check: { description: string; kind: string } }>;
    if (existsSync(target) && statSync(target).isDirectory()) {
      const { verifyRootfs } = await import('../targets/rootfs.js');
      outcomes = await verifyRootfs(target, plan, { arch: plan.base.arch, reporter });
    } else {
      const { SshConnection } = await import('../targets/ssh-connection.js');
      const { SshTarget } = await import('../targets/ssh.js');
      const { verifyLive } = await import('../verify/live.js');
      const o = sshOptions(target, flags, plan.users.find((u) => !u.system)?.name ?? 'pi');
      const ssh = await SshConnection.connect(o);
      try {
        // The password probe dials the resolved address: an SSH config alias means nothing to it.
        outcomes = await reporter.step(`verify ${ssh.user}@${o.host}`, () =>
          verifyLive(new SshTarget(ssh), plan, { sshHost: ssh.host, sshPort: ssh.port, user: ssh.user, panel: panelCredentials(loaded, inputs) }),
        );
      } finally {
        ssh.close();
      }
    }
    printOutcomes(reporter, outcomes);
  });
}

/** Print per-check lines (or JSON) and fail when any check failed. */
export function printOutcomes(
  reporter: { json: boolean; result(d: unknown): void },
  outcomes: Array<{ status: string; detail: string; check: { description: string; kind: string } }>,
): void {
  const failed = outcomes.filter((o) => o.status === 'fail');
  const passed = outcomes.filter((o) => o.status === 'pass').length;
  if (reporter.json) {
    reporter.result({ passed, failed: failed.length, skipped: outcomes.length - passed - failed.length, checks: outcomes.map((o) => ({ kind: o.check.kind, description: o.check.description, status: o.status, detail: o.detail })) });
  } else {
    // stdout: the result a script may parse; progress went to stderr
    process.stdout.write(
      [...formatOutcomesSync(outcomes), `${passed} passed, ${failed.length} failed, ${outcomes.length - passed - failed.length} skipped`].join('\n') + '\n',
    );
  }
  if (failed.length) throw new Failure(`${failed.length} check(s) failed: ${failed.map((f) => f.check.description).join('; ')}`);
}

/** Human lines: "PASS  description — detail". */
function formatOutcomesSync(outcomes: Array<{ status: string; detail: string; check: { description: string } }>): string[] {
  return outcomes.map((o) => `${o.status.toUpperCase().padEnd(5)} ${o.check.description}${o.detail ? ` — ${o.detail}` : ''}`);
}
