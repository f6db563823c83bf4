/**
 * The syncpi command line. Each command lives in its own module exporting register(program);
 * heavy dependencies are imported inside actions so `syncpi --help` stays fast.
 * Exit codes: 0 ok, 1 failure, 2 bad input. Stacks only with --debug or for internal errors.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, CommanderError } from 'commander';
import { packageRoot } from '../util/paths.js';
import { Failure, UserError } from '../util/errors.js';
import { register as registerInit } from './init.js';
import { register as registerValidate } from './validate.js';
import { register as registerPlan } from './plan.js';
import { register as registerSchema } from './schema.js';
import { register as registerFlash } from './flash.js';
import { register as registerProvision } from './provision.js';
import { register as registerFleet } from './fleet.js';
import { register as registerStatus } from './status.js';
import { register as registerBuild } from './build.js';
import { register as registerImage } from './image.js';
import { register as registerVerify } from './verify.js';
import { register as registerShare } from './share.js';
import { register as registerPanel } from './panel.js';
import { register as registerAdoptDrive } from './adopt-drive.js';

const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version: string };

export function buildProgram(): Command {
  const program = new Command('syncpi')
    .description('One YAML file to a private-cloud sync appliance on a Raspberry Pi: build an SD image, flash it, provision running Pis.')
    .version(pkg.version, '-V, --version')
    .option('--debug', 'print stack traces and tool output on errors')
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (str, write) => write(str) })
    .exitOverride();
  registerInit(program);
  registerValidate(program);
  registerPlan(program);
  registerSchema(program);
  registerFlash(program);
  registerProvision(program);
  registerFleet(program);
  registerStatus(program);
  registerBuild(program);
  registerImage(program);
  registerVerify(program);
  registerShare(program);
  registerPanel(program);
  registerAdoptDrive(program);
  return program;
}

function report(err: unknown, debug: boolean): number {
  const color = !process.env.NO_COLOR && process.stderr.isTTY;
  const red = (s: string): string => (color ? `\x1b[31m${s}\x1b[0m` : s);
  if (err instanceof CommanderError) {
    // Commander has already printed its message; help and version are not errors.
    if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') return 0;
    return 2;
  }
  if (err instanceof UserError || err instanceof Failure) {
    process.stderr.write(`${red('error:')} ${err.message}\n`);
    for (const d of err.details) process.stderr.write(`  ${d}\n`);
    if (debug && err.stack) process.stderr.write(`${err.stack}\n`);
    return err.exitCode;
  }
  process.stderr.write(`${red('internal error:')} ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  return 1;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv);
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (err) {
    return report(err, argv.includes('--debug'));
  }
}
