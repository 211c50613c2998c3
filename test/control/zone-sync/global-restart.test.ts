/**
 * A global control plane killed between a change and its write (issue 14), as the state machine, the
 * write-behind persister and an in-memory store see it, deterministically: the store "dies" (its writes
 * fail) while a zone's change is in memory, the global is rebuilt from what the store holds, and the
 * zones resume. What another zone was told must never be ahead of the store: otherwise a restarted
 * global, answering `since(v)` for the version that zone holds, skips a record the zone holds in a state
 * the store never saw (seen in the e2e: west's orders went unhealthy, healthy again, the global died,
 * west went unhealthy again while it was down, and east kept "healthy" for good).
 */
import { describe, expect, it } from 'vitest';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { GlobalState, type GlobalMeta, type ZoneSnapshot } from '../../../control/global/global-state.js';
import type { GlobalStore } from '../../../control/global/global-store.js';
import { GlobalMetrics } from '../../../control/global/global-metrics.js';
import { Persister } from '../../../control/global/persister.js';
import { SyncReplica } from '../../../control/zone-sync/replica.js';
import { VersionedSet } from '../../../control/zone-sync/versioned-set.js';
import type { HelloMessage } from '../../../control/zone-sync/protocol.js';
import { downLines, service, serviceEntry, upLines } from './support.js';

/** A store in memory (copies, as a real store keeps bytes); `die()` makes every later write fail. */
class MemoryStore implements Pick<GlobalStore, 'saveMeta' | 'saveZone'> {
  private meta: GlobalMeta | undefined;
  private readonly zones = new Map<string, ZoneSnapshot>();
  private dead = false;

  die(): void {
    this.dead = true;
  }

  revive(): void {
    this.dead = false;
  }

  saveMeta(meta: GlobalMeta): Promise<void> {
    if (this.dead) return Promise.reject(new Error('the process is gone'));
    this.meta = JSON.parse(JSON.stringify(meta)) as GlobalMeta;
    return Promise.resolve();
  }

  saveZone(zone: ZoneSnapshot): Promise<void> {
    if (this.dead) return Promise.reject(new Error('the process is gone'));
    this.zones.set(zone.name, JSON.parse(JSON.stringify(zone)) as ZoneSnapshot);
    return Promise.resolve();
  }

  /** What a restarted global reads back. */
  load(): { meta: GlobalMeta; zones: ZoneSnapshot[] } {
    if (this.meta === undefined) throw new Error('nothing was written');
    return { meta: this.meta, zones: [...this.zones.values()] };
  }
}

const zero = { service: 0, ingress: 0, trust: 0, policy: 0 };
const log = pino({ level: 'silent' });
const options = { leaseMs: 30_000, exportDefault: 'all' as const };

/** One global process: its state, its persister (writing to `store`) and the pushes it made. */
function globalProcess(store: MemoryStore, restored?: { meta: GlobalMeta; zones: ZoneSnapshot[] }) {
  const state = new GlobalState(options, restored);
  let durable = 0;
  const persister = new Persister(state, store as unknown as GlobalStore, log, new GlobalMetrics(new Registry(), () => state), 3_600_000, () => durable++);
  return { state, persister, durableWrites: () => durable };
}

/** A zone's side: its outbox (up) and its catalogue replica (down), and the stream ids it holds. */
function zone(name: string) {
  return { name, epoch: `epoch-${name}`, outbox: new VersionedSet<unknown>(), catalogue: new SyncReplica<unknown>('service'), globalEpoch: undefined as string | undefined };
}
type Zone = ReturnType<typeof zone>;

function hello(z: Zone): HelloMessage {
  return { t: 'hello', protocol: 1, zone: z.name, epoch: z.epoch, ...(z.globalEpoch === undefined ? {} : { globalEpoch: z.globalEpoch }), down: { ...zero, service: z.catalogue.version } };
}

/** Connects `z` as the zone link does: hello, then the zone sends since(applied). Returns the stream id and the down version sent. */
function connect(state: GlobalState, z: Zone): { connection: number; sent: number } {
  const { connection, welcome, down } = state.hello(z.name, hello(z));
  z.globalEpoch = welcome.globalEpoch;
  const delta = welcome.resume ? z.outbox.since(welcome.applied.service) : z.outbox.snapshot();
  if (delta.reset || delta.to !== welcome.applied.service) for (const { message, bytes } of upLines('service', delta)) state.receive(z.name, connection, message, bytes);
  return { connection, sent: down.service };
}

/** One push to `z`, as the sync session makes it: whatever the global may send now. */
function push(state: GlobalState, z: Zone, from: number): number {
  const delta = state.downDelta(z.name, 'service', from);
  if (delta === undefined || (!delta.reset && delta.to === from)) return from;
  for (const { message, bytes } of downLines('service', delta)) z.catalogue.receive(message, bytes);
  return delta.to;
}

const healthyIn = (z: Zone): number | undefined => (z.catalogue.get('west/shop/orders') as { localities: { healthy: number }[] } | undefined)?.localities[0]?.healthy;

