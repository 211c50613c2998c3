/**
 * A CA on disk: one directory holding `ca.crt` (the CA certificate followed by its chain up to, not including,
 * the root), `ca.key` (PKCS#8, mode 0600) and `bundle.pem` (the roots its leaves chain to).
 * Writing never replaces an existing CA and never leaves a partial one behind; reading refuses a key file
 * that others can read, as ssh does.
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { InputError } from '../common/errors.js';
import { writeFileAtomic } from '../common/atomic-file.js';

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
    throw new InputError('TRELLIS_CA_FILE_MISSING', `${what}: cannot read ${path} (${(err as NodeJS.ErrnoException).code ?? 'error'})`, { cause: err });
  }
  if (!stat.isFile()) throw new InputError('TRELLIS_CA_FILE_MISSING', `${what}: ${path} is not a file`);
  if (stat.size > MAX_PEM_FILE_BYTES) throw new InputError('TRELLIS_PEM_INVALID', `${what}: ${path} is larger than ${MAX_PEM_FILE_BYTES} bytes`);
  return fs.readFile(path, 'utf8');
}

export async function readCaFiles(dir: string): Promise<CaFiles> {
  const keyPath = join(dir, CA_FILES.key);
  const certChainPem = await readPemFile(join(dir, CA_FILES.certificate), 'CA certificate');
  const keyPem = await readPemFile(keyPath, 'CA key');
  const mode = (await fs.stat(keyPath)).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    throw new InputError('TRELLIS_CA_KEY_PERMISSIONS', `CA key ${keyPath} is readable by others (mode ${mode.toString(8)}); run chmod 600 on it`);
  }
  let bundlePem: string | undefined;
  try {
    bundlePem = await readPemFile(join(dir, CA_FILES.bundle), 'trust bundle');
  } catch (err) {
    if ((err as InputError).code !== 'TRELLIS_CA_FILE_MISSING') throw err;
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
    if (exists) throw new InputError('TRELLIS_CA_EXISTS', `${join(dir, name)} already exists; refusing to overwrite an existing CA`);
  }
}

export async function writeCaFiles(dir: string, files: { certChainPem: string; keyPem: string; bundlePem: string }): Promise<void> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
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
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') throw new InputError('TRELLIS_CA_EXISTS', `a CA appeared in ${dir} while writing; nothing written`, { cause: err });
    throw err;
  }
}
