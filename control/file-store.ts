/**
 * The embedded store: one small JSON file per record under `--data-dir`, each written atomically
 * (write, fsync, rename, fsync the directory), so a crash leaves the old record or the new, never half.
 *
 *   <data-dir>/admin-token            0600  bearer credential for `/v1/admin/*`
 *   <data-dir>/token-signing-key      0600  HMAC key that signs join tokens
 *   <data-dir>/tokens/<id>.json             one join-token record (never the token itself)
 *   <data-dir>/registrations/<id>.json      one agent registration
 *
 * A damaged file is named in a TRELLIS_STORE_CORRUPT error and left exactly as found: the operator
 * decides whether to restore or delete it, and no other record is touched. Secrets and token records are
 * needed to authenticate anyone, so `check()` refuses to start on them; registrations are soft state an
 * agent sends again on reconnect, so a damaged one is reported and skipped.
 */
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { removeOrphanedTempFiles, writeFileAtomic } from '../common/atomic-file.js';
import { TrellisError } from '../common/errors.js';
import type { ControlStore, SecretName, StoredRegistration, TokenRecord } from './store.js';
import { CODE } from '../common/error-codes.js';

const RECORD_ID = /^[A-Za-z0-9_-]{1,128}$/;
const SECRET_TEXT = /^[A-Za-z0-9_-]{43}$/;
/** A record is a few hundred bytes; anything this large is not one of ours. */
const MAX_RECORD_BYTES = 256 * 1024;

export function storeCorrupt(file: string, reason: string): TrellisError {
  return new TrellisError(
    CODE.STORE_CORRUPT,
    `${file} is damaged (${reason}); restore it from a backup or remove it. Nothing else in the data dir was changed.`,
    { side: 'internal', details: { file, reason } },
  );
}

