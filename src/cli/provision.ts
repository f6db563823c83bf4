/** `syncpi provision [USER@]HOST CONFIG`: apply (or --check) the appliance on one running Pi over SSH. */
import { Option, type Command } from 'commander';
import { EXIT_DRIFT, Failure, UserError } from '../util/errors.js';
import { addSshOptions, connectPolicy, parseDestination, parsePort, type SshCliOptions } from './ssh-flags.js';

export function register(program: Command): void {
  addSshOptions(
    program
      .command('provision')
      .description('apply the appliance to a running Pi over SSH (idempotent; --check shows what would change)')
      .argument('<destination>', '[USER@]HOST of the Pi (default user: pi)')
      .argument('<config>', 'path to appliance.yaml')
      .option('--check', `print what would change (diffs, packages, restarts) and change nothing; exit ${EXIT_DRIFT} when something would`)
      .option('-p, --port <port>', 'SSH port (default: the SSH config\'s, else 22)')
      .option('--secrets <file>', 'secrets file (default: CONFIG.secrets.yaml beside the config)')
      .option('--no-diff', 'do not print file diffs in --check mode')
      .addOption(new Option('--json', 'print one JSON event per line, ending with the host report')),
    true,
  ).action(runProvision);
}

export type ProvisionOptions = SshCliOptions & { check?: boolean; secrets?: string; diff: boolean; json?: boolean };

/** What `syncpi provision` does; also the way other commands (share add --apply) apply a config. */
export async function runProvision(dest: string, config: string, opts: ProvisionOptions): Promise<void> {
  const { prepare } = await import('../provision/prepare.js');
  const { applyToHost } = await import('../provision/host.js');
  const { describeReport, headline } = await import('../provision/report.js');
  const { createReporter } = await import('../util/report.js');
  const { exitText } = await import('../bundle/protocol.js');
  const port = parsePort(opts.port);
  const { user, host } = parseDestination(dest);
  const policy = connectPolicy(opts);
  const rep = createReporter({ json: !!opts.json });

  const prepared = await rep.step('compile plan and bundle', async () => prepare(config, opts.secrets ? { secretsFile: opts.secrets } : {}), (p) => `${p.plan.files.length} files, ${p.plan.packages.install.length} packages`);
  for (const a of prepared.announcements) rep.info(a);

  const label = `${opts.check ? 'check' : 'apply'} on ${host}`;
  // The step fails (✖) when the host does, but the report is still printed below.
  let applied: Awaited<ReturnType<typeof applyToHost>> | undefined;
  try {
    await rep.step(label, async () => {
      applied = await applyToHost({ name: host, address: host, user, port }, prepared.archive, {
        check: !!opts.check,
        policy,
      });
      if (applied.status === 'failed') throw new Failure(`${host} failed`);
      return applied;
    }, (r) => `${r.changes.length} change(s)${r.handlers.length ? `, ${r.handlers.length} restart(s)/reload(s)` : ''}`);
  } catch (e) {
    if (!applied) throw e;
  }
  const report = applied!;

  if (rep.json) rep.result(report);
  else {
    process.stdout.write([headline(report), ...describeReport(report, { diffs: opts.diff })].join('\n') + '\n');
  }
  if (report.error) {
    throw report.error.exitCode === 2 ? new UserError(report.error.message) : new Failure(report.error.message);
  }
  if (report.failure) {
    throw new Failure(`${host}: step "${report.failure.step}" failed${exitText(report.failure)}: ${report.failure.message}`);
  }
  if (opts.check && (report.changes.length > 0 || report.handlers.length > 0)) process.exitCode = EXIT_DRIFT;
}
