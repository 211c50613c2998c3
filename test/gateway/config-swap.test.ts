/**
 * The config swap's rules without a mesh (config-swap.ts): offers are put in force one at a time in the
 * order they came, whatever each waits for; a listener that cannot bind refuses the offer whole (the
 * routes and listeners in force stay, the destinations it added are taken back); a new mesh section is
 * refused before anything is touched; destinations are added before the swap and removed after it.
 */
import { describe, expect, it } from 'vitest';
import type { AddressInfo } from 'node:net';
import { silentLogger } from '../../common/log.js';
import type { UpstreamSpec } from '../../agent/config.js';
import { parseGatewayConfig } from '../../gateway/config-reader.js';
import type { GatewayConfig, ListenerSpec } from '../../gateway/config-types.js';
import { ConfigSwap, type GatewayState } from '../../gateway/config-swap.js';
import { ListenerSet } from '../../gateway/listener-set.js';
import type { RunningListener } from '../../gateway/listeners.js';
import { RouteTable } from '../../gateway/route-table.js';

const config = (listeners: string, services: string[], control = 'https://127.0.0.1:15012'): GatewayConfig =>
  parseGatewayConfig(`mesh: { control: "${control}" }
listeners:
${listeners}routes:
${services.map((s) => `  - { name: ${s}, match: { path: { prefix: /${s} } }, destination: { service: ${s}, namespace: shop } }\n`).join('')}`, '/etc/gw/gw.yaml');

const WEB = '  - { name: web, port: 8080, protocol: http }\n';

interface Harness {
  swap: ConfigSwap;
  calls: string[][];
  opened: string[];
  closed: string[];
  /** Delays the next setUpstreams by this many ms. */
  delays: number[];
}

function harness(initial: GatewayConfig, refuse: (spec: ListenerSpec) => boolean = () => false): Harness {
  const h: Harness = { swap: undefined as unknown as ConfigSwap, calls: [], opened: [], closed: [], delays: [] };
  const open = async (spec: ListenerSpec): Promise<RunningListener> => {
    if (refuse(spec)) throw new Error('EADDRINUSE');
    h.opened.push(`${spec.name}:${spec.port}`);
    return { spec, address: () => ({ address: spec.address, family: 'IPv4', port: spec.port }) as AddressInfo, close: async () => void h.closed.push(`${spec.name}:${spec.port}`) };
  };
  const listeners = new ListenerSet(open, silentLogger());
  const build = (c: GatewayConfig): GatewayState => ({ config: c, routes: new RouteTable(c), edge: { admit: async () => true, ready: async () => undefined, close: () => undefined } });
  const agent = {
    async setUpstreams(next: readonly UpstreamSpec[]) {
      h.calls.push(next.map((u) => u.service).sort());
      const delay = h.delays.shift() ?? 0;
      if (delay > 0) await new Promise((r) => setTimeout(r, delay));
      return { notSent: [], waiting: [] };
    },
  };
  void listeners.prepare(initial).then((p) => p.commit(0));
  h.swap = new ConfigSwap(build(initial), { agent, listeners, build, graceMs: 0, log: silentLogger() });
  return h;
}

describe('the gateway config swap', () => {
  it('puts offers in force one at a time, in the order they came', async () => {
    const h = harness(config(WEB, ['a']));
    await new Promise((r) => setTimeout(r, 10));
    h.delays.push(200);
    const first = h.swap.apply(config(WEB, ['a', 'b']), 'first');
    const second = h.swap.apply(config(WEB, ['c']), 'second');
    await Promise.all([first, second]);
    expect(h.swap.current().config.routes.map((r) => r.name)).toEqual(['c']);
    // Union before each swap, the new set after it: b is added before the first, a and b leave after the second.
    expect(h.calls[0]).toEqual(['a', 'b']);
    expect(h.calls).toContainEqual(['a', 'b', 'c']);
    expect(h.calls.at(-1)).toEqual(['c']);
    expect(h.calls.indexOf(h.calls.find((c) => c.join() === 'a,b,c') as string[])).toBeGreaterThan(0);
  });

  it('refuses an offer whose listener cannot bind, keeps what is in force, and takes its destinations back', async () => {
    const initial = config(WEB, ['a']);
    const h = harness(initial, (spec) => spec.name === 'taken');
    await new Promise((r) => setTimeout(r, 10));
    const offer = config(`${WEB}  - { name: extra, port: 8081, protocol: http }\n  - { name: taken, port: 8082, protocol: http }\n`, ['a', 'b']);
    const err = await h.swap.apply(offer, 'offer').catch((e: unknown) => e as Error & { code?: string });
    expect(err).toMatchObject({ code: 'TRELLIS_GATEWAY_RELOAD_REFUSED' });
    expect((err as Error).message).toMatch(/^offer: listener taken cannot bind 0\.0\.0\.0:8082: EADDRINUSE/);
    expect(h.swap.current().config).toBe(initial);
    // extra was bound for the offer and closed with it; web, in force, untouched.
    expect(h.opened).toEqual(['web:8080', 'extra:8081']);
    expect(h.closed).toEqual(['extra:8081']);
    await new Promise((r) => setTimeout(r, 10));
    expect(h.calls).toEqual([['a', 'b'], ['a']]);
  });

  it('refuses a new mesh section before touching anything', async () => {
    const initial = config(WEB, ['a']);
    const h = harness(initial);
    const err = await h.swap.apply(config(WEB, ['b'], 'https://10.0.0.9:15012'), 'offer').catch((e: unknown) => e as Error);
    expect((err as Error).message).toMatch(/mesh section changed.*restart the gateway/);
    expect(h.calls).toEqual([]);
    expect(h.swap.current().config).toBe(initial);
  });

  it('keeps an unchanged listener, replaces a changed one and closes a removed one only once the offer is in force', async () => {
    const h = harness(config(`${WEB}  - { name: old, port: 9000, protocol: http }\n`, ['a']));
    await new Promise((r) => setTimeout(r, 10));
    await h.swap.apply(config(`  - { name: web, port: 8080, protocol: http }\n  - { name: new, port: 9001, protocol: http }\n`, ['a']), 'same web');
    expect(h.opened).toEqual(['web:8080', 'old:9000', 'new:9001']);
    await new Promise((r) => setTimeout(r, 10));
    expect(h.closed).toEqual(['old:9000']);
    await h.swap.apply(config(`  - { name: web, port: 8080, protocol: http }\n  - { name: new, port: 9001, protocol: http }\n`.replace('  - { name: web, port: 8080, protocol: http }', '  - { name: web, port: 8080, address: 127.0.0.1, protocol: http }'), ['a']), 'web changed');
    await new Promise((r) => setTimeout(r, 10));
    expect(h.opened.at(-1)).toBe('web:8080');
    expect(h.closed).toEqual(['old:9000', 'web:8080']);
  });
});