/** A JSON file of at most `maxBytes`, parsed; undefined when it does not exist; a clear error when damaged. */
export async function readJsonFile(file: string, maxBytes: number): Promise<unknown | undefined> {
  let text: string;
  try {
    const stat = await fs.stat(file);
    if (stat.size > maxBytes) throw storeCorrupt(file, `${stat.size} bytes is more than the limit of ${maxBytes}`);
    text = await fs.readFile(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw storeCorrupt(file, `not valid JSON: ${(err as Error).message}`);
  }
}

function checkId(id: string, what: string): void {
  if (!RECORD_ID.test(id)) throw new TrellisError(CODE.STORE_BAD_ID, `${what} "${id}" may only hold A-Z, a-z, 0-9, "_" and "-" (1-128 characters)`, { side: 'input' });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function requireFields(file: string, value: unknown, fields: Readonly<Record<string, 'string' | 'number' | 'boolean' | 'array'>>): Record<string, unknown> {
  if (!isObject(value)) throw storeCorrupt(file, 'expected a JSON object');
  for (const [field, type] of Object.entries(fields)) {
    const v = value[field];
    const ok = type === 'array' ? Array.isArray(v) : typeof v === type;
    if (!ok) throw storeCorrupt(file, `field "${field}" should be a ${type}`);
  }
  return value;
}

function parseToken(file: string, value: unknown): TokenRecord {
  const v = requireFields(file, value, { id: 'string', service: 'string', namespace: 'string', createdAt: 'string', expiresAt: 'string' });
  if (v.revokedAt !== undefined && typeof v.revokedAt !== 'string') throw storeCorrupt(file, 'field "revokedAt" should be a string');
  if (Number.isNaN(Date.parse(v.expiresAt as string))) throw storeCorrupt(file, 'field "expiresAt" is not a date');
  for (const field of ['uses', 'usesLeft'] as const) {
    if (v[field] !== undefined && !(Number.isInteger(v[field]) && (v[field] as number) >= 0)) throw storeCorrupt(file, `field "${field}" should be a whole number`);
  }
  if (v.certificates !== undefined && !(Array.isArray(v.certificates) && v.certificates.every((c: unknown) => isObject(c) && typeof c.serial === 'string' && typeof c.notAfter === 'string'))) {
    throw storeCorrupt(file, 'field "certificates" should be a list of {serial, notAfter}');
  }
  return Object.freeze(v as unknown as TokenRecord);
}

function parseRegistration(file: string, value: unknown): StoredRegistration {
  const v = requireFields(file, value, {
    instanceId: 'string', service: 'string', namespace: 'string', zone: 'string', address: 'string',
    tunnelPort: 'number', ports: 'array', upstreams: 'array', healthy: 'boolean', updatedAt: 'string',
  });
  if (v.export !== undefined && typeof v.export !== 'boolean') throw storeCorrupt(file, 'field "export" should be true or false');
  if (v.owner !== undefined) {
    const owner = v.owner as Record<string, unknown> | null;
    if (!isObject(owner) || typeof owner.serial !== 'string' || typeof owner.workload !== 'string') throw storeCorrupt(file, 'field "owner" should be {serial, workload}');
  }
  return Object.freeze(v as unknown as StoredRegistration);
}

export class FileStore implements ControlStore {
  readonly location: string;
  private readonly dir: string;

  private constructor(dir: string) {
    this.dir = dir;
    this.location = dir;
  }

  /** Opens (and creates, mode 0700) the data dir and its record folders. */
  static async open(dir: string): Promise<FileStore> {
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    await fs.mkdir(join(dir, 'tokens'), { recursive: true, mode: 0o700 });
    await fs.mkdir(join(dir, 'registrations'), { recursive: true, mode: 0o700 });
    // A crash between write and rename leaves a temporary file beside the record; nothing reads it.
    for (const folder of [dir, join(dir, 'tokens'), join(dir, 'registrations')]) await removeOrphanedTempFiles(folder);
    return new FileStore(dir);
  }

  private readJson(file: string): Promise<unknown | undefined> {
    return readJsonFile(file, MAX_RECORD_BYTES);
  }

  async secret(name: SecretName): Promise<string> {
    const file = join(this.dir, name);
    const existing = await this.readSecret(file);
    if (existing !== undefined) return existing;
    const created = randomBytes(32).toString('base64url');
    try {
      await writeFileAtomic(file, `${created}\n`, { mode: 0o600, exclusive: true });
      return created;
    } catch (err) {
      // Another process (an offline `trellis token create`) made it first: use theirs.
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      const raced = await this.readSecret(file);
      if (raced === undefined) throw storeCorrupt(file, 'vanished while being created');
      return raced;
    }
  }

  private async readSecret(file: string): Promise<string | undefined> {
    let text: string;
    try {
      text = (await fs.readFile(file, 'utf8')).trim();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
      throw err;
    }
    if (!SECRET_TEXT.test(text)) throw storeCorrupt(file, 'expected 43 base64url characters');
    return text;
  }

  async putToken(record: TokenRecord): Promise<void> {
    checkId(record.id, 'token id');
    await writeFileAtomic(join(this.dir, 'tokens', `${record.id}.json`), `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
  }

  async getToken(id: string): Promise<TokenRecord | undefined> {
    if (!RECORD_ID.test(id)) return undefined;
    const file = join(this.dir, 'tokens', `${id}.json`);
    const value = await this.readJson(file);
    return value === undefined ? undefined : parseToken(file, value);
  }

  async listTokens(): Promise<readonly TokenRecord[]> {
    const out: TokenRecord[] = [];
    for (const file of await this.recordFiles('tokens')) {
      const value = await this.readJson(file);
      if (value !== undefined) out.push(parseToken(file, value));
    }
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  async putRegistration(registration: StoredRegistration): Promise<void> {
    checkId(registration.instanceId, 'instance id');
    await writeFileAtomic(join(this.dir, 'registrations', `${registration.instanceId}.json`), `${JSON.stringify(registration)}\n`);
  }

  async deleteRegistration(instanceId: string): Promise<void> {
    checkId(instanceId, 'instance id');
    await fs.rm(join(this.dir, 'registrations', `${instanceId}.json`), { force: true });
  }

  async listRegistrations(onCorrupt?: (file: string, reason: string) => void): Promise<readonly StoredRegistration[]> {
    const out: StoredRegistration[] = [];
    for (const file of await this.recordFiles('registrations')) {
      try {
        const value = await this.readJson(file);
        if (value !== undefined) out.push(parseRegistration(file, value));
      } catch (err) {
        if (!(err instanceof TrellisError) || err.code !== CODE.STORE_CORRUPT) throw err;
        onCorrupt?.(file, String(err.details?.reason ?? err.message));
      }
    }
    return out;
  }

  async check(): Promise<void> {
    await this.readSecret(join(this.dir, 'admin-token'));
    await this.readSecret(join(this.dir, 'token-signing-key'));
    await this.listTokens();
  }

  private async recordFiles(folder: string): Promise<string[]> {
    const dir = join(this.dir, folder);
    const names = await fs.readdir(dir);
    // Temporary files of an interrupted atomic write start with "." and are not records.
    return names.filter((n) => n.endsWith('.json') && !n.startsWith('.')).sort().map((n) => join(dir, n));
  }
}
