/**
 * Cleanup that runs on success, on failure and on Ctrl-C/SIGTERM: loop devices, mounts, VMs and
 * temp files are registered here as they are acquired and released in reverse order.
 * `withCleanup` scopes a set of actions to one operation; a signal runs every pending scope,
 * then exits 130/143 so the caller sees an interruption, never a success.
 */
type Action = { label: string; run: () => Promise<void> | void };

const scopes = new Set<Action[]>();
let installed = false;

/**
 * A scope's actions are run by one runner at a time. On a signal the handler and the scope's own
 * `finally` (its operation fails as its processes die) both drain the same scope: each must wait
 * for the action the other is running, or the exit comes in the middle of it.
 */
const draining = new WeakMap<Action[], Promise<string[]>>();
function drain(actions: Action[]): Promise<string[]> {
  let run = draining.get(actions);
  if (!run) {
    run = runActions(actions);
    draining.set(actions, run);
  }
  return run;
}

async function runActions(actions: Action[]): Promise<string[]> {
  const errors: string[] = [];
  while (actions.length > 0) {
    const a = actions.pop()!;
    try {
      await a.run();
    } catch (e) {
      errors.push(`${a.label}: ${e instanceof Error ? e.message : String(e)}`);
    }
  }
  return errors;
}

function install(): void {
  if (installed) return;
  installed = true;
  const onSignal = (sig: NodeJS.Signals, code: number) => {
    process.stderr.write(`\ninterrupted (${sig}): cleaning up…\n`);
    const all = [...scopes];
    scopes.clear();
    void Promise.all(all.map(drain)).then((errs) => {
      for (const e of errs.flat()) process.stderr.write(`cleanup: ${e}\n`);
      process.exit(code);
    });
  };
  // `on`, not `once`: while a listener of ours stays registered, execa's signal-exit does not
  // re-raise the signal (which would kill the process before the cleanup has run)
  let cleaning = false;
  const handle = (sig: NodeJS.Signals, code: number) => () => {
    if (cleaning) return;
    cleaning = true;
    onSignal(sig, code);
  };
  process.on('SIGINT', handle('SIGINT', 130));
  process.on('SIGTERM', handle('SIGTERM', 143));
  process.on('SIGHUP', handle('SIGHUP', 129));
}

export interface CleanupScope {
  /** Register an action; it runs when the scope ends (reverse order of registration). */
  defer(label: string, run: () => Promise<void> | void): void;
  /** Run and forget the most recent actions up to and including `label` early (e.g. unmount before shrink). */
  release(label: string): Promise<void>;
}

export async function withCleanup<T>(fn: (scope: CleanupScope) => Promise<T>): Promise<T> {
  install();
  const actions: Action[] = [];
  scopes.add(actions);
  const scope: CleanupScope = {
    defer(label, run) {
      actions.push({ label, run });
    },
    async release(label) {
      const idx = actions.map((a) => a.label).lastIndexOf(label);
      if (idx < 0) return;
      const tail = actions.splice(idx);
      const errs = await runActions(tail);
      if (errs.length) throw new Error(errs.join('; '));
    },
  };
  try {
    return await fn(scope);
  } finally {
    scopes.delete(actions);
    const errs = await drain(actions);
    for (const e of errs) process.stderr.write(`cleanup: ${e}\n`);
  }
}
