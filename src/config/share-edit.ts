/**
 * `syncpi share add`: one device, added to one folder, written into appliance.yaml in place. The
 * yaml Document API keeps the file's comments and key order; the edited text must load with the
 * same loader as every other command before it replaces the file (temp + fsync + rename), so
 * the file is either the old one or a valid new one, never half-written.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, rmSync, statSync, writeSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { isMap, isSeq, type Document } from 'yaml';
import { UserError } from '../util/errors.js';
import { normaliseDeviceId } from './device-id.js';
import { loadConfig } from './load.js';
import { DEVICE_NAME_EXPECTED, DEVICE_NAME_RE, type Config } from './schema.js';

export interface ShareAdd {
  device: string;
  name: string;
  folder: string;
  readOnly: boolean;
}

export interface ShareAddResult {
  /** The canonical device ID written (or already there). */
  id: string;
  /** What changed, one phrase each; empty when the file already said all of it. */
  changes: string[];
}

/** The folder's devices (and readers) as device IDs, whichever way the config names them. */
function idsOf(config: Config, refs: readonly string[]): Set<string> {
  return new Set(refs.map((r) => config.sync.devices.find((d) => d.name === r || d.id === r)?.id ?? r));
}

/**
 * Writes text the way a reader sees either all of it or none: a temp file in the same folder
 * (same file system, so the rename is atomic) with the old file's mode.
 */
function replaceFile(path: string, text: string): void {
  const tmp = join(dirname(path), `.${basename(path)}.${process.pid}.tmp`);
  const fd = openSync(tmp, 'wx', statSync(path).mode & 0o7777);
  try {
    writeSync(fd, text);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    loadConfig(tmp);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw e;
  }
  renameSync(tmp, path);
}

/** Flow lists in the file written `[a, b]` or `[ a, b ]`: new output follows what the file does most. */
function flowPadding(text: string): boolean {
  const padded = (text.match(/[[{] \S/g) ?? []).length;
  const tight = (text.match(/[[{][^\s\]}]/g) ?? []).length;
  return padded > tight;
}

export function addShare(file: string, a: ShareAdd): ShareAddResult {
  const parsed = normaliseDeviceId(a.device);
  if ('problem' in parsed) throw new UserError(`--device ${JSON.stringify(a.device)}: expected ${parsed.problem}`);
  const id = parsed.id;
  if (!DEVICE_NAME_RE.test(a.name)) throw new UserError(`--name ${JSON.stringify(a.name)}: expected ${DEVICE_NAME_EXPECTED}`);

  const loaded = loadConfig(file);
  const { config } = loaded;
  const shown = loaded.yaml.shownAs;
  const fi = config.sync.folders.findIndex((f) => f.id === a.folder);
  if (fi < 0) {
    const ids = config.sync.folders.map((f) => f.id);
    throw new UserError(`--folder ${JSON.stringify(a.folder)}: no folder with this ID in ${shown}; expected ${ids.length ? `one of: ${ids.join(', ')}` : 'a folder under sync.folders (there are none yet)'}`);
  }
  const folder = config.sync.folders[fi]!;

  const di = config.sync.devices.findIndex((d) => d.id === id || d.name === a.name);
  const existing = di < 0 ? undefined : config.sync.devices[di]!;
  if (existing && existing.id !== id) {
    throw new UserError(`--name ${JSON.stringify(a.name)}: sync.devices[${di}] in ${shown} already has this name with ID ${existing.id}; expected another name, or --device ${existing.id}`);
  }
  if (existing && existing.name !== a.name) {
    throw new UserError(`--device ${id}: sync.devices[${di}] in ${shown} already lists this device as "${existing.name}"; expected --name ${JSON.stringify(existing.name)}, or another device`);
  }

  const sharers = idsOf(config, folder.devices);
  const readers = idsOf(config, folder.readers ?? []);
  const want = a.readOnly ? 'readers' : 'devices';
  if (a.readOnly && sharers.has(id)) {
    throw new UserError(`--read-only: ${a.name} already syncs folder ${folder.id} both ways (sync.folders[${fi}].devices in ${shown}); expected it removed from devices first, or no --read-only`);
  }
  if (!a.readOnly && readers.has(id)) {
    throw new UserError(`${a.name} receives folder ${folder.id} read-only (sync.folders[${fi}].readers in ${shown}); expected --read-only, or it removed from readers first`);
  }

  const doc = loaded.yaml.doc as Document;
  const changes: string[] = [];
  if (!existing) {
    const devices = doc.getIn(['sync', 'devices'], true);
    const entry = doc.createNode({ id, name: a.name });
    if (devices === undefined) doc.setIn(['sync', 'devices'], doc.createNode([entry]));
    else if (!isSeq(devices)) throw new UserError(`${shown}: sync.devices is not a list; expected a list of devices`);
    else {
      // `devices: []` (as init writes it) becomes a block list: a device is a mapping of its own
      if (devices.items.length === 0) devices.flow = false;
      devices.add(entry);
    }
    changes.push(`device ${a.name} (${id}) added to sync.devices`);
  }
  if (!(a.readOnly ? readers : sharers).has(id)) {
    const path = ['sync', 'folders', fi, want];
    const list = doc.getIn(path, true);
    if (list !== undefined && !isSeq(list)) throw new UserError(`${shown}: sync.folders[${fi}].${want} is not a list; expected a list of device names`);
    if (list === undefined) {
      // a new key goes at the end of the folder's mapping, written as the file writes its lists
      const node = doc.createNode([a.name], { flow: true });
      const folderNode = doc.getIn(['sync', 'folders', fi], true);
      if (!isMap(folderNode)) throw new UserError(`${shown}: sync.folders[${fi}] is not a mapping; expected a folder`);
      folderNode.set(doc.createNode(want), node);
    } else {
      list.add(doc.createNode(a.name));
    }
    changes.push(`${a.name} added to folder ${folder.id} ${a.readOnly ? 'as a read-only reader' : 'as a device'}`);
  }
  if (changes.length === 0) return { id, changes };
  replaceFile(loaded.file, doc.toString({ lineWidth: 0, flowCollectionPadding: flowPadding(readFileSync(loaded.file, 'utf8')) }));
  return { id, changes };
}
