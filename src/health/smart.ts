/**
 * Drive health from smartctl's JSON output (`smartctl --json -H -A -i DEV`), and the Pi's power
 * flags. Pure: the remote probe (src/fleet/status.ts) gathers the raw text, this reads it, so
 * the verdicts are tested on real-shaped samples without a disk.
 *
 * A verdict is one of: healthy (SMART passed, no counter that predicts failure is above 0),
 * warning (passed, but such a counter is not 0, or an NVMe warning bit is set), failing (SMART's
 * own overall assessment failed), unavailable (no SMART data: not a disk, a USB bridge without
 * pass-through, no smartctl) — never read as healthy, never as a failure.
 */

export type HealthState = 'healthy' | 'warning' | 'failing' | 'unavailable';

export interface SmartReport {
  state: HealthState;
  /** One line: why this state (the counters that are not 0, or why there is no data). */
  reason: string;
  device?: string;
  /** smartctl's device type that answered (e.g. "sat" through a USB bridge). */
  type?: string;
  model?: string;
  temperatureC?: number;
  /** ATA attributes 5, 197, 198, 199 (raw values), when the drive reports them. */
  reallocatedSectors?: number;
  pendingSectors?: number;
  offlineUncorrectable?: number;
  udmaCrcErrors?: number;
  /** NVMe critical_warning bit field (0: none). */
  nvmeCriticalWarning?: number;
  nvmeMediaErrors?: number;
}

/** The ATA attributes whose raw value above 0 predicts failure (and what to call them). */
export const PREDICTORS: { id: number; key: keyof SmartReport; what: string }[] = [
  { id: 5, key: 'reallocatedSectors', what: 'reallocated sectors' },
  { id: 197, key: 'pendingSectors', what: 'pending sectors' },
  { id: 198, key: 'offlineUncorrectable', what: 'offline-uncorrectable sectors' },
  // Usually the cable or the USB bridge rather than the platters, but data goes bad all the same.
  { id: 199, key: 'udmaCrcErrors', what: 'UDMA CRC errors' },
];

export const NVME_WARNINGS: [number, string][] = [
  [0x01, 'spare capacity below threshold'],
  [0x02, 'temperature beyond threshold'],
  [0x04, 'reliability degraded'],
  [0x08, 'read-only mode'],
  [0x10, 'volatile memory backup failed'],
  [0x20, 'persistent memory region read-only'],
];

type Json = Record<string, unknown>;
const obj = (v: unknown): Json | undefined => (v && typeof v === 'object' && !Array.isArray(v) ? (v as Json) : undefined);
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/** smartctl's first error message, if it gave one (e.g. "Unable to detect device type"). */
function firstMessage(sc: Json | undefined): string | undefined {
  const msgs = sc?.messages;
  if (!Array.isArray(msgs)) return undefined;
  const m = msgs.map(obj).find((x) => typeof x?.string === 'string');
  return m ? String(m.string) : undefined;
}

/** Read one smartctl --json output; text that is not smartctl's JSON is "unavailable", with why. */
export function parseSmartctl(text: string): SmartReport {
  let j: Json | undefined;
  try {
    j = obj(JSON.parse(text));
  } catch {
    j = undefined;
  }
  if (!j || !obj(j.smartctl)) return { state: 'unavailable', reason: 'smartctl gave no JSON output' };
  const sc = obj(j.smartctl);
  const dev = obj(j.device);
  const base: Partial<SmartReport> = {};
  if (typeof dev?.name === 'string') base.device = dev.name;
  if (typeof dev?.type === 'string') base.type = dev.type;
  if (typeof j.model_name === 'string') base.model = j.model_name;
  const temp = num(obj(j.temperature)?.current);
  if (temp !== undefined) base.temperatureC = temp;

  const status = obj(j.smart_status);
  const passed = status?.passed;
  if (typeof passed !== 'boolean') {
    const why = firstMessage(sc) ?? (obj(j.smart_support)?.available === false ? 'the device has no SMART' : 'no SMART health in the output');
    return { ...base, state: 'unavailable', reason: `no SMART data${base.device ? ` for ${base.device}` : ''}: ${why}` };
  }
  const concerns: string[] = [];
  const table = obj(j.ata_smart_attributes)?.table;
  if (Array.isArray(table)) {
    for (const p of PREDICTORS) {
      const a = table.map(obj).find((x) => x?.id === p.id);
      const raw = num(obj(a?.raw)?.value);
      if (raw === undefined) continue;
      (base as Record<string, number>)[p.key] = raw;
      if (raw > 0) concerns.push(`${raw} ${p.what}`);
    }
  }
  const nvme = obj(j.nvme_smart_health_information_log);
  if (nvme) {
    const cw = num(nvme.critical_warning) ?? 0;
    base.nvmeCriticalWarning = cw;
    const media = num(nvme.media_errors);
    if (media !== undefined) base.nvmeMediaErrors = media;
    for (const [bit, what] of NVME_WARNINGS) if (cw & bit) concerns.push(`NVMe: ${what}`);
    if (media) concerns.push(`${media} NVMe media errors`);
  }
  if (!passed) return { ...base, state: 'failing', reason: `SMART overall health: FAILED${concerns.length ? `; ${concerns.join(', ')}` : ''}` };
  if (concerns.length) return { ...base, state: 'warning', reason: `SMART passed, but ${concerns.join(', ')}` };
  return { ...base, state: 'healthy', reason: 'SMART passed; no reallocated, pending or uncorrectable sectors' };
}

/**
 * Of several smartctl attempts on one device (auto-detected type, then -d sat for USB bridges),
 * the first that has SMART data; else the first one's reason.
 */
