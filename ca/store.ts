/**
 * A CA on disk: one directory holding `ca.crt` (the CA certificate followed by its chain up to, not including,
 * the root), `ca.key` (PKCS#8, mode 0600) and `bundle.pem` (the roots its leaves chain to).
 * Writing never replaces an existing CA and never leaves a partial one behind; reading refuses a key file
 * that others can read, as ssh does.
 *
 * The key file rule (`keyFileProblem`): readable by its owner only (0400, 0600) is always fine. Group-read
 * (0440, 0640) is fine too when the file is owned by root or by this process's user AND its group is one
 * this process is in: that is how Kubernetes mounts a Secret for a non-root pod (owner root, group the
 * pod's fsGroup, `defaultMode: 0440`), and the group then holds only this workload. Group-write, group-
 * execute and any access for others are always refused, as is group-read by a group this process is not
 * in (someone else's group can read the key, which is never the intent).
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../common/errors.js';
import { removeOrphanedTempFiles, writeFileAtomic } from '../common/atomic-file.js';
import { CODE } from '../common/error-codes.js';

export const CA_FILES = Object.freeze({ certificate: 'ca.crt', key: 'ca.key', bundle: 'bundle.pem' });

/** Largest file read as PEM: a CA chain with a few certificates is a few KB. */
const MAX_PEM_FILE_BYTES = 256 * 1024;

export interface CaFiles {
  readonly certChainPem: string;
  readonly keyPem: string;
  /** Undefined when the directory has no bundle.pem (a plug-in CA whose chain ends in its root). */
  readonly bundlePem: string | undefined;
}

export async function readPemFile(path: string, what: string): Promise<string> {
  let stat;
  try {
    stat = await fs.stat(path);
  } catch (err) {
    throw new InputError(CODE.CA_FILE_MISSING, `${what}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
  if (!stat.isFile()) throw new InputError(CODE.CA_FILE_MISSING, `${what}: ${path} is not a file`);
  if (stat.size > MAX_PEM_FILE_BYTES) throw new InputError(CODE.PEM_INVALID, `${what}: ${path} is larger than ${MAX_PEM_FILE_BYTES} bytes`);
  return fs.readFile(path, 'utf8');
}

/** Who this process is, for the key file rule. */
export interface FileAccessor {
  readonly uid: number;
  /** The primary group and the supplementary groups (a pod's fsGroup is one). */
  readonly gids: readonly number[];
}

export function currentAccessor(): FileAccessor | undefined {
  if (process.getuid === undefined || process.getgid === undefined || process.getgroups === undefined) return undefined;
  return { uid: process.getuid(), gids: [...new Set([process.getgid(), process.getegid?.() ?? process.getgid(), ...process.getgroups()])] };
}

function octal(mode: number): string {
  return `0${(mode & 0o777).toString(8).padStart(3, '0')}`;
}

/**
 * Why a key file's mode and ownership are unsafe (one sentence naming the file, its mode and owner, and
 * the rule), or undefined when they are fine. `who` undefined (no POSIX ids): owner-only modes pass.
 */
export function keyFileProblem(path: string, stat: { readonly mode: number; readonly uid: number; readonly gid: number }, who: FileAccessor | undefined): string | undefined {
  const mode = stat.mode & 0o777;
  if ((mode & 0o077) === 0) return undefined;
  const groupReadOnly = (mode & 0o077) === 0o040;
  const trustedOwner = who !== undefined && (stat.uid === 0 || stat.uid === who.uid);
  const ownGroup = who !== undefined && who.gids.includes(stat.gid);
  if (groupReadOnly && trustedOwner && ownGroup) return undefined;
  let why: string;
  if ((mode & 0o007) !== 0) why = 'others can access it';
  else if (!groupReadOnly) why = 'its group can write or execute it';
  else if (!trustedOwner) why = `it is readable by its group and owned by uid ${stat.uid}, neither root nor this process (uid ${who?.uid ?? 'unknown'})`;
  else why = `it is readable by group ${stat.gid}, which this process is not in (gids ${who?.gids.join(', ') ?? 'unknown'})`;
  return (
    `CA key ${path} has mode ${octal(mode)} (owner uid ${stat.uid}, group gid ${stat.gid}): ${why}. ` +
    'A CA key must be readable by its owner only (chmod 600), or also read-only by its group (0440, 0640) when the file is owned by root or by this ' +
    "process's user and the group is one this process is in (a Kubernetes Secret mounted with defaultMode 0440 and the pod's fsGroup); " +
    'never writable by the group, never accessible to others'
  );
}

export async function readCaFiles(dir: string, who: FileAccessor | undefined = currentAccessor()): Promise<CaFiles> {
  const keyPath = join(dir, CA_FILES.key);
  const certChainPem = await readPemFile(join(dir, CA_FILES.certificate), 'CA certificate');
  const keyPem = await readPemFile(keyPath, 'CA key');
  const problem = keyFileProblem(keyPath, await fs.stat(keyPath), who);
  if (problem !== undefined) throw new InputError(CODE.CA_KEY_PERMISSIONS, problem);
  let bundlePem: string | undefined;
  try {
    bundlePem = await readPemFile(join(dir, CA_FILES.bundle), 'trust bundle');
  } catch (err) {
    if ((err as InputError).code !== CODE.CA_FILE_MISSING) throw err;
  }
  return { certChainPem, keyPem, bundlePem };
}

/** Refuses when `dir` already holds any CA file, so an existing CA is never overwritten. */
export async function assertNoCa(dir: string): Promise<void> {
  for (const name of Object.values(CA_FILES)) {
    const exists = await fs.stat(join(dir, name)).then(
      () => true,
      () => false,
    );
    if (exists) throw new InputError(CODE.CA_EXISTS, `${join(dir, name)} already exists; refusing to overwrite an existing CA`);
  }
}

export async function writeCaFiles(dir: string, files: { certChainPem: string; keyPem: string; bundlePem: string }): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  // An interrupted earlier write may have left a temporary copy of a key here: never leave one lying about.
  await removeOrphanedTempFiles(dir);
  await assertNoCa(dir);
  const written: string[] = [];
  try {
    // Key first and exclusive: if two `ca init` race on one directory, exactly one wins.
    for (const [name, data, mode] of [
      [CA_FILES.key, files.keyPem, 0o600],
      [CA_FILES.certificate, files.certChainPem, 0o644],
      [CA_FILES.bundle, files.bundlePem, 0o644],
    ] as const) {
      await writeFileAtomic(join(dir, name), data, { mode, exclusive: true });
      written.push(name);
    }
  } catch (err) {
    await Promise.all(written.map((name) => fs.unlink(join(dir, name)).catch(() => undefined)));
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new InputError(CODE.CA_EXISTS, `a CA appeared in ${dir} while writing; nothing written`, { cause: err });
    throw err;
  }
}
