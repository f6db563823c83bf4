/**
 * Where syncpi keeps its own things on the drive: one directory beside the folders, owned by root,
 * so nothing there is ever inside a synced folder (where it would sync) or on the SD card.
 *   .syncpi/versions/ID   versions of folder ID's files other devices changed or deleted
 *   .syncpi/readonly/ID   the hard-link copy of folder ID its readers receive
 */
export const DRIVE_OWN_DIR = '.syncpi';

export const ownDir = (root: string): string => `${root}/${DRIVE_OWN_DIR}`;
export const versionsDir = (root: string, id: string): string => `${ownDir(root)}/versions/${id}`;
export const readonlyDir = (root: string, id: string): string => `${ownDir(root)}/readonly/${id}`;

/** The ID of the send-only folder that carries folder ID to its readers. */
export const readonlyFolderId = (id: string): string => `${id}.readonly`;

/** File systems that cannot hold a second name for a file (no hard links): no read-only copies there. */
export const NO_HARD_LINKS = ['vfat', 'exfat'] as const;
