/**
 * rsync over SSH into single folders (access.rsync). Every key logs into one unprivileged
 * account, RSYNC_USER, whose authorized_keys pins each key to its folder with
 * `restrict,command="rsync-folder MODE DIR"` (rrsync underneath): no shell, no other command, no
 * forwarding of any kind. The account's one supplementary group, UPLOAD_GROUP, is Syncthing's
 * too and is given (by syncthing-prepare) only to folders that have keys: the account can reach
 * those and nothing else on the drive, and Syncthing can read, change and delete what it uploads.
 */
import { RSYNC_USER, SYNCPI_LIB, UPLOAD_GROUP, type Feature } from '../context.js';
import { authorizedKeysPath } from '../derived-files.js';

export const RSYNC_FOLDER = `${SYNCPI_LIB}/rsync-folder`;
export const RSYNC_HOME = `/var/lib/${RSYNC_USER}`;

const FLAG = { 'read-only': '-ro', 'write-only': '-wo', 'read-write': '-rw' } as const;

/** One authorized_keys line; the key's own comment is replaced by the entry's name. */
export function rsyncKeyLine(k: { name: string; key: string; mode: keyof typeof FLAG; path: string }): string {
  const [type, blob] = k.key.trim().split(/\s+/);
  return `restrict,command="${RSYNC_FOLDER} ${FLAG[k.mode]} ${k.path}" ${type} ${blob} ${k.name}`;
}

export const rsync: Feature = {
  name: 'rsync',
  contribute(ctx) {
    const keys = ctx.derived.rsyncKeys;
    if (keys.length === 0) return {};
    return {
      // rrsync is a python3 script in Debian's rsync package.
      install: ['rsync', 'python3', 'openssh-server'],
      users: [{ name: RSYNC_USER, system: true, home: RSYNC_HOME, shell: '/bin/sh', groups: [UPLOAD_GROUP], authorizedKeys: keys.map(rsyncKeyLine) }],
      files: [{ path: RSYNC_FOLDER, mode: '0755', owner: 'root', group: 'root', content: ctx.render('access/rsync-folder.sh.hbs'), notify: [] }],
      checks: [
        { kind: 'file', path: authorizedKeysPath(RSYNC_HOME), mode: '0600', owner: RSYNC_USER, description: `${RSYNC_USER} has the ${keys.length} rsync key(s), each pinned to its folder` },
        { kind: 'command', argv: ['test', '-x', '/usr/bin/rrsync'], expectExit: 0, liveOnly: false, description: 'rrsync is installed' },
      ],
      notes: keys.map((k) => `rsync key ${k.name}: ${k.mode} in folder ${k.folderId} (${k.path}), as ${RSYNC_USER}`),
    };
  },
};