export function bestSmart(outputs: string[]): SmartReport {
  const reports = outputs.map(parseSmartctl);
  return reports.find((r) => r.state !== 'unavailable') ?? reports[0] ?? { state: 'unavailable', reason: 'smartctl did not run' };
}

export interface PowerReport {
  /** Undervoltage now or since boot, from whichever source the Pi has. */
  undervoltage: boolean;
  throttled: boolean;
  /** What was read: "vcgencmd", "hwmon", "kernel log"; empty: none of them (not a Pi, or no access). */
  sources: string[];
  reason: string;
}

/** vcgencmd get_throttled: "throttled=0x50005" (bits: 0 under-voltage now, 16 since boot; 2/18 throttled). */
export function parseThrottled(line: string): { undervoltage: boolean; throttled: boolean } | null {
  const m = /throttled=(0x[0-9a-fA-F]+)/.exec(line);
  if (!m) return null;
  const v = Number.parseInt(m[1]!, 16);
  return { undervoltage: (v & 0x1) !== 0 || (v & 0x10000) !== 0, throttled: (v & 0x4) !== 0 || (v & 0x40000) !== 0 || (v & 0x2) !== 0 || (v & 0x20000) !== 0 };
}

/**
 * The Pi's power facts: vcgencmd's flags (the firmware's view), the rpi_volt hwmon alarm
 * (in0_lcrit_alarm, mainline kernels), and the count of "Undervoltage detected!" lines in this
 * boot's kernel log. Each is optional; a source that is missing says nothing either way.
 */
export function powerReport(facts: { throttled?: string; hwmonAlarm?: string; kernelUndervoltage?: string }): PowerReport {
  const sources: string[] = [];
  const why: string[] = [];
  let under = false;
  let throttled = false;
  const t = facts.throttled ? parseThrottled(facts.throttled) : null;
  if (t) {
    sources.push('vcgencmd');
    under ||= t.undervoltage;
    throttled ||= t.throttled;
    if (t.undervoltage) why.push(`firmware reports under-voltage (${facts.throttled!.trim()})`);
    if (t.throttled) why.push('the CPU was throttled');
  }
  if (facts.hwmonAlarm !== undefined && /^[01]$/.test(facts.hwmonAlarm.trim())) {
    sources.push('hwmon');
    if (facts.hwmonAlarm.trim() === '1') {
      under = true;
      why.push('rpi_volt in0_lcrit_alarm is set');
    }
  }
  const n = facts.kernelUndervoltage !== undefined && /^\d+$/.test(facts.kernelUndervoltage.trim()) ? Number(facts.kernelUndervoltage.trim()) : undefined;
  if (n !== undefined) {
    sources.push('kernel log');
    if (n > 0) {
      under = true;
      why.push(`${n} "Undervoltage detected!" in this boot's kernel log`);
    }
  }
  const reason = why.length ? why.join('; ') : sources.length ? 'no under-voltage or throttling' : 'no power data (not a Pi, or not readable)';
  return { undervoltage: under, throttled, sources, reason };
}

/** Free space against a threshold in percent of the file system's size. */
export function freeSpaceLow(freeBytes: number | undefined, sizeBytes: number | undefined, minFreePercent: number): boolean {
  if (freeBytes === undefined || !sizeBytes) return false;
  return (freeBytes / sizeBytes) * 100 < minFreePercent;
}

/**
 * The same verdict as parseSmartctl, as an awk program over smartctl's grep-able JSON
 * (`smartctl --json=g`: one `json.PATH = VALUE;` line per value), for the Pi's health alert, which
 * has neither jq nor node. Generated from PREDICTORS and NVME_WARNINGS, so the alert and
 * `syncpi status` cannot count different things. Prints "STATE REASON" (STATE as HealthState;
 * the reason only for failing and warning). POSIX awk: no bit operations, so bits by division.
 */
export function smartGrepAwk(): string {
  const attr = (p: (typeof PREDICTORS)[number]) => `  if ((${p.id} in v) && v[${p.id}] + 0 > 0) add(v[${p.id}] " ${p.what}")`;
  const nvme = ([bit, what]: [number, string]) => `    if (int(cw / ${bit}) % 2 == 1) add("NVMe: ${what}")`;
  return [
    'function add(s) { c = (c == "" ? s : c ", " s) }',
    String.raw`{ sub(/;[ \t]*$/, "") }`,
    '$1 == "json.smart_status.passed" { passed = $3 }',
    String.raw`$1 ~ /^json\.ata_smart_attributes\.table\[[0-9]+\]\.id$/ { i = $1; sub(/\.id$/, "", i); id[i] = $3 }`,
    String.raw`$1 ~ /^json\.ata_smart_attributes\.table\[[0-9]+\]\.raw\.value$/ { i = $1; sub(/\.raw\.value$/, "", i); raw[i] = $3 }`,
    '$1 == "json.nvme_smart_health_information_log" { nvme = 1 }',
    '$1 == "json.nvme_smart_health_information_log.critical_warning" { cw = $3 }',
    '$1 == "json.nvme_smart_health_information_log.media_errors" { media = $3 }',
    'END {',
    '  if (passed != "true" && passed != "false") { print "unavailable"; exit }',
    '  c = ""',
    '  for (i in id) if (i in raw) v[id[i]] = raw[i]',
    ...PREDICTORS.map(attr),
    '  if (nvme) {',
    '    cw = cw + 0',
    ...NVME_WARNINGS.map(nvme),
    '    if (media + 0 > 0) add(media " NVMe media errors")',
    '  }',
    '  if (passed == "false") { print "failing SMART overall health: FAILED" (c == "" ? "" : "; " c); exit }',
    '  if (c != "") { print "warning SMART passed, but " c; exit }',
    '  print "healthy"',
    '}',
  ].join('\n');
}
