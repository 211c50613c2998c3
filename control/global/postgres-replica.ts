/**
 * Global control plane replicas on PostgreSQL (`--store postgres://...`, two or more processes on one
 * database). One is the leader: the replica whose session holds the advisory lock `LEADER_LOCK`. It runs
 * the whole global control plane (global-plane.ts) and writes through that very session, so losing the
 * session loses the lock and every write with it. The others are followers: they serve the admin port's
 * reads (`/zones`, `/zones/<name>`, `/catalogue`, `/ready` saying `role: follower`) from the store,
 * refreshed every `FOLLOWER_REFRESH_MS`, open no API listener (zones, given every replica's URL, move on to
 * the next), and try for the lock every `LOCK_RETRY_MS`.
 *
 * A leader killed: PostgreSQL ends its session when the socket closes, the lock goes with it, and a
 * follower takes it at its next try: a handover within about a second, plus the zones' reconnect
 * backoff. A leader whose session fails while it runs steps down (closes everything) and becomes a
 * follower again.
 *
 * Every replica signs with the same mesh CA: `--ca-dir` is required (the same directory on each), and
 * each makes its own intermediate under it.
 */
import pg from 'pg';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import type { Server } from 'node:http';
import { InputError, describeError } from '../../common/errors.js';
import { CODE } from '../../common/error-codes.js';
import type { Logger } from '../../common/log.js';
import type { GlobalControlConfig } from './global-config.js';
import { createGlobalAdmin } from './global-admin.js';
import { startGlobalControlPlane, type RunningGlobal } from './global-plane.js';
import { GlobalMetrics } from './global-metrics.js';
import { GlobalState } from './global-state.js';
import { listen } from './listen.js';
import { PostgresGlobalStore, redactUrl } from './postgres-store.js';

/** The advisory lock the leader holds: "trellis" in ASCII. */
export const LEADER_LOCK = '32765610773129587';
export const LOCK_RETRY_MS = 500;
export const FOLLOWER_REFRESH_MS = 1_000;

export interface ReplicaHandle {
  readonly apiAddress: AddressInfo;
  readonly adminAddress: AddressInfo;
  readonly role: () => 'leader' | 'follower';
  close(): Promise<void>;
}

/** The follower's read session, with the schema migrated; a clear error when the store cannot be reached. */
async function openReader(url: string, location: string, log: Logger): Promise<pg.Client> {
  const reader = new pg.Client({ connectionString: url });
  await reader.connect().catch((err: unknown) => {
    throw new InputError(CODE.ZONE_STORE_UNAVAILABLE, `--store ${location}: ${(err as Error).message}`);
  });
  reader.on('error', (err) => log.error({ err: err.message }, 'the follower\'s store connection failed'));
  await PostgresGlobalStore.migrate(reader);
  return reader;
}

/** Stops a server (if any) and ends its open connections. */
async function closeServer(server: Server | undefined): Promise<void> {
  await new Promise<void>((r) => (server === undefined ? r() : server.close(() => r())));
  server?.closeAllConnections();
}

export async function startReplicatedGlobal(config: GlobalControlConfig, log: Logger): Promise<ReplicaHandle> {
  const url = config.store as string;
  const location = redactUrl(url);
  if (config.caDir === undefined) throw new InputError(CODE.CLI_USAGE, '--store postgres://... needs --ca-dir: every replica signs with the same mesh CA (the same directory on each)');
  const reader = await openReader(url, location, log);
  const readStore = new PostgresGlobalStore(reader, location);

  let closed = false;
  let leader: RunningGlobal | undefined;
  let lockClient: pg.Client | undefined;
  let followerAdmin: Server | undefined;
  let view = new GlobalState({ leaseMs: config.zoneLeaseMs, exportDefault: config.exportDefault });
  const refresh = async (): Promise<void> => {
    const loaded = await readStore.load();
    if (loaded.meta !== undefined) view = new GlobalState({ leaseMs: config.zoneLeaseMs, exportDefault: config.exportDefault }, { meta: loaded.meta, zones: loaded.zones });
  };
  await refresh();
  const registry = new Registry();
  new GlobalMetrics(registry, () => view);

  const openFollowerAdmin = async (port: number): Promise<AddressInfo> => {
    followerAdmin = createGlobalAdmin({ state: () => view, metrics: registry, ready: () => false, trustDomain: config.trustDomain, role: 'follower' });
    return listen(followerAdmin, { host: config.admin.host, port });
  };
  const adminAddress = await openFollowerAdmin(config.admin.port);
  const apiAddress: AddressInfo = { address: config.listen.host, family: config.listen.host.includes(':') ? 'IPv6' : 'IPv4', port: config.listen.port };

  const stepDown = async (why: string): Promise<void> => {
    const running = leader;
    leader = undefined;
    lockClient = undefined;
    if (running === undefined) return;
    log.error({ why }, 'leader session lost: stepping down to follower');
    await running.close().catch(() => undefined);
    if (!closed) await openFollowerAdmin(adminAddress.port).catch((err: unknown) => log.error({ err: describeError(err) }, 'cannot reopen the follower admin port'));
  };

  const tryLead = async (): Promise<void> => {
    if (closed || leader !== undefined) return;
    const client = lockClient ?? new pg.Client({ connectionString: url });
    if (lockClient === undefined) {
      lockClient = client;
      client.on('error', (err) => void stepDown(err.message));
      client.on('end', () => void stepDown('the session ended'));
      await client.connect();
    }
    const got = await client.query<{ locked: boolean }>('SELECT pg_try_advisory_lock($1::bigint) AS locked', [LEADER_LOCK]);
    if (got.rows[0]?.locked !== true) return;
    log.info({ store: location }, 'this replica is the leader');
    await closeServer(followerAdmin);
    followerAdmin = undefined;
    leader = await startGlobalControlPlane({ ...config, admin: { host: config.admin.host, port: adminAddress.port } }, new PostgresGlobalStore(client, location), log, 'leader');
  };

  const timer = setInterval(() => {
    if (leader === undefined) {
      void refresh().catch((err: unknown) => log.warn({ err: describeError(err) }, 'cannot read the global store'));
      void tryLead().catch((err: unknown) => {
        log.warn({ err: describeError(err) }, 'cannot try for the leader lock; retrying');
        const client = lockClient;
        lockClient = undefined;
        void client?.end().catch(() => undefined);
      });
    }
  }, Math.min(LOCK_RETRY_MS, FOLLOWER_REFRESH_MS));
  timer.unref();
  await tryLead().catch((err: unknown) => log.warn({ err: describeError(err) }, 'cannot try for the leader lock; retrying'));
  if (leader === undefined) log.info({ store: location, refreshMs: FOLLOWER_REFRESH_MS }, 'this replica is a follower: it serves reads and waits for the leader lock');

  return {
    apiAddress,
    adminAddress,
    role: () => (leader === undefined ? 'follower' : 'leader'),
    async close() {
      closed = true;
      clearInterval(timer);
      const running = leader;
      leader = undefined;
      await running?.close();
      await closeServer(followerAdmin);
      await lockClient?.end().catch(() => undefined);
      await reader.end().catch(() => undefined);
    },
  };
}
