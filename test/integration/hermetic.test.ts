/**
 * Nothing a test starts reaches beyond this machine. A test Syncthing is private in its config.xml
 * before its first start, and its whole life — start, REST calls, discovery timers, stop — shows in
 * strace no address outside loopback. The strace reader itself is checked on known lines.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { startLaptop, type Laptop } from '../helpers/laptop-syncthing.js';
import { outsideAddresses } from '../helpers/net-trace.js';

const dirs: string[] = [];
let laptop: Laptop | undefined;
after(async () => {
  await laptop?.stop();
  for (const d of dirs) await rm(d, { recursive: true, force: true });
});

test('the strace reader names non-loopback IPv4 and IPv6 destinations and nothing else', () => {
  const trace = [
    '101 connect(7, {sa_family=AF_INET, sin_port=htons(443), sin_addr=inet_addr("198.51.100.7")}, 16) = -1 ENETUNREACH (Network is unreachable)',
    '101 sendto(9, "x", 1, 0, {sa_family=AF_INET6, sin6_port=htons(21027), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "ff12::8384", &sin6_addr), sin6_scope_id=0}, 28) = -1 ENETUNREACH',
    '101 connect(3, {sa_family=AF_INET, sin_port=htons(8384), sin_addr=inet_addr("127.0.0.1")}, 16) = 0',
    '101 connect(3, {sa_family=AF_INET6, sin6_port=htons(22), sin6_flowinfo=htonl(0), inet_pton(AF_INET6, "::1", &sin6_addr), sin6_scope_id=0}, 28) = 0',
    '101 connect(4, {sa_family=AF_UNIX, sun_path="/run/nscd/socket"}, 110) = -1 ENOENT',
    '101 sendto(3, [{nlmsg_len=20}], 20, 0, {sa_family=AF_NETLINK, nl_pid=0, nl_groups=00000000}, 12) = 20',
    '101 sendmsg(5, {msg_name={sa_family=AF_INET, sin_port=htons(53), sin_addr=inet_addr("10.0.2.3")}, msg_namelen=16}, 0) = 30',
    '101 bind(6, {sa_family=AF_INET, sin_port=htons(22000), sin_addr=inet_addr("192.0.2.1")}, 16) = 0',
  ].join('\n');
  assert.deepEqual(outsideAddresses(trace), ['198.51.100.7:443', '[ff12::8384]:21027', '10.0.2.3:53']);
});

test('a test Syncthing is private before its first start and never leaves loopback', { timeout: 120_000 }, async (t) => {
  const strace = await execa('sh', ['-c', 'command -v strace'], { reject: false });
  assert.equal(strace.exitCode, 0, 'strace is missing: install the Debian package strace (scripts/setup-host.sh does)');
  const dir = await mkdtemp(join(tmpdir(), 'syncpi-hermetic-'));
  dirs.push(dir);
  const trace = join(dir, 'syncthing.strace');
  laptop = await startLaptop(dir, { traceFile: trace });

  // the file it started from, read with expectations of this test's own
  const xml = await readFile(join(laptop.home, 'config.xml'), 'utf8');
  const options = /<options>([\s\S]*?)<\/options>/.exec(xml)?.[1] ?? '';
  const values = (k: string): string[] => [...options.matchAll(new RegExp(`<${k}>([^<]*)</${k}>`, 'g'))].map((m) => m[1]!);
  for (const k of ['globalAnnounceEnabled', 'localAnnounceEnabled', 'relaysEnabled', 'natEnabled', 'crashReportingEnabled']) assert.deepEqual(values(k), ['false'], k);
  assert.deepEqual(values('urAccepted'), ['-1']);
  assert.deepEqual(values('autoUpgradeIntervalH'), ['0']);
  assert.deepEqual(values('listenAddress'), ['tcp://127.0.0.1:0']);
  assert.match(xml, new RegExp(`<gui\\b[^>]*>\\s*<address>127\\.0\\.0\\.1:${laptop.guiPort}</address>`));

  // and what the running daemon took from it
  const live = await laptop.rest<Record<string, unknown>>('GET', '/rest/config/options');
  assert.equal(live.globalAnnounceEnabled, false);
  assert.equal(live.localAnnounceEnabled, false);
  assert.equal(live.relaysEnabled, false);
  assert.equal(live.natEnabled, false);
  assert.equal(live.crashReportingEnabled, false);
  assert.deepEqual(live.listenAddresses, ['tcp://127.0.0.1:0']);

  // long enough for the announcers, relay and STUN clients it would start on a default config
  await new Promise((r) => setTimeout(r, 20_000));
  await laptop.stop();
  const seen = await readFile(trace, 'utf8');
  // the trace saw the daemon: its GUI socket was bound where the config says
  assert.match(seen, new RegExp(`bind\\(\\d+, \\{sa_family=AF_INET, sin_port=htons\\(${laptop.guiPort}\\), sin_addr=inet_addr\\("127\\.0\\.0\\.1"\\)`), 'strace recorded the GUI bind');
  assert.deepEqual(outsideAddresses(seen), [], 'destinations outside loopback');
  t.diagnostic(`${seen.trim().split('\n').length} traced network calls, none beyond loopback`);
});
