/** How one host's apply reads to a person: its changes, diffs, handlers and the failing step. */
import { exitText } from '../bundle/protocol.js';
import type { HostReport } from './host.js';

/** The first line about a host's result: failed, already converged, or how many changes. */
export function headline(r: HostReport): string {
  if (r.status === 'failed') return `${r.name}: FAILED`;
  if (r.changes.length === 0 && r.handlers.length === 0) return `${r.name}: no changes (already converged)`;
  return `${r.name}: ${r.changes.length} ${r.mode === 'check' ? 'change(s) would be made' : 'change(s) made'}`;
}

/** Human lines for one host's result: changes, diffs, handlers, the failing step. */
export function describeReport(r: HostReport, o: { diffs?: boolean } = {}): string[] {
  const out: string[] = [];
  const verbIng = r.mode === 'check' ? 'would change' : 'changed';
  for (const c of r.changes) out.push(`  ${verbIng}: ${c.kind} ${c.target} (${c.action})`);
  if (o.diffs !== false) {
    for (const [p, diff] of Object.entries(r.diffs)) {
      out.push(`  --- diff ${p}`);
      for (const l of diff.replace(/\n$/, '').split('\n')) out.push(`  ${l}`);
    }
  }
  for (const hd of r.handlers) out.push(`  ${r.mode === 'check' ? 'would run' : 'ran'}: ${hd.action} ${hd.unit ?? hd.name}`);
  for (const w of r.warnings) out.push(`  warning: ${w}`);
  if (r.failure) {
    out.push(`  FAILED at step "${r.failure.step}"${exitText(r.failure)}: ${r.failure.message}`);
    for (const l of r.failure.output.slice(-20)) out.push(`    | ${l}`);
  }
  if (r.error) out.push(`  error: ${r.error.message}`);
  return out;
}
