/**
 * Where the global control plane keeps its state, behind one interface: the embedded file store
 * (`GlobalFileStore`, below: the same atomic writes and damaged-file rules as the zone's `FileStore`) or
 * PostgreSQL (`postgres-store.ts`).
 *
 *   <data-dir>/global.json              the global epoch, the reserved catalogue version, the policies
 *   <data-dir>/zones/<zone>.json        one zone: its epoch, versions, records and catalogue entries
 *   <data-dir>/zone-tokens/<id>.json    one zone token record (never the token itself)
 *   <data-dir>/admin-token, token-signing-key   as in a zone's data dir (the key signs zone tokens)
 */
import { promises as fs } from 'node:fs';
import { join } from 'node:path';
import { removeOrphanedTempFiles, writeFileAtomic } from '../../common/atomic-file.js';
import { FileStore, storeCorrupt } from '../file-store.js';
import type { SecretName } from '../store.js';
import type { GlobalMeta, ZoneSnapshot } from './global-state.js';
import { ZONE_NAME } from '../zone-sync/protocol.js';

export interface ZoneTokenRecord {
  readonly id: string;
  readonly zone: string;
  readonly createdAt: string;
  readonly expiresAt: string;
  readonly uses: number;
  readonly usesLeft: number;
  readonly revokedAt?: string;
  /** Zone certificates issued through the token and their renewals: what revoking it refuses. */
  readonly certificates: readonly { readonly serial: string; readonly notAfter: string }[];
}

export interface GlobalStore {
  /** For messages: a directory or a database URL without its password. */
  readonly location: string;
  load(): Promise<{ meta: GlobalMeta | undefined; zones: ZoneSnapshot[] }>;
  saveMeta(meta: GlobalMeta): Promise<void>;
  saveZone(zone: ZoneSnapshot): Promise<void>;
  secret(name: SecretName): Promise<string>;
  putZoneToken(record: ZoneTokenRecord): Promise<void>;
  getZoneToken(id: string): Promise<ZoneTokenRecord | undefined>;
  listZoneTokens(): Promise<ZoneTokenRecord[]>;
  close(): Promise<void>;
}

const TOKEN_ID = /^[A-Za-z0-9_-]{1,64}$/;
/** A zone's file holds its exported services: 10,000 of them are a few MB. */
const MAX_ZONE_FILE_BYTES = 256 * 1024 * 1024;

async function readJson(file: string, maxBytes: number): Promise<unknown> {
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

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** The shape checks of a stored zone; the records themselves were validated when they arrived. */
export function parseZoneSnapshot(where: string, value: unknown): ZoneSnapshot {
  if (!isObject(value) || typeof value.name !== 'string' || !ZONE_NAME.test(value.name) || typeof value.epoch !== 'string' || typeof value.online !== 'boolean' || typeof value.lastSeen !== 'number') {
    throw storeCorrupt(where, 'expected {name, epoch, online, lastSeen, versions, records, catalogue}');
  }
  for (const field of ['versions', 'records', 'catalogue'] as const) if (!isObject(value[field])) throw storeCorrupt(where, `field "${field}" should be an object`);
  return value as unknown as ZoneSnapshot;
}

export function parseMeta(where: string, value: unknown): GlobalMeta {
  if (!isObject(value) || typeof value.globalEpoch !== 'string' || typeof value.reservedVersion !== 'number' || !Array.isArray(value.policies)) {
    throw storeCorrupt(where, 'expected {globalEpoch, reservedVersion, policies}');
  }
  return value as unknown as GlobalMeta;
}

export function parseZoneToken(where: string, value: unknown): ZoneTokenRecord {
  if (!isObject(value) || typeof value.id !== 'string' || typeof value.zone !== 'string' || typeof value.expiresAt !== 'string' || typeof value.usesLeft !== 'number' || !Array.isArray(value.certificates)) {
    throw storeCorrupt(where, 'expected a zone token record');
  }
  return Object.freeze(value as unknown as ZoneTokenRecord);
}

export class GlobalFileStore implements GlobalStore {
  private constructor(
    private readonly dir: string,
    private readonly secrets: FileStore,
  ) {}

  get location(): string {
    return this.dir;
  }

  static async open(dir: string): Promise<GlobalFileStore> {
    const secrets = await FileStore.open(dir);
    for (const folder of ['zones', 'zone-tokens']) {
      await fs.mkdir(join(dir, folder), { recursive: true, mode: 0o700 });
      await removeOrphanedTempFiles(join(dir, folder));
    }
    return new GlobalFileStore(dir, secrets);
  }

  async load(): Promise<{ meta: GlobalMeta | undefined; zones: ZoneSnapshot[] }> {
    const metaFile = join(this.dir, 'global.json');
    const meta = await readJson(metaFile, MAX_ZONE_FILE_BYTES);
    const zones: ZoneSnapshot[] = [];
    for (const name of (await fs.readdir(join(this.dir, 'zones'))).filter((n) => n.endsWith('.json') && !n.startsWith('.')).sort()) {
      const file = join(this.dir, 'zones', name);
      const zone = parseZoneSnapshot(file, await readJson(file, MAX_ZONE_FILE_BYTES));
      if (`${zone.name}.json` !== name) throw storeCorrupt(file, `holds zone "${zone.name}"`);
      zones.push(zone);
    }
    return { meta: meta === undefined ? undefined : parseMeta(metaFile, meta), zones };
  }

  saveMeta(meta: GlobalMeta): Promise<void> {
    return writeFileAtomic(join(this.dir, 'global.json'), JSON.stringify(meta), { mode: 0o600 });
  }

  saveZone(zone: ZoneSnapshot): Promise<void> {
    return writeFileAtomic(join(this.dir, 'zones', `${zone.name}.json`), JSON.stringify(zone), { mode: 0o600 });
  }

  secret(name: SecretName): Promise<string> {
    return this.secrets.secret(name);
  }

  async putZoneToken(record: ZoneTokenRecord): Promise<void> {
    if (!TOKEN_ID.test(record.id)) throw storeCorrupt(record.id, 'not a token id');
    await writeFileAtomic(join(this.dir, 'zone-tokens', `${record.id}.json`), `${JSON.stringify(record, null, 2)}\n`, { mode: 0o600 });
  }

  async getZoneToken(id: string): Promise<ZoneTokenRecord | undefined> {
    if (!TOKEN_ID.test(id)) return undefined;
    const file = join(this.dir, 'zone-tokens', `${id}.json`);
    const value = await readJson(file, 1024 * 1024);
    return value === undefined ? undefined : parseZoneToken(file, value);
  }

  async listZoneTokens(): Promise<ZoneTokenRecord[]> {
    const dir = join(this.dir, 'zone-tokens');
    const out: ZoneTokenRecord[] = [];
    for (const name of (await fs.readdir(dir)).filter((n) => n.endsWith('.json') && !n.startsWith('.')).sort()) {
      const file = join(dir, name);
      const value = await readJson(file, 1024 * 1024);
      if (value !== undefined) out.push(parseZoneToken(file, value));
    }
    return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
  }

  async close(): Promise<void> {
    // Every write is complete when its promise resolves; nothing is held open.
  }
}
