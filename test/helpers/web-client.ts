/**
 * Clients for the appliance's web access, for tests: curl (WebDAV and plain HTTP) and a headless
 * Chromium that can reach nothing but loopback. Both accept the self-signed or per-device
 * certificate the server has.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** curl's status code and body for one request. */
export function curl(args: string[]): { status: number; body: string } {
  const r = spawnSync('curl', ['-sk', '--max-time', '30', '-w', '\n%{http_code}', ...args], { encoding: 'utf8' });
  assert.equal(r.status, 0, `curl ${args.join(' ')}: ${r.stderr}`);
  const at = r.stdout.lastIndexOf('\n');
  return { status: Number(r.stdout.slice(at + 1)), body: r.stdout.slice(0, at) };
}

/** Chromium, headless, every name but 127.0.0.1 resolving to nothing; returns its stdout. */
export function chromium(dataDir: string, args: string[]): string {
  const r = spawnSync(
    'chromium',
    [
      '--headless', '--no-sandbox', '--disable-gpu', '--ignore-certificate-errors', '--no-first-run',
      '--disable-background-networking', '--disable-component-update', '--disable-sync',
      '--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1', `--user-data-dir=${dataDir}`, ...args,
    ],
    { encoding: 'utf8', timeout: 180_000, maxBuffer: 64 * 1024 * 1024 },
  );
  assert.equal(r.status, 0, `chromium ${args.join(' ')}: ${r.stderr.slice(-2000)}`);
  return r.stdout;
}

/** Where tests keep what a person may want to look at afterwards (screenshots). */
export function artifactPath(name: string): string {
  const dir = join(tmpdir(), 'syncpi-test-artifacts');
  mkdirSync(dir, { recursive: true });
  return join(dir, `${name}-${Date.now()}.png`);
}

/** Loads URL (credentials in it) in Chromium: the DOM it rendered, and a screenshot kept as an artifact. */
export function browse(dataDir: string, url: string, name: string): { dom: string; screenshot: string } {
  const dom = chromium(join(dataDir, 'dom'), ['--dump-dom', url]);
  const screenshot = artifactPath(name);
  chromium(join(dataDir, 'shot'), ['--window-size=1024,768', `--screenshot=${screenshot}`, url]);
  return { dom, screenshot };
}
