/**
 * health.alert: a timer on the Pi that checks the storage's free space, the drive's SMART verdict
 * and the power supply, and reports each change of that state to a URL and/or a command. Off
 * unless health.alert is set; without it, none of its files or units are in the plan, so the
 * converger removes them from a Pi that had them.
 */
import { smartGrepAwk } from '../../health/smart.js';
import { SYNCPI_LIB, type Feature, type FeatureContext } from '../context.js';

export const HEALTH_SCRIPT = `${SYNCPI_LIB}/health-alert`;
export const HEALTH_UNIT = 'syncpi-health';
/** What the last delivered report said: the problems, one a line (empty: ok). */
export const HEALTH_STATE = '/var/lib/syncpi/health-state';

/** The paths the script reads and writes: the Pi's, or a test's scratch ones. */
export interface HealthScriptPaths {
  mount: string;
  stateFile: string;
  /** Where the hwmon sensors are (/sys/class/hwmon). */
  hwmon: string;
}

/** The alert script for this config, reading and writing PATHS. */
export function healthAlertScript(ctx: FeatureContext, paths: HealthScriptPaths): string {
  const alert = ctx.config.health.alert;
  if (!alert) throw new Error('health.alert is not set');
  return ctx.render('health/health-alert.sh.hbs', {
    health_mount: paths.mount,
    health_drive: ctx.derived.driveMount !== null,
    health_min_free: ctx.config.health.min_free_percent,
    health_state_file: paths.stateFile,
    health_hwmon: paths.hwmon,
    health_url: alert.url ?? '',
    health_command: alert.command ?? null,
    health_smart_awk: smartGrepAwk(),
  });
}

export const health: Feature = {
  name: 'health',
  contribute(ctx) {
    const alert = ctx.config.health.alert;
    if (!alert) return {};
    const restart = `restart-${HEALTH_UNIT}.timer`;
    const script = healthAlertScript(ctx, { mount: ctx.derived.storageRoot, stateFile: HEALTH_STATE, hwmon: '/sys/class/hwmon' });
    const targets = [alert.url ? 'the alert URL' : null, alert.command ? 'the alert command' : null].filter(Boolean).join(' and ');
    return {
      install: alert.url ? ['curl'] : [],
      files: [
        { path: HEALTH_SCRIPT, mode: '0755', owner: 'root', group: 'root', content: script, notify: [] },
        { path: `/etc/systemd/system/${HEALTH_UNIT}.service`, mode: '0644', owner: 'root', group: 'root', content: ctx.render('health/syncpi-health.service.hbs', { health_script: HEALTH_SCRIPT }), notify: ['daemon-reload'] },
        { path: `/etc/systemd/system/${HEALTH_UNIT}.timer`, mode: '0644', owner: 'root', group: 'root', content: ctx.render('health/syncpi-health.timer.hbs', { health_interval: alert.interval }), notify: ['daemon-reload', restart] },
      ],
      enable: [`${HEALTH_UNIT}.timer`],
      handlers: [{ name: restart, action: 'restart', unit: `${HEALTH_UNIT}.timer`, liveOnly: true }],
      checks: [{ kind: 'service-active', unit: `${HEALTH_UNIT}.timer`, description: 'the drive health alert checks on its timer' }],
      notes: [`every ${alert.interval} min the Pi checks free space (below ${ctx.config.health.min_free_percent}%), SMART and under-voltage, and reports each change to ${targets}`],
    };
  },
};
