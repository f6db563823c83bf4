/** Units that decide whether a first boot on a real Pi ends clean: host key generators, smartd. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { planFromFile } from '../../src/plan/load.js';
import { minimalYaml, writeConfig } from '../helpers/fixtures.js';
import { basePackages } from '../../src/image/recipe.js';

const appliance = () => planFromFile('image/appliance.yaml').plan;

test('exactly one SSH host key generator is enabled: the bases\' own are disabled, the check says so', () => {
  const plan = appliance();
  const generators = plan.files.filter((f) => f.path.startsWith('/etc/systemd/system/') && /^ExecStart=.*ssh-keygen/m.test(f.content));
  assert.deepEqual(generators.map((f) => f.path), ['/etc/systemd/system/syncpi-ssh-host-keys.service']);
  assert.ok(plan.units.enable.includes('syncpi-ssh-host-keys.service'));
  // Debian trixie's openssh-server enables sshd-keygen.service; Raspberry Pi OS enables its own
  for (const u of ['sshd-keygen.service', 'regenerate_ssh_host_keys.service']) assert.ok(plan.units.disable.includes(u), `${u} disabled`);
  assert.ok(!plan.units.enable.some((u) => plan.units.disable.includes(u)), 'nothing both enabled and disabled');
  const check = plan.checks.find((c) => c.description === 'exactly one SSH host key generator is enabled');
  assert.ok(check && check.kind === 'command' && !check.liveOnly, 'a check every target runs, the image rootfs included');
});

test('smartd with nothing to watch does not fail the boot, and only where smartmontools is installed', () => {
  const plan = appliance();
  assert.ok(plan.packages.install.includes('smartmontools'));
  const dropin = plan.files.find((f) => f.path === '/etc/systemd/system/smartmontools.service.d/syncpi.conf');
  assert.ok(dropin, 'a drop-in for smartmontools.service');
  assert.match(dropin.content, /^\[Service\]$/m);
  assert.match(dropin.content, /^Environment="smartd_opts=--quit=never"$/m);
  assert.ok(dropin.notify.includes('daemon-reload'));
  assert.ok(plan.handlers.some((h) => h.name === 'restart-smartd' && h.action === 'restart' && h.unit === 'smartmontools.service'));

  const bare = planFromFile(writeConfig(minimalYaml())).plan;
  assert.ok(!bare.packages.install.includes('smartmontools'));
  assert.equal(bare.files.some((f) => f.path.includes('smartmontools')), false);
  assert.equal(bare.handlers.some((h) => h.name === 'restart-smartd'), false);
});

test('every Debian image carries Wi-Fi (a card may get a network at flash time): firmware, regulatory database, wpa_supplicant', () => {
  const base = basePackages('arm64');
  for (const p of ['firmware-brcm80211', 'wireless-regdb', 'wpasupplicant']) assert.ok(base.includes(p), `${p} in the base layer`);
  assert.ok(base.includes('linux-image-arm64') && basePackages('armhf').includes('linux-image-armmp-lpae'), 'the kernel of each architecture');
});