describe('the global control plane killed between a change and its write', () => {
  it('never tells a zone what the store does not hold, so a restart resumes with deltas and loses nothing', async () => {
    const store = new MemoryStore();
    const first = globalProcess(store);
    await first.persister.flush();
    const west = zone('west');
    const east = zone('east');
    const w = connect(first.state, west);
    let eastSent = connect(first.state, east).sent;
    const change = async (healthy: number): Promise<void> => {
      west.outbox.set(...serviceEntry(service('west', 'orders', healthy, 1)));
      const from = west.outbox.version - 1;
      for (const { message, bytes } of upLines('service', west.outbox.since(from))) first.state.receive('west', w.connection, message, bytes);
      await first.persister.flush();
      eastSent = push(first.state, east, eastSent);
    };
    await change(1);
    expect(healthyIn(east)).toBe(1);
    await change(0);
    expect(healthyIn(east)).toBe(0);
    expect(first.durableWrites()).toBeGreaterThan(0);
    // The process dies before its next write lands: orders is healthy again in memory only.
    store.die();
    await change(1);
    // East is not told what the store never held.
    expect(healthyIn(east)).toBe(0);
    await first.persister.close();

    // While the global is down, orders goes unhealthy again in west: the state the store holds.
    west.outbox.set(...serviceEntry(service('west', 'orders', 0, 1)));
    const healthyStore = new MemoryStore();
    const restored = store.load();
    const second = globalProcess(healthyStore, restored);
    await second.persister.flush();
    expect(second.state.globalEpoch).toBe(first.state.globalEpoch);
    const westAgain = second.state.hello('west', hello(west));
    // West resumes with a delta from the version the store holds, not its whole set.
    expect(westAgain.welcome.resume).toBe(true);
    const resumed = west.outbox.since(westAgain.welcome.applied.service);
    expect(resumed.reset).toBe(false);
    for (const { message, bytes } of upLines('service', resumed)) second.state.receive('west', westAgain.connection, message, bytes);
    const eastAgain = connect(second.state, east);
    await second.persister.flush();
    const eastVersionBefore = east.catalogue.version;
    // East asked from the version it held and gets a delta, not its whole catalogue again: an empty one,
    // since it holds exactly what the store does (west's resend equals the stored record).
    expect(second.state.downDelta('east', 'service', eastAgain.sent)).toMatchObject({ reset: false, from: eastVersionBefore, upserts: [], removes: [] });
    push(second.state, east, eastAgain.sent);
    expect(healthyIn(east)).toBe(0);
    // Versions only grow across the restart, and east got a delta, never a reset.
    expect(east.catalogue.version).toBeGreaterThan(eastVersionBefore);
    expect(second.state.status('west')?.resets.service).toBe(0);
    // And the next change reaches east as usual.
    west.outbox.set(...serviceEntry(service('west', 'orders', 1, 1)));
    for (const { message, bytes } of upLines('service', west.outbox.since(west.outbox.version - 1))) second.state.receive('west', westAgain.connection, message, bytes);
    await second.persister.flush();
    push(second.state, east, east.catalogue.version);
    expect(healthyIn(east)).toBe(1);
  });

  it('does not tell a zone that another went offline before the store holds it; a restart then loses no record', async () => {
    const clock = { now: 1_000 };
    const store = new MemoryStore();
    const state = new GlobalState({ ...options, now: () => clock.now });
    const persister = new Persister(state, store as unknown as GlobalStore, log, new GlobalMetrics(new Registry(), () => state), 3_600_000, () => undefined);
    const west = zone('west');
    const east = zone('east');
    west.outbox.set(...serviceEntry(service('west', 'orders')));
    const w = connect(state, west);
    const e = connect(state, east);
    let eastSent = e.sent;
    await persister.flush();
    eastSent = push(state, east, eastSent);
    expect(healthyIn(east)).toBe(1);
    // West's stream drops and its lease lapses; the global dies before writing that.
    state.disconnect('west', w.connection);
    clock.now += 30_001;
    state.receive('east', e.connection, { t: 'renew' }, 1);
    expect(state.expireLeases()).toEqual(['west']);
    store.die();
    await persister.flush();
    push(state, east, eastSent);
    // Not durable, not sent: east keeps west's service.
    expect(healthyIn(east)).toBe(1);
    await persister.close();
    // Restarted from the store (west online there), west returns within its lease: east still has it.
    const second = new GlobalState(options, store.load());
    connect(second, west);
    const eastAgain = connect(second, east);
    push(second, east, eastAgain.sent);
    expect(healthyIn(east)).toBe(1);
  });

  it('holds pushes back while the store fails, retries on its interval, and pushes once a write succeeds', async () => {
    const store = new MemoryStore();
    const state = new GlobalState(options);
    let pushes = 0;
    const persister = new Persister(state, store as unknown as GlobalStore, log, new GlobalMetrics(new Registry(), () => state), 20, () => pushes++);
    await persister.flush();
    const west = zone('west');
    const east = zone('east');
    const w = connect(state, west);
    const e = connect(state, east);
    await persister.flush();
    push(state, east, e.sent);
    const before = pushes;
    store.die();
    west.outbox.set(...serviceEntry(service('west', 'orders')));
    for (const { message, bytes } of upLines('service', west.outbox.since(0))) state.receive('west', w.connection, message, bytes);
    persister.flushSoon();
    await new Promise((r) => setTimeout(r, 100));
    // Published, not written: nothing to send, nothing pushed.
    expect(state.downDelta('east', 'service', east.catalogue.version)).toBeUndefined();
    expect(pushes).toBe(before);
    store.revive();
    const deadline = Date.now() + 2_000;
    while (pushes === before && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
    expect(pushes).toBeGreaterThan(before);
    push(state, east, east.catalogue.version);
    expect(healthyIn(east)).toBe(1);
    await persister.close();
  });
});
