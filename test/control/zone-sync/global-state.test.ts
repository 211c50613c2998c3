/**
 * The global's state machine on a fake clock: names are proven, one stream per zone, only the owner
 * changes its records, a dropped stream deletes nothing, a lapsed lease withdraws a zone's records with
 * reason zone-offline (and its return brings them back), and a restart from snapshots resumes deltas.
 */
import { describe, expect, it } from 'vitest';
import { GlobalState } from '../../../control/global/global-state.js';
import { SyncReplica } from '../../../control/zone-sync/replica.js';
import { VersionedSet } from '../../../control/zone-sync/versioned-set.js';
import type { HelloMessage } from '../../../control/zone-sync/protocol.js';
import { CODE } from '../../../common/error-codes.js';
import { downLines, service, serviceEntry, upLines, codeOf } from './support.js';

const zero = { service: 0, ingress: 0, trust: 0, policy: 0 };
/** What the persister does once its write succeeded: publish, and mark the published versions durable. */
function settle(state: GlobalState): void {
  state.publish();
  state.markDurable(state.versions());
}

/** The delta a session would send now (the tests settle first, so there is one). */
function down(state: GlobalState, zone: string, from: number) {
  const delta = state.downDelta(zone, 'service', from);
  if (delta === undefined) throw new Error('published versions are not durable yet');
  return delta;
}

const helloOf = (zone: string, epoch = `epoch-${zone}`, extra: Partial<HelloMessage> = {}): HelloMessage => ({ t: 'hello', protocol: 1, zone, epoch, down: zero, ...extra });

function setup() {
  const clock = { now: 1_000 };
  const state = new GlobalState({ leaseMs: 30_000, exportDefault: 'all', now: () => clock.now });
  const west = new VersionedSet<unknown>(() => clock.now);
  const send = (zone: string, connection: number, set: VersionedSet<unknown>, from: number, to: GlobalState = state) => {
    for (const { message, bytes } of upLines('service', set.since(from))) to.receive(zone, connection, message, bytes);
    settle(to);
  };
  const catalogueFor = (zone: string) => {
    const replica = new SyncReplica<unknown>('service');
    for (const { message, bytes } of downLines('service', down(state, zone, -1))) replica.receive(message, bytes);
    return replica;
  };
  return { clock, state, west, send, catalogueFor };
}

