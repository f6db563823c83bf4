/**
 * Where syncpi keeps its own things on the drive: one directory beside the folders, owned by root,
 * so nothing there is ever inside a synced folder (where it would sync) or on the SD card.
 *   .syncpi/versions/ID   versions of folder ID's files other devices changed or deleted
 *   .syncpi/readonly/ID   the hard-link copy of folder ID its readers receive
 */
export const DRIVE_OWN_DIR = '.syncpi';

/** Where a folder's path leads: as written when absolute, else under the storage root. */
export const folderPath = (root: string, path: string): string => (path.startsWith('/') ? path : `${root}/${path}`);
export const ownDir = (root: string): string => `${root}/${DRIVE_OWN_DIR}`;
export const versionsDir = (root: string, id: string): string => `${ownDir(root)}/versions/${id}`;
export const readonlyDir = (root: string, id: string): string => `${ownDir(root)}/readonly/${id}`;

/** The ID of the send-only folder that carries folder ID to its readers. */
export const readonlyFolderId = (id: string): string => `${id}.readonly`;

/** File systems with no Unix owners, groups or permission bits (mounted as the daemon's user). */
export const NO_UNIX_OWNERS = ['exfat', 'vfat', 'ntfs'] as const;
export const hasUnixOwners = (fs: string): boolean => !(NO_UNIX_OWNERS as readonly string[]).includes(fs);

/** File systems that cannot hold a second name for a file (no hard links): no read-only copies there. */
export const NO_HARD_LINKS = ['vfat', 'exfat'] as const;
