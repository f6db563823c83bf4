/**
 * Real test hosts for provision/fleet tests: Debian containers booted with systemd-nspawn (real
 * systemd, real sshd), each in its own network namespace joined to the host by a veth pair on a
 * private /30 that exists only on this machine (10.213.IDX.0/30: host .1, container .2).
 *
 * All hosts boot from one cached rootfs (mmdebstrap, keyed by its recipe) through a per-host
 * overlay, and install packages from a local file:// apt repository bind-mounted read-only, so no
 * container ever needs a network beyond its veth.
 *
 * No route beyond the veth peer, by construction (asserted by hostsNetwork() in host-commands):
 * - the container's namespace holds lo and its end of the veth with one /30 address, so its only
 *   route is the /30 link route; there is no default route and no IPv6 beyond link-local
 *   (IPv6 is disabled on both veth ends, so not even link-local multicast crosses);
 * - this machine's end does not forward what arrives on it (net.ipv4.conf.VETH.forwarding=0),
 *   so a route the container adds itself (it has CAP_NET_ADMIN for its firewall) leads nowhere;
 * - resolv.conf is not copied in (--resolv-conf=off): nothing to ask for a name.
 *
 * Everything acquired is recorded in /run/syncpi-test/IDX.json with the owning process id, so a
 * run that died (SIGKILL, CI timeout) is reclaimed by the next one instead of leaking namespaces.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, openSync, closeSync, readFileSync, readdirSync, rmSync, rmdirSync, writeFileSync, renameSync, chownSync, chmodSync } from 'node:fs';
import { mkdtemp, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa } from 'execa';

const here = path.dirname(fileURLToPath(import.meta.url));
const HOOK = path.join(here, 'hosts-rootfs.sh');
const CACHE = process.env.SYNCPI_TEST_CACHE ?? '/var/cache/syncpi-test';
const STATE = '/run/syncpi-test';
const SUITE = 'bookworm';
const INCLUDE = ['openssh-server', 'systemd-sysv', 'dbus', 'sudo', 'python3', 'iproute2', 'libpam-systemd'];
/** What the local repository carries: what appliance plans install on a stock system. */
export const REPO_PACKAGES = ['syncthing', 'nftables', 'ca-certificates', 'locales', 'network-manager', 'tzdata', 'unattended-upgrades', 'fail2ban', 'python3-systemd', 'rsync', 'smartmontools'];
const TOOLS = ['mmdebstrap', 'systemd-nspawn', 'nsenter', 'ip', 'ssh-keygen', 'dpkg-scanpackages', 'mount', 'umount'];

export interface TestHost {
  /** Inventory name and container hostname. */
  name: string;
  ip: string;
  port: number;
  user: string;
  /** Private key accepted for `user` (and nothing else). */
  keyPath: string;
  /** `IP ssh-ed25519 AAAA…` for a known_hosts file. */
  knownHostsLine: string;
  /** Fingerprint in OpenSSH form, `SHA256:…`. */
  fingerprint: string;
  /** Container root as seen from this machine (the overlay mount). */
  root: string;
  /** The container's network namespace (`ip netns` name). */
  netns: string;
  /** Milliseconds from spawn to an SSH banner. */
  bootMs: number;
  /** Run argv inside the container as root (all namespaces), no SSH involved. */
  exec(argv: string[], opts?: { input?: string }): Promise<{ stdout: string; stderr: string; exitCode: number }>;
  /** Replace the host key (as a reinstalled Pi would) and restart sshd; updates knownHostsLine/fingerprint. */
  rotateHostKey(): Promise<void>;
  stop(): Promise<void>;
}

export interface StartHostsOptions {
  /** Host names are PREFIX1..PREFIXn (default "pi"). */
  prefix?: string;
  /** Indexes (0-based) of hosts whose dpkg is broken: any package install fails midway. */
  broken?: number[];
  /** Give up when a host has not answered SSH after this long (default 90 s). */
  bootTimeoutMs?: number;
}

interface Slot {
  idx: number;
  /** Set once booted: what a diagnostic login needs. */
  login?: { name: string; ip: string; keyPath: string };
  ns: string;
  veth: string;
  dir: string;
  merged: string;
  child?: ChildProcess;
  pid?: number;
  /** The container's own cgroups, one per hierarchy nspawn uses. */
  cgroups?: string[];
}