describe('GlobalState', () => {
  it('refuses a zone claiming another name than its certificate, and a second stream for one name', () => {
    const { state } = setup();
    expect(codeOf(() => state.hello('west', helloOf('east')))).toBe(CODE.ZONE_NAME_MISMATCH);
    const first = state.hello('west', helloOf('west'));
    expect(codeOf(() => state.hello('west', helloOf('west', 'another-epoch')))).toBe(CODE.ZONE_CONFLICT);
    state.disconnect('west', first.connection);
    expect(state.hello('west', helloOf('west')).welcome.applied).toEqual({ service: 0, ingress: 0, trust: 0 });
  });

  it('lets only the owning zone change its records; other zones see them, never their own', () => {
    const { state, west, send, catalogueFor } = setup();
    const w = state.hello('west', helloOf('west')).connection;
    const e = state.hello('east', helloOf('east')).connection;
    west.set(...serviceEntry(service('west', 'orders', 2, 3)));
    send('west', w, west, 0);
    expect([...catalogueFor('east').records()].map(([k]) => k)).toEqual(['west/shop/orders']);
    expect(catalogueFor('west').size).toBe(0);
    // East removing or rewriting west's record is refused, and west's record stays.
    const forged = new VersionedSet<unknown>();
    forged.set(...serviceEntry(service('west', 'orders', 0, 3)));
    expect(codeOf(() => send('east', e, forged, 0))).toBe(CODE.ZONE_SYNC_FOREIGN_RECORD);
    forged.remove('west/shop/orders');
    expect(codeOf(() => send('east', e, forged, 0))).toBe(CODE.ZONE_SYNC_FOREIGN_RECORD);
    expect(catalogueFor('east').get('west/shop/orders')).toMatchObject({ localities: [{ healthy: 2, total: 3 }] });
  });

  it('deletes nothing when a stream drops; a lapsed lease withdraws the zone with reason zone-offline; its return restores it', () => {
    const { clock, state, west, send } = setup();
    const w = state.hello('west', helloOf('west')).connection;
    state.hello('east', helloOf('east'));
    west.set(...serviceEntry(service('west', 'orders')));
    send('west', w, west, 0);
    const seenByEast = state.catalogue.service.version;
    state.disconnect('west', w);
    clock.now += 30_000;
    expect(state.expireLeases()).toEqual([]);
    expect(down(state, 'east', seenByEast).upserts).toHaveLength(0);
    expect(down(state, 'east', seenByEast).removes).toHaveLength(0);
    clock.now += 1;
    // East is silent too: both lapse, and east's view loses west's service with the reason.
    expect(state.expireLeases()).toEqual(['west', 'east']);
    // Nothing is sent before the store holds it.
    expect(down(state, 'east', seenByEast).removes).toHaveLength(0);
    state.publish();
    expect(state.downDelta('east', 'service', seenByEast)).toBeUndefined();
    state.markDurable(state.versions());
    expect(down(state, 'east', seenByEast).removes).toEqual([{ key: 'west/shop/orders', reason: 'zone-offline' }]);
    expect(state.status('west')).toMatchObject({ state: 'offline', leaseExpiries: 1, records: { service: 1 } });
    const back = state.hello('west', helloOf('west'));
    expect(back.welcome.applied.service).toBe(1);
    settle(state);
    expect(down(state, 'east', seenByEast + 1).upserts.map((u) => u.key)).toEqual(['west/shop/orders']);
  });

  it('renews the lease on any message, and a stalled stream that speaks again brings its zone back', () => {
    const { clock, state } = setup();
    const w = state.hello('west', helloOf('west')).connection;
    for (let i = 0; i < 5; i++) {
      clock.now += 20_000;
      state.receive('west', w, { t: 'renew' }, 1);
      expect(state.expireLeases()).toEqual([]);
    }
    clock.now += 30_001;
    expect(state.expireLeases()).toEqual(['west']);
    expect(state.receive('west', w, { t: 'renew' }, 1).changed).toBe(true);
    expect(state.status('west')?.state).toBe('online');
  });

  it('restarts from its snapshots: zones resume with deltas, catalogue versions are never reused', () => {
    const { state, west, send } = setup();
    const w = state.hello('west', helloOf('west')).connection;
    state.hello('east', helloOf('east'));
    for (let i = 0; i < 5; i++) west.set(...serviceEntry(service('west', `s${i}`)));
    send('west', w, west, 0);
    state.reservationDue();
    const eastVersion = state.catalogue.service.version;
    const restarted = new GlobalState({ leaseMs: 30_000, exportDefault: 'all' }, { meta: state.meta(), zones: ['west', 'east'].map((z) => state.snapshot(z)!) });
    const again = restarted.hello('west', helloOf('west'));
    expect(again.welcome).toMatchObject({ applied: { service: 5 }, resume: true });
    expect(again.welcome.globalEpoch).toBe(state.globalEpoch);
    // East asked from the version it held: nothing new, and no reset.
    const east = restarted.hello('east', helloOf('east', 'epoch-east', { globalEpoch: state.globalEpoch, down: { ...zero, service: eastVersion } }));
    const delta = down(restarted, 'east', east.down.service);
    expect(delta).toMatchObject({ reset: false, upserts: [], removes: [] });
    // The next change gets a version above the reservation, past anything handed out before.
    west.set(...serviceEntry(service('west', 's9')));
    send('west', again.connection, west, 5, restarted);
    expect(restarted.catalogue.service.version).toBeGreaterThan(eastVersion);
    // A zone with a new epoch (it lost its state) starts from 0, and its reset replaces its records.
    restarted.disconnect('west', again.connection);
    const fresh = restarted.hello('west', helloOf('west', 'epoch-new'));
    expect(fresh.welcome).toMatchObject({ applied: { service: 0 }, resume: false });
    const rebuilt = new VersionedSet<unknown>();
    rebuilt.set(...serviceEntry(service('west', 'only')));
    send('west', fresh.connection, rebuilt, -1, restarted);
    expect([...restarted.catalogue.service.records()].map(([k]) => k)).toEqual(['west/shop/only']);
  });
});
