/**
 * Values the config accepts, fed to the real programs that consume them: every network checkCidr
 * accepts loads into an nft interval set (in a network namespace of its own), and the drive UUID
 * spelling we write is the one blkid (and so udev's /dev/disk/by-uuid) reports.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { canonicalFsUuid, checkCidr } from '../../src/config/validators.js';
import { CIDR_CASES } from '../helpers/cidr-cases.js';
import { tempDir } from '../helpers/fixtures.js';

function run(argv: string[]): { status: number | null; out: string } {
  const r = spawnSync(argv[0]!, argv.slice(1), { encoding: 'utf8' });
  return { status: r.status, out: `${r.stdout}${r.stderr}` };
}

function need(tool: string): void {
  assert.equal(spawnSync('sh', ['-c', `command -v ${tool}`]).status, 0, `${tool} is required for this test`);
}

test('nft -c loads every network checkCidr accepts, one interval set element each', () => {
  need('nft');
  need('unshare');
  const dir = tempDir();
  const accepted = CIDR_CASES.filter(([s]) => checkCidr(s) === null).map(([s]) => s);
  assert.ok(accepted.length >= 10);
  for (const cidr of accepted) {
    const type = cidr.includes(':') ? 'ipv6_addr' : 'ipv4_addr';
    const file = join(dir, 'set.nft');
    writeFileSync(file, `table inet t {\n\tset s {\n\t\ttype ${type}\n\t\tflags interval\n\t\telements = { ${cidr} }\n\t}\n}\n`);
    const r = run(['unshare', '-n', 'nft', '-c', '-f', file]);
    assert.equal(r.status, 0, `${cidr}: ${r.out}`);
  }
  // The table's refusals include ones nft itself refuses: the check is not merely stricter.
  const refusedByNft = ['fe80::%eth0/64', '10.0.0.0/08', 'fd00::/129'];
  for (const cidr of refusedByNft) {
    assert.notEqual(checkCidr(cidr), null, cidr);
    const file = join(dir, 'set.nft');
    writeFileSync(file, `table inet t {\n\tset s {\n\t\ttype ${cidr.includes(':') ? 'ipv6_addr' : 'ipv4_addr'}\n\t\tflags interval\n\t\telements = { ${cidr} }\n\t}\n}\n`);
    assert.notEqual(run(['unshare', '-n', 'nft', '-c', '-f', file]).status, 0, `nft refuses ${cidr}`);
  }
  rmSync(dir, { recursive: true, force: true });
});

function blkidUuid(image: string): string {
  const r = run(['blkid', '-p', '-s', 'UUID', '-o', 'value', image]);
  assert.equal(r.status, 0, r.out);
  return r.out.trim();
}

test('the drive UUID is written as blkid reports it, whichever case the user typed', () => {
  const dir = tempDir();
  const image = (name: string) => {
    const p = join(dir, name);
    writeFileSync(p, '');
    assert.equal(run(['truncate', '-s', '64M', p]).status, 0);
    return p;
  };
  try {
    need('blkid');
    need('mkfs.ext4');
    const ext4 = image('ext4.img');
    const uuid = '0F3C2A51-8D1E-4B7A-9C2D-1E2F3A4B9B2E';
    assert.equal(run(['mkfs.ext4', '-q', '-U', uuid, ext4]).status, 0);
    assert.equal(canonicalFsUuid(uuid), blkidUuid(ext4), 'ext4');
    need('mkfs.vfat');
    const vfat = image('vfat.img');
    const serial = randomBytes(4).toString('hex');
    assert.equal(run(['mkfs.vfat', '-i', serial, vfat]).status, 0);
    assert.equal(canonicalFsUuid(`${serial.slice(0, 4)}-${serial.slice(4)}`.toLowerCase()), blkidUuid(vfat), 'vfat');
    // mkfs.exfat and mkntfs choose the serial themselves: feed back the lowercase form of theirs.
    for (const [tool, args] of [['mkfs.exfat', []], ['mkntfs', ['-F', '-Q']]] as const) {
      need(tool);
      const img = image(`${tool}.img`);
      assert.equal(run([tool, ...args, img]).status, 0, tool);
      const got = blkidUuid(img);
      assert.equal(canonicalFsUuid(got.toLowerCase()), got, tool);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});
