/**
 * The live view of a fleet run: on a terminal one row per host redrawn in place, otherwise a line
 * per state change on stderr, or a JSON event per change on stdout.
 */
import type { FleetOptions } from './run.js';

export class Rows {
  private states = new Map<string, { state: string; t0: number }>();
  private drawn = 0;
  private timer?: NodeJS.Timeout;
  constructor(
    private readonly names: string[],
    private readonly display: FleetOptions['display'],
  ) {
    for (const n of names) this.states.set(n, { state: 'waiting', t0: 0 });
    if (display === 'tty') this.timer = setInterval(() => this.draw(), 250);
  }
  set(name: string, state: string): void {
    const s = this.states.get(name)!;
    if (s.t0 === 0 && state !== 'waiting') s.t0 = Date.now();
    if (s.state === state) return;
    s.state = state;
    if (this.display === 'lines') process.stderr.write(`${name}: ${state}\n`);
    else if (this.display === 'json') process.stdout.write(JSON.stringify({ type: 'host', host: name, state, ts: Date.now() }) + '\n');
  }
  draw(): void {
    if (this.display !== 'tty') return;
    const w = Math.max(...this.names.map((n) => n.length));
    const lines = this.names.map((n) => {
      const s = this.states.get(n)!;
      const secs = s.t0 ? `${((Date.now() - s.t0) / 1000).toFixed(1)}s` : '';
      return `${n.padEnd(w)}  ${s.state.padEnd(40).slice(0, 60)} ${secs}`;
    });
    let out = this.drawn ? `\x1b[${this.drawn}A` : '';
    for (const l of lines) out += `\r\x1b[2K${l}\n`;
    this.drawn = lines.length;
    process.stderr.write(out);
  }
  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.draw();
  }
}