/** What /run/syncpi-test/IDX.json keeps of a slot: enough to tear it down from another run. */
type SlotRecord = Pick<Slot, 'idx' | 'ns' | 'merged' | 'pid' | 'dir' | 'cgroups'> & { owner?: number };

const running = new Map<number, Slot>();
let exitHookInstalled = false;

function sh(cmd: string, args: string[]): void {
  const r = spawnSync(cmd, args, { stdio: 'ignore' });
  void r;
}

/**
 * With --keep-unit nspawn roots the container in the cgroup it was started from, so containers
 * started side by side from one process share a cgroup tree: each container's systemd then
 * creates and removes the others' unit cgroups, and units fail at random with 219/CGROUP
 * (systemd-user-sessions among them, leaving /run/nologin: no logins). Every container gets its
 * own cgroup below ours, in each hierarchy systemd tracks processes with.
 */
function containerCgroups(idx: number): string[] {
  const own = new Map<string, string>();
  for (const line of readFileSync('/proc/self/cgroup', 'utf8').split('\n')) {
    const m = /^\d+:([^:]*):(.*)$/.exec(line);
    if (m) own.set(m[1]!, m[2]!);
  }
  const mounts: [string, string][] = existsSync('/sys/fs/cgroup/cgroup.controllers')
    ? [['/sys/fs/cgroup', '']]
    : [
        ['/sys/fs/cgroup/systemd', 'name=systemd'],
        ['/sys/fs/cgroup/unified', ''],
      ];
  return mounts
    .filter(([mnt, key]) => existsSync(mnt) && own.has(key))
    .map(([mnt, key]) => path.join(mnt, own.get(key)!, `syncpi-test-${idx}`));
}

/** Kill whatever still runs in a container's cgroups, then remove them, deepest first. */
function removeCgroups(dirs: string[]): void {
  for (const top of dirs) {
    if (!existsSync(top)) continue;
    const all: string[] = [];
    const walk = (d: string): void => {
      all.push(d);
      for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(d, e.name));
    };
    walk(top);
    for (const d of all) {
      for (const pid of readFileSync(path.join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean)) {
        try {
          process.kill(Number(pid), 'SIGKILL');
        } catch {
          /* already gone */
        }
      }
    }
    for (const d of all.reverse()) {
      // A killed process leaves its cgroup a moment later.
      for (let i = 0; i < 50; i++) {
        try {
          rmdirSync(d);
          break;
        } catch {
          spawnSync('sleep', ['0.1']);
        }
      }
    }
  }
}

/** Synchronous teardown: usable from an 'exit' handler and for reclaiming a dead run's leftovers. */
function teardownSync(s: SlotRecord): void {
  if (s.pid) {
    try {
      process.kill(s.pid, 'SIGKILL');
    } catch {
      /* already gone */
    }
  }
  // The container's init dies with its pid namespace once nspawn is gone; give the kernel a moment.
  for (let i = 0; i < 50 && s.pid && pidAlive(s.pid); i++) spawnSync('sleep', ['0.1']);
  if (s.cgroups) removeCgroups(s.cgroups);
  sh('umount', ['-l', s.merged]);
  // Deleting our end destroys the pair at once; namespace teardown alone is asynchronous.
  sh('ip', ['link', 'delete', `spt${s.idx}h`]);
  sh('ip', ['netns', 'delete', s.ns]);
  if (s.dir) rmSync(s.dir, { recursive: true, force: true });
  rmSync(path.join(STATE, `${s.idx}.json`), { force: true });
}

function pidAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.on('exit', () => {
    for (const s of running.values()) teardownSync(s);
    running.clear();
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      for (const s of running.values()) teardownSync(s);
      running.clear();
      process.exit(sig === 'SIGINT' ? 130 : 143);
    });
  }
}

