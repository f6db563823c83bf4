/** Boot services from appliance.yaml: a unit (and a timer when scheduled) per entry. */
import type { PlanCheck } from '../types.js';
import type { Contribution, Feature } from '../context.js';
import { mountUnitName, serviceUnitBase } from '../units.js';

export const services: Feature = {
  name: 'services',
  contribute(ctx) {
    const { config } = ctx;
    const out: Required<Pick<Contribution, 'files' | 'enable' | 'disable' | 'handlers' | 'checks'>> = { files: [], enable: [], disable: [], handlers: [], checks: [] };
    for (const [name, s] of Object.entries(config.services).sort(([a], [b]) => a.localeCompare(b))) {
      const unit = serviceUnitBase(name);
      const daemon = s.type === 'simple' && !s.schedule;
      const vars = {
        name,
        description: s.description,
        exec: s.exec ?? null,
        values: s.values,
        env: Object.entries(s.values).sort(([a], [b]) => a.localeCompare(b)).map(([k, v]) => `${k}=${String(v)}`),
        user: s.user,
        schedule: s.schedule ?? null,
        uses_drive: s.uses_drive,
        drive_mount: config.drive?.mount ?? null,
        drive_mount_unit: config.drive ? mountUnitName(config.drive.mount) : null,
        type: s.schedule ? 'oneshot' : s.type,
        remain: !s.schedule && s.type === 'oneshot',
        daemon,
      };
      // Named by the full unit name: "restart-syncpi-x-timer" would be both x's timer and x-timer's service.
      const restart = `restart-${unit}.service`;
      const restartTimer = `restart-${unit}.timer`;
      out.files.push({ path: `/etc/systemd/system/${unit}.service`, mode: '0644', owner: 'root', group: 'root', content: ctx.render(`services/${s.template}.service.hbs`, vars), notify: s.schedule ? ['daemon-reload'] : ['daemon-reload', restart] });
      const active = s.schedule ? `${unit}.timer` : `${unit}.service`;
      if (s.schedule) {
        out.files.push({ path: `/etc/systemd/system/${unit}.timer`, mode: '0644', owner: 'root', group: 'root', content: ctx.render('services/timer.timer.hbs', vars), notify: ['daemon-reload', restartTimer] });
        out.handlers.push({ name: restartTimer, action: 'restart', unit: `${unit}.timer`, liveOnly: true });
      } else {
        out.handlers.push({ name: restart, action: 'restart', unit: `${unit}.service`, liveOnly: true });
      }
      (s.enabled ? out.enable : out.disable).push(active);
      if (s.enabled) out.checks.push({ kind: 'service-active', unit: active, description: `boot service ${name} is active` } satisfies PlanCheck);
    }
    return out;
  },
};
