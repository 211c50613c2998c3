/**
 * Atomic file writes: write a temporary file beside the target, fsync it, rename it over the target,
 * then fsync the directory so the rename itself survives a power cut. A reader sees the old content or
 * the new, never half of either. Secrets are created with their final mode (0600) before a byte is written.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs, constants as fsConstants } from 'node:fs';
import { dirname, basename, join } from 'node:path';

export interface AtomicWriteOptions {
  /** File mode of the result; 0o600 for keys and tokens. */
  readonly mode?: number;
  /** Refuse to replace an existing file (the write fails with EEXIST and nothing changes). */
  readonly exclusive?: boolean;
}

export async function writeFileAtomic(path: string, data: string | Uint8Array, options: AtomicWriteOptions = {}): Promise<void> {
  const mode = options.mode ?? 0o644;
  const dir = dirname(path);
  const tmp = join(dir, `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  const handle = await fs.open(tmp, fsConstants.O_WRONLY | fsConstants.O_CREAT | fsConstants.O_EXCL, mode);
  try {
    await handle.writeFile(data);
    await handle.sync();
  } finally {
    await handle.close();
  }
  try {
    if (options.exclusive === true) {
      // link() fails if the target exists, which rename() would silently replace.
      await fs.link(tmp, path);
      await fs.unlink(tmp);
    } else {
      await fs.rename(tmp, path);
    }
  } catch (err) {
    await fs.unlink(tmp).catch(() => undefined);
    throw err;
  }
  await syncDirectory(dir);
}

export async function syncDirectory(dir: string): Promise<void> {
  const handle = await fs.open(dir, fsConstants.O_RDONLY);
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** `.<name>.<12 hex>.tmp`: the temporary files `writeFileAtomic` makes, and nothing else. */
const TEMP_FILE = /^\..+\.[0-9a-f]{12}\.tmp$/;
/**
 * Temporary files younger than this are left alone: another process may be writing beside us right now
 * (`trellis token create --data-dir` runs while the control plane does). A crash's orphan is older.
 */
export const ORPHAN_MIN_AGE_MS = 60_000;

/**
 * Removes the temporary files a crash between write and rename left in `dir` (not its subfolders), and
 * returns their names. Best effort: a directory we cannot list or change (a read-only mount) is left as is.
 */
export async function removeOrphanedTempFiles(dir: string, now: number = Date.now()): Promise<string[]> {
  let names: string[];
  try {
    names = await fs.readdir(dir);
  } catch {
    return [];
  }
  const removed: string[] = [];
  for (const name of names) {
    if (!TEMP_FILE.test(name)) continue;
    const path = join(dir, name);
    try {
      const stat = await fs.lstat(path);
      if (!stat.isFile() || now - stat.mtimeMs < ORPHAN_MIN_AGE_MS) continue;
      await fs.unlink(path);
      removed.push(name);
    } catch {
      // Gone meanwhile, or not ours to remove.
    }
  }
  return removed;
}

/** A file's text, or undefined when it does not exist; any other error (permissions, a directory) is thrown. */
export async function readFileIfExists(path: string): Promise<string | undefined> {
  try {
    return await fs.readFile(path, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
}