async function requireTools(): Promise<void> {
  const missing: string[] = [];
  for (const t of TOOLS) {
    const r = await execa('sh', ['-c', 'command -v "$1"', 'sh', t], { reject: false });
    if (r.exitCode !== 0) missing.push(t);
  }
  if (missing.length) {
    throw new Error(`test hosts need ${missing.join(', ')} (apt-get install mmdebstrap systemd-container util-linux iproute2 openssh-client dpkg-dev)`);
  }
  if (process.getuid?.() !== 0) throw new Error('test hosts need root (network namespaces, overlay mounts, systemd-nspawn)');
}

/** The machine's own apt sources, handed to mmdebstrap as they are: no mirror is named here. */
function aptSourceFiles(): string[] {
  const out: string[] = [];
  if (existsSync('/etc/apt/sources.list') && /^\s*deb\s/m.test(readFileSync('/etc/apt/sources.list', 'utf8'))) out.push('/etc/apt/sources.list');
  const d = '/etc/apt/sources.list.d';
  if (existsSync(d)) for (const f of readdirSync(d).sort()) if (/\.(sources|list)$/.test(f)) out.push(path.join(d, f));
  if (!out.length) throw new Error('no apt sources found in /etc/apt to build the test rootfs from');
  return out;
}

/** Build (once) the rootfs and local repository; returns their paths. */
export async function ensureRootfs(): Promise<{ rootfs: string; repo: string }> {
  const sources = aptSourceFiles();
  const key = createHash('sha256')
    .update(JSON.stringify({ SUITE, INCLUDE, REPO_PACKAGES, hook: readFileSync(HOOK, 'utf8'), sources: sources.map((f) => readFileSync(f, 'utf8')) }))
    .digest('hex')
    .slice(0, 16);
  const base = path.join(CACHE, `${SUITE}-amd64-${key}`);
  const rootfs = path.join(base, 'rootfs');
  const repo = path.join(base, 'repo');
  if (existsSync(path.join(base, 'complete'))) return { rootfs, repo };

  mkdirSync(CACHE, { recursive: true });
  const tmp = `${base}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp);
  try {
    await execa(
      'mmdebstrap',
      [
        '--variant=apt',
        '--arch=amd64',
        `--include=${INCLUDE.join(',')}`,
        // Keep the lists of the local repository the hook switches apt to.
        '--skip=cleanup/apt/lists',
        `--customize-hook=sh ${HOOK} "$1"`,
        SUITE,
        path.join(tmp, 'rootfs'),
        ...sources,
      ],
      { env: { REPO_PACKAGES: REPO_PACKAGES.join(' ') }, all: true },
    ).catch((e: { all?: string; message: string }) => {
      throw new Error(`building the test rootfs failed: ${e.message}\n${(e.all ?? '').split('\n').slice(-30).join('\n')}`);
    });
    // The repository lives beside the rootfs and is bind-mounted read-only into every host.
    renameSync(path.join(tmp, 'rootfs/srv/syncpi-repo'), path.join(tmp, 'repo'));
    mkdirSync(path.join(tmp, 'rootfs/srv/syncpi-repo'));
    writeFileSync(path.join(tmp, 'complete'), new Date().toISOString() + '\n');
    try {
      renameSync(tmp, base);
    } catch {
      // Another run finished the same build first; theirs is identical.
      rmSync(tmp, { recursive: true, force: true });
    }
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    throw e;
  }
  return { rootfs, repo };
}

/** Reclaim slots left by runs whose process is gone. */
function reclaimStale(): void {
  if (!existsSync(STATE)) return;
  for (const f of readdirSync(STATE)) {
    if (!f.endsWith('.json')) continue;
    try {
      const rec = JSON.parse(readFileSync(path.join(STATE, f), 'utf8')) as SlotRecord & { owner: number };
      if (!pidAlive(rec.owner)) teardownSync(rec);
    } catch {
      rmSync(path.join(STATE, f), { force: true });
    }
  }
}

/** Claim a free index atomically: the state file is created exclusively. */
function claimSlot(dir: string): Slot {
  mkdirSync(STATE, { recursive: true });
  for (let idx = 1; idx < 250; idx++) {
    const file = path.join(STATE, `${idx}.json`);
    let fd: number;
    try {
      fd = openSync(file, 'wx');
    } catch {
      continue;
    }
    closeSync(fd);
    const ns = `spt${idx}`;
    if (existsSync(`/run/netns/${ns}`)) {
      // A namespace nobody records: leave it alone, take another index.
      continue;
    }
    const hostDir = path.join(dir, `h${idx}`);
    const slot: Slot = { idx, ns, veth: `spt${idx}h`, dir: hostDir, merged: path.join(hostDir, 'root') };
    recordSlot(slot);
    return slot;
  }
  throw new Error('no free test-host slot (250 in use?)');
}

function recordSlot(s: Slot): void {
  writeFileSync(path.join(STATE, `${s.idx}.json`), JSON.stringify({ owner: process.pid, idx: s.idx, ns: s.ns, merged: s.merged, pid: s.pid, dir: s.dir, cgroups: s.cgroups }));
}

async function run(cmd: string, args: string[]): Promise<void> {
  await execa(cmd, args);
}

function waitForBanner(ip: string, port: number, deadline: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const attempt = (): void => {
      if (Date.now() > deadline) {
        reject(new Error(`no SSH banner from ${ip}:${port} in time`));
        return;
      }
      const sock = net.connect({ host: ip, port, timeout: 1000 });
      let buf = '';
      const retry = (): void => {
        sock.destroy();
        setTimeout(attempt, 200);
      };
      sock.on('data', (d) => {
        buf += d.toString('latin1');
        if (buf.startsWith('SSH-')) {
          sock.destroy();
          resolve();
        }
      });
      sock.on('error', retry);
      sock.on('timeout', retry);
      sock.on('end', retry);
    };
    attempt();
  });
}

/** One key login running `true`; the reason when it fails. */
async function loginProblem(ip: string, keyPath: string, knownHosts: string | undefined): Promise<string | undefined> {
  const hostKeyOpts = knownHosts ? ['-o', `UserKnownHostsFile=${knownHosts}`, '-o', 'StrictHostKeyChecking=yes'] : ['-o', 'UserKnownHostsFile=/dev/null', '-o', 'StrictHostKeyChecking=no'];
  const r = await execa(
    'ssh',
    ['-F', 'none', '-i', keyPath, '-o', 'BatchMode=yes', '-o', 'IdentitiesOnly=yes', '-o', 'LogLevel=ERROR', ...hostKeyOpts, '-o', 'ConnectTimeout=5', `pi@${ip}`, 'true'],
    { reject: false, stdin: 'ignore', timeout: 15_000 },
  );
  return r.exitCode === 0 ? undefined : `${r.stderr.trim().split('\n').slice(-3).join(' | ')} (exit ${r.exitCode ?? r.signal})`;
}

async function hostDiagnostics(slot: Slot): Promise<string> {
  try {
    // What sshd said, and why the system may not take logins yet: unfinished jobs, failed units, /run/nologin.
    const script = [
      'journalctl -b -u ssh.service -u systemd-logind.service -n 12 --no-pager',
      'echo "state: $(systemctl is-system-running)"',
      'systemctl list-jobs --no-pager --no-legend | head -n 10',
      'systemctl --failed --no-pager --no-legend',
      'ls -l /run/nologin 2>&1',
      'systemctl status --no-pager -n 5 systemd-user-sessions.service 2>&1 | head -n 12',
    ].join('; ');
    return (await inContainer(slot, ['sh', '-c', script])).stdout;
  } catch {
    return '(container gone)';
  }
}

async function waitForLogin(name: string, ip: string, keyPath: string, knownLine: string, slot: Slot, deadline: number): Promise<void> {
  const kh = path.join(slot.dir, 'known_hosts');
  writeFileSync(kh, knownLine + '\n');
  let last: string | undefined;
  for (let attempt = 0; Date.now() < deadline; attempt++) {
    last = await loginProblem(ip, keyPath, kh);
    if (!last) return;
    await new Promise((res) => setTimeout(res, Math.min(200 * (attempt + 1), 2000)));
  }
  throw new Error(`test host ${name} answers with an SSH banner but no login succeeds: ${last}\n${await hostDiagnostics(slot)}`);
}

/** Run argv inside the container as root, in all its namespaces; no SSH involved. */
function inContainer(slot: Slot, argv: string[], opts: { input?: string; timeout?: number } = {}) {
  return execa('nsenter', ['-t', String(leaderPid(slot.pid!)), '-m', '-u', '-i', '-n', '-p', '--', ...argv], { reject: false, ...opts });
}

/** PID of the container's init (PID 1 inside), a direct child of systemd-nspawn. */
function leaderPid(nspawnPid: number): number {
  for (const t of readdirSync(`/proc/${nspawnPid}/task`)) {
    const kids = readFileSync(`/proc/${nspawnPid}/task/${t}/children`, 'utf8').trim().split(/\s+/).filter(Boolean);
    if (kids[0]) return Number(kids[0]);
  }
  throw new Error(`container of nspawn ${nspawnPid} has no init process`);
}

async function writeHostKey(root: string): Promise<{ line: string; fingerprint: string }> {
  const key = path.join(root, 'etc/ssh/ssh_host_ed25519_key');
  rmSync(key, { force: true });
  rmSync(key + '.pub', { force: true });
  await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', '', '-f', key]);
  const pub = (await readFile(key + '.pub', 'utf8')).trim().split(/\s+/).slice(0, 2).join(' ');
  const fp = (await execa('ssh-keygen', ['-l', '-E', 'sha256', '-f', key + '.pub'])).stdout.split(/\s+/)[1]!;
  return { line: pub, fingerprint: fp };
}

async function bootOne(slot: Slot, name: string, base: { rootfs: string; repo: string }, keyPath: string, broken: boolean, timeoutMs: number): Promise<TestHost> {
  const upper = path.join(slot.dir, 'upper');
  const work = path.join(slot.dir, 'work');
  mkdirSync(upper, { recursive: true });
  mkdirSync(work, { recursive: true });
  mkdirSync(slot.merged, { recursive: true });
  await run('mount', ['-t', 'overlay', 'overlay', '-o', `lowerdir=${base.rootfs},upperdir=${upper},workdir=${work}`, slot.merged]);

  const ip = `10.213.${slot.idx}.2`;
  // A veth of a slot whose namespace is still being destroyed by the kernel: ours, remove it.
  await execa('ip', ['link', 'delete', slot.veth], { reject: false });
  await run('ip', ['netns', 'add', slot.ns]);
  await run('ip', ['link', 'add', slot.veth, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', slot.ns]);
  await run('ip', ['addr', 'add', `10.213.${slot.idx}.1/30`, 'dev', slot.veth]);
  writeFileSync(`/proc/sys/net/ipv4/conf/${slot.veth}/forwarding`, '0');
  writeFileSync(`/proc/sys/net/ipv6/conf/${slot.veth}/disable_ipv6`, '1');
  await run('ip', ['netns', 'exec', slot.ns, 'sh', '-c', 'echo 1 > /proc/sys/net/ipv6/conf/eth0/disable_ipv6']);
  await run('ip', ['link', 'set', slot.veth, 'up']);
  await run('ip', ['-n', slot.ns, 'addr', 'add', `${ip}/30`, 'dev', 'eth0']);
  await run('ip', ['-n', slot.ns, 'link', 'set', 'eth0', 'up']);
  await run('ip', ['-n', slot.ns, 'link', 'set', 'lo', 'up']);

  const root = slot.merged;
  let hk = await writeHostKey(root);
  const ak = path.join(root, 'home/pi/.ssh/authorized_keys');
  writeFileSync(ak, readFileSync(keyPath + '.pub'));
  chownSync(ak, 1000, 1000);
  chmodSync(ak, 0o600);
  writeFileSync(path.join(root, 'etc/hostname'), name + '\n');
  writeFileSync(path.join(root, 'etc/hosts'), `127.0.0.1\tlocalhost\n127.0.1.1\t${name}\n::1\tlocalhost ip6-localhost ip6-loopback\n`);
  if (broken) {
    // Every dpkg run started by apt fails: an install step breaks after earlier steps ran.
    writeFileSync(path.join(root, 'etc/apt/apt.conf.d/99syncpi-test-broken'), 'DPkg::Pre-Invoke { "echo simulated dpkg failure >&2; exit 100"; };\n');
  }

  slot.cgroups = containerCgroups(slot.idx);
  removeCgroups(slot.cgroups);
  for (const cg of slot.cgroups) mkdirSync(cg);
  recordSlot(slot);

  const log = openSync(path.join(slot.dir, 'console.log'), 'w');
  const t0 = Date.now();
  // The shell moves itself into the container's cgroups, then becomes nspawn.
  const enter = 'for cg in $SYNCPI_CGROUPS; do echo $$ > "$cg/cgroup.procs" || exit 125; done; exec "$@"';
  const child = spawn(
    'sh',
    [
      '-c',
      enter,
      'sh',
      'systemd-nspawn',
      '--boot',
      // No systemd on this machine's PID 1 to allocate a scope: stay in our cgroup, skip machined.
      '--register=no',
      '--keep-unit',
      '--quiet',
      `--machine=spt${slot.idx}`,
      `--hostname=${name}`,
      '-D',
      root,
      `--network-namespace-path=/run/netns/${slot.ns}`,
      // The namespace is the container's own: let it load its firewall and configure its links, as a Pi does.
      '--capability=CAP_NET_ADMIN',
      `--bind-ro=${base.repo}:/srv/syncpi-repo`,
      '--resolv-conf=off',
      '--timezone=off',
      '--link-journal=no',
      '--console=read-only',
    ],
    { stdio: ['ignore', log, log], detached: true, env: { ...process.env, SYNCPI_CGROUPS: slot.cgroups.join(' ') } },
  );
  closeSync(log);
  child.unref();
  slot.child = child;
  slot.pid = child.pid;
  recordSlot(slot);
  let exited: string | undefined;
  child.once('exit', (code, sig) => {
    exited = `systemd-nspawn exited (${sig ?? code})`;
  });

  const deadline = Date.now() + timeoutMs;
  try {
    await Promise.race([
      waitForBanner(ip, 22, deadline),
      new Promise<never>((_, reject) => {
        const t = setInterval(() => {
          if (exited) {
            clearInterval(t);
            reject(new Error(exited));
          } else if (Date.now() > deadline) clearInterval(t);
        }, 100);
        t.unref();
      }),
    ]);
  } catch (e) {
    const tail = existsSync(path.join(slot.dir, 'console.log')) ? readFileSync(path.join(slot.dir, 'console.log'), 'utf8').split('\n').slice(-15).join('\n') : '';
    throw new Error(`test host ${name} did not boot: ${(e as Error).message}\n${tail}`);
  }
  // A banner is not a usable host: sshd can still drop sessions while the container finishes
  // booting. Ready means a real key login ran a command; if it never does, say why.
  await waitForLogin(name, ip, keyPath, `${ip} ${hk.line}`, slot, deadline);
  slot.login = { name, ip, keyPath };
  // A unit that failed at boot makes every later failure on this host ambiguous: refuse the host.
  const state = await inContainer(slot, ['systemctl', 'is-system-running', '--wait'], { timeout: Math.max(1000, deadline - Date.now()) });
  if (state.stdout.trim() !== 'running') throw new Error(`test host ${name} booted ${state.stdout.trim() || 'into an unknown state'}\n${await hostDiagnostics(slot)}`);
  const bootMs = Date.now() - t0;

  const host: TestHost = {
    name,
    ip,
    port: 22,
    user: 'pi',
    keyPath,
    knownHostsLine: `${ip} ${hk.line}`,
    fingerprint: hk.fingerprint,
    root,
    netns: slot.ns,
    bootMs,
    async exec(argv, opts) {
      const r = await inContainer(slot, argv, { input: opts?.input });
      return { stdout: r.stdout, stderr: r.stderr, exitCode: r.exitCode ?? -1 };
    },
    async rotateHostKey() {
      hk = await writeHostKey(root);
      const r = await host.exec(['systemctl', 'restart', 'ssh.service']);
      if (r.exitCode !== 0) throw new Error(`restarting sshd on ${name}: ${r.stderr}`);
      await waitForBanner(ip, 22, Date.now() + 15_000);
      host.knownHostsLine = `${ip} ${hk.line}`;
      host.fingerprint = hk.fingerprint;
    },
    async stop() {
      await stopSlot(slot);
    },
  };
  return host;
}

async function stopSlot(s: Slot): Promise<void> {
  if (!running.has(s.idx)) return;
  running.delete(s.idx);
  const pid = s.pid;
  if (pid && pidAlive(pid)) {
    // SIGTERM asks nspawn for a clean poweroff of the container; SIGKILL if it takes too long.
    try {
      process.kill(pid, 'SIGTERM');
    } catch {
      /* gone */
    }
    for (let i = 0; i < 100 && pidAlive(pid); i++) await new Promise((r) => setTimeout(r, 100));
  }
  teardownSync(s);
}

let runDir: string | undefined;
let clientKey: string | undefined;

/**
 * Boot n hosts in parallel. Each gets the shared client key for user `pi` (passwordless sudo) and
 * its own ed25519 host key. On failure every host of this call is torn down before rethrowing.
 */
export async function startHosts(n: number, opts: StartHostsOptions = {}): Promise<TestHost[]> {
  await requireTools();
  installExitHook();
  reclaimStale();
  const base = await ensureRootfs();
  if (!runDir) {
    runDir = await mkdtemp(path.join(tmpdir(), 'syncpi-hosts-'));
    clientKey = path.join(runDir, 'id_ed25519');
    await run('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'syncpi-test', '-f', clientKey]);
  }
  const prefix = opts.prefix ?? 'pi';
  const slots: Slot[] = [];
  for (let i = 0; i < n; i++) {
    const s = claimSlot(runDir);
    running.set(s.idx, s);
    slots.push(s);
  }
  const results = await Promise.allSettled(
    slots.map((s, i) => bootOne(s, `${prefix}${i + 1}`, base, clientKey!, opts.broken?.includes(i) ?? false, opts.bootTimeoutMs ?? 90_000)),
  );
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed.length) {
    await Promise.all(slots.map(stopSlot));
    throw new Error(failed.map((f) => (f.reason as Error).message).join('\n'));
  }
  return results.map((r) => (r as PromiseFulfilledResult<TestHost>).value);
}

export async function stopAll(): Promise<void> {
  // A host that stopped taking logins during the tests explains their failures: say so, with its sshd log.
  for (const s of running.values()) {
    if (!s.login) continue;
    const problem = await loginProblem(s.login.ip, s.login.keyPath, undefined);
    if (problem) console.log(`# test host ${s.login.name} no longer takes SSH logins: ${problem}\n${(await hostDiagnostics(s)).replace(/^/gm, '#   ')}`);
  }
  await Promise.all([...running.values()].map(stopSlot));
  if (runDir && running.size === 0) {
    rmSync(runDir, { recursive: true, force: true });
    runDir = undefined;
    clientKey = undefined;
  }
}

