export { buildBundle, bundleTar, bundleTarStream, writeBundleDir, provisionDir } from './bundle.js';
export type { Bundle, BundleEntry } from './bundle.js';
export { parseManifest, MANIFEST_HEADER } from './manifest.js';
export { ApplyOutputParser, parseApplyOutput, parseVerifyOutput, formatChange, APPLY_STEPS } from './protocol.js';
export type { ApplyReport, ApplyChange, ApplyFailure, HandlerRun, CheckResult, VerifyOutput } from './protocol.js';
