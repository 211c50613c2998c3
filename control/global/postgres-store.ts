/**
 * The global control plane's PostgreSQL store (`--store postgres://...`): the same records as the file
 * store, one row each, JSON in a jsonb column.
 *
 *   trellis_global_meta     (id = 1, data)        epoch, reserved catalogue version, policies
 *   trellis_global_zones    (name, data)          one zone's snapshot
 *   trellis_zone_tokens     (id, data)            zone token records
 *   trellis_global_secrets  (name, value)         the token signing key and the admin credential
 *
 * Writes go through one connection: the leader's, the one that holds the advisory lock
 * (postgres-replica.ts). If that session is gone, so is the lock, and every write fails: a deposed leader
 * cannot overwrite its successor's state. Readers (followers, the CLI) use their own connection.
 */
import { randomBytes } from 'node:crypto';
import type { Client } from 'pg';
import { TrellisError } from '../../common/errors.js';
import { CODE } from '../../common/error-codes.js';
import type { SecretName } from '../store.js';
import type { GlobalMeta, ZoneSnapshot } from './global-state.js';
import { parseMeta, parseZoneSnapshot, parseZoneToken, type GlobalStore, type ZoneTokenRecord } from './global-store.js';

export const SCHEMA = `
CREATE TABLE IF NOT EXISTS trellis_global_meta (id integer PRIMARY KEY CHECK (id = 1), data jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS trellis_global_zones (name text PRIMARY KEY, data jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS trellis_zone_tokens (id text PRIMARY KEY, data jsonb NOT NULL);
CREATE TABLE IF NOT EXISTS trellis_global_secrets (name text PRIMARY KEY, value text NOT NULL);
`;

/** A database URL with its password hidden, for messages and logs. */
export function redactUrl(url: string): string {
  try {
    const u = new URL(url);
    if (u.password !== '') u.password = '***';
    return u.toString();
  } catch {
    return 'postgres://(unparseable URL)';
  }
}

export function storeUnavailable(location: string, err: unknown): TrellisError {
  return new TrellisError(CODE.ZONE_STORE_UNAVAILABLE, `the global store ${location} cannot be used: ${(err as Error).message}`, { side: 'upstream', retryable: true, cause: err });
}

export class PostgresGlobalStore implements GlobalStore {
  constructor(
    private readonly client: Client,
    readonly location: string,
  ) {}

  static async migrate(client: Client): Promise<void> {
    await client.query(SCHEMA);
  }

  private async run<T>(work: () => Promise<T>): Promise<T> {
    try {
      return await work();
    } catch (err) {
      if (err instanceof TrellisError) throw err;
      throw storeUnavailable(this.location, err);
    }
  }

  load(): Promise<{ meta: GlobalMeta | undefined; zones: ZoneSnapshot[] }> {
    return this.run(async () => {
      const meta = await this.client.query<{ data: unknown }>('SELECT data FROM trellis_global_meta WHERE id = 1');
      const zones = await this.client.query<{ name: string; data: unknown }>('SELECT name, data FROM trellis_global_zones ORDER BY name');
      return {
        meta: meta.rows[0] === undefined ? undefined : parseMeta(`${this.location} trellis_global_meta`, meta.rows[0].data),
        zones: zones.rows.map((r) => parseZoneSnapshot(`${this.location} trellis_global_zones ${r.name}`, r.data)),
      };
    });
  }

  saveMeta(meta: GlobalMeta): Promise<void> {
    return this.run(async () => {
      await this.client.query('INSERT INTO trellis_global_meta (id, data) VALUES (1, $1) ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data', [JSON.stringify(meta)]);
    });
  }

  saveZone(zone: ZoneSnapshot): Promise<void> {
    return this.run(async () => {
      await this.client.query('INSERT INTO trellis_global_zones (name, data) VALUES ($1, $2) ON CONFLICT (name) DO UPDATE SET data = EXCLUDED.data', [zone.name, JSON.stringify(zone)]);
    });
  }

  secret(name: SecretName): Promise<string> {
    return this.run(async () => {
      // First writer wins; every replica then reads the same value.
      await this.client.query('INSERT INTO trellis_global_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [name, randomBytes(32).toString('base64url')]);
      const row = await this.client.query<{ value: string }>('SELECT value FROM trellis_global_secrets WHERE name = $1', [name]);
      return (row.rows[0] as { value: string }).value;
    });
  }

  putZoneToken(record: ZoneTokenRecord): Promise<void> {
    return this.run(async () => {
      await this.client.query('INSERT INTO trellis_zone_tokens (id, data) VALUES ($1, $2) ON CONFLICT (id) DO UPDATE SET data = EXCLUDED.data', [record.id, JSON.stringify(record)]);
    });
  }

  getZoneToken(id: string): Promise<ZoneTokenRecord | undefined> {
    return this.run(async () => {
      const row = await this.client.query<{ data: unknown }>('SELECT data FROM trellis_zone_tokens WHERE id = $1', [id]);
      return row.rows[0] === undefined ? undefined : parseZoneToken(`${this.location} trellis_zone_tokens ${id}`, row.rows[0].data);
    });
  }

  listZoneTokens(): Promise<ZoneTokenRecord[]> {
    return this.run(async () => {
      const rows = await this.client.query<{ id: string; data: unknown }>('SELECT id, data FROM trellis_zone_tokens');
      return rows.rows.map((r) => parseZoneToken(`${this.location} trellis_zone_tokens ${r.id}`, r.data)).sort((a, b) => a.createdAt.localeCompare(b.createdAt));
    });
  }

  async close(): Promise<void> {
    await this.client.end().catch(() => undefined);
  }
}