/**
 * A private link between two hosts' namespaces only (10.214.A.0/30, A = a's slot: a is .1, b is
 * .2), as a LAN behind a bastion: a reaches b on it, this machine has no route to it. Both ends
 * live in the hosts' namespaces, so the link goes when either host stops.
 */
export async function linkHosts(a: TestHost, b: TestHost): Promise<{ aIp: string; bIp: string }> {
  const idx = /^spt(\d+)$/.exec(a.netns)?.[1];
  if (!idx) throw new Error(`not a test host namespace: ${a.netns}`);
  const aIp = `10.214.${idx}.1`;
  const bIp = `10.214.${idx}.2`;
  await run('ip', ['-n', a.netns, 'link', 'add', 'lan0', 'type', 'veth', 'peer', 'name', 'lan0', 'netns', b.netns]);
  for (const [ns, ip] of [[a.netns, aIp], [b.netns, bIp]] as const) {
    await run('ip', ['netns', 'exec', ns, 'sh', '-c', 'echo 1 > /proc/sys/net/ipv6/conf/lan0/disable_ipv6']);
    await run('ip', ['-n', ns, 'addr', 'add', `${ip}/30`, 'dev', 'lan0']);
    await run('ip', ['-n', ns, 'link', 'set', 'lan0', 'up']);
  }
  return { aIp, bIp };
}

/** A known_hosts file holding the current keys of these hosts. */
export async function writeKnownHosts(file: string, hosts: TestHost[]): Promise<string> {
  await writeFile(file, hosts.map((h) => h.knownHostsLine).join('\n') + '\n');
  return file;
}
