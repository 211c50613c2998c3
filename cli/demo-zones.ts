/**
 * `trellis demo --zones 2`: the demo across two zones on loopback. A global control plane; zones east and
 * west, each with its zone control plane and its ingress; frontend in east, payments only in west, orders
 * in both. frontend's checkout goes to orders in its own zone (locality), whose charge crosses to payments
 * in west through west's ingress (payments answers with orders' own SPIFFE ID); frontend's own try at payments
 * is refused by west's policy, across the zones, naming the rule; then orders dies in east and frontend's
 * checkouts fail over to orders in west (the time printed). Exits 0 only when every call behaved so.
 */
import { DENIED_BY_HEADER } from '../proxy/core/tunnel-protocol.js';
import { freePort, type DemoMesh, type DemoProcess } from '../demo/demo-mesh.js';
import { callUpstream, startSampleApps, type SampleApps, type UpstreamReply } from '../demo/sample-apps.js';
import { ZonesDemo, type DemoZone } from '../demo/zones-mesh.js';
import { untilSignal } from './control.js';
import { DEMO_POLICY, describeReply, waitForCheckout } from './demo-policy.js';

/** How long the first cross-zone call may take: the zones' exports reach each other through the global. */
const CROSS_ZONE_WAIT_MS = 45_000;
/** How long frontend's checkouts may take to reach west's orders once east's is gone (issue: within 5 s). */
const FAILOVER_WAIT_MS = 15_000;

function parsed<T>(reply: UpstreamReply): T | undefined {
  try {
    return JSON.parse(reply.body) as T;
  } catch {
    return undefined;
  }
}

interface Chain {
  readonly order?: UpstreamReply;
}
interface OrderReply {
  readonly zone?: string;
  readonly payment?: UpstreamReply;
}
interface PaymentReply {
  readonly zone?: string;
  /** The caller's SPIFFE ID as payments' own agent verified it (x-forwarded-client-cert). */
  readonly caller?: string | null;
}

async function ingressStreams(ingress: DemoProcess): Promise<string[]> {
  const text = await fetch(`http://127.0.0.1:${String(ingress.ready.admin)}/metrics`).then((r) => r.text(), () => '');
  return text.split('\n').filter((l) => l.startsWith('trellis_ingress_streams_total'));
}

interface Started {
  readonly east: DemoZone;
  readonly west: DemoZone;
  readonly eastApps: SampleApps;
  readonly westApps: SampleApps;
  /** East's orders agent: stopping it is orders dying in east. */
  readonly ordersEast: DemoProcess;
}

async function startAll(mesh: DemoMesh, print: (line?: string) => void, apps: SampleApps[]): Promise<Started> {
  const zones = new ZonesDemo(mesh);
  const global = await zones.startGlobal();
  print(`  global control plane  ${String(global.ready.api)}   admin ${String(global.ready.admin)}`);
  const east = await zones.startZone('east', DEMO_POLICY);
  const west = await zones.startZone('west', DEMO_POLICY);
  for (const z of [east, west]) {
    print(`  zone ${z.name.padEnd(5)} control    ${z.api}   admin ${String(z.control.ready.admin)}`);
    print(`  zone ${z.name.padEnd(5)} ingress    ${z.ingressAddress}   admin http://127.0.0.1:${String(z.ingress.ready.admin)}`);
  }
  const eastPorts = { frontendToOrders: await freePort(), frontendToPayments: await freePort(), ordersToPayments: await freePort() };
  const westPorts = { frontendToOrders: await freePort(), frontendToPayments: await freePort(), ordersToPayments: await freePort() };
  const eastApps = await startSampleApps(eastPorts, DENIED_BY_HEADER, 'east');
  apps.push(eastApps);
  const westApps = await startSampleApps(westPorts, DENIED_BY_HEADER, 'west');
  apps.push(westApps);
  const ordersEast = await mesh.startAgent({ service: 'orders', appPort: eastApps.ports.orders, upstreams: [`payments=${eastPorts.ordersToPayments}`] }, east, 'orders-east');
  const agents = [
    { zone: west, agent: await mesh.startAgent({ service: 'payments', appPort: westApps.ports.payments, upstreams: [] }, west, 'payments-west') },
    { zone: west, agent: await mesh.startAgent({ service: 'orders', appPort: westApps.ports.orders, upstreams: [`payments=${westPorts.ordersToPayments}`] }, west, 'orders-west') },
    { zone: east, agent: ordersEast },
    { zone: east, agent: await mesh.startAgent({ service: 'frontend', appPort: eastApps.ports.frontend, upstreams: [`orders=${eastPorts.frontendToOrders}`, `payments=${eastPorts.frontendToPayments}`] }, east, 'frontend-east') },
  ];
  for (const { zone, agent } of agents) print(`  ${agent.name.padEnd(14)} ${zone.name.padEnd(5)} ${String(agent.ready.spiffeId)}`);
  return { east, west, eastApps, westApps, ordersEast };
}

/**
 * Stops east's orders agent (as a pod's deletion would) and calls frontend's checkout until an order is
 * served in west: how long that took from the stop, and how many checkouts failed meanwhile.
 */
async function failOver(ordersEast: DemoProcess, frontendPort: number): Promise<{ servedIn: string | undefined; ms: number; calls: number; failed: number }> {
  const started = Date.now();
  const exited = new Promise((r) => ordersEast.child.once('exit', r));
  ordersEast.child.kill('SIGTERM');
  let calls = 0;
  let failed = 0;
  while (Date.now() - started < FAILOVER_WAIT_MS) {
    const reply = await callUpstream(frontendPort, 'GET', '/checkout', DENIED_BY_HEADER);
    calls++;
    const order = parsed<Chain>(reply)?.order;
    const zone = order === undefined ? undefined : parsed<OrderReply>(order)?.zone;
    if (reply.status !== 200) failed++;
    else if (zone === 'west') {
      const ms = Date.now() - started;
      await exited;
      return { servedIn: zone, ms, calls, failed };
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { servedIn: undefined, ms: Date.now() - started, calls, failed };
}

/** The zones demo; returns whether everything behaved as the policy and the zones say. */
export async function runZonesDemo(mesh: DemoMesh, out: NodeJS.WritableStream, keepRunning: boolean): Promise<boolean> {
  const print = (line = ''): void => void out.write(`${line}\n`);
  print('Trellis demo: a service mesh across two zones on loopback\n');
  const apps: SampleApps[] = [];
  try {
    const { east, west, eastApps, westApps, ordersEast } = await startAll(mesh, print, apps);
    print('\nPolicy (both zones): frontend → orders allowed; orders → payments allowed for POST; frontend → payments denied.');
    print('payments runs only in west; orders runs in east and west; frontend runs in east.\n');

    const checks: { what: string; ok: boolean }[] = [];
    // Until east's orders has joined, frontend rightly fails over to west's: wait for the mesh to settle
    // (an order served in east), and judge locality on that; it fails only if east never serves.
    const servedInEast = (r: UpstreamReply): boolean => {
      const o = parsed<Chain>(r)?.order;
      return o !== undefined && parsed<OrderReply>(o)?.zone === 'east';
    };
    const checkout = await waitForCheckout(eastApps.ports.frontend, CROSS_ZONE_WAIT_MS, servedInEast);
    const order = parsed<Chain>(checkout)?.order;
    const orderBody = order === undefined ? undefined : parsed<OrderReply>(order);
    const payment = orderBody?.payment;
    const paymentBody = payment === undefined ? undefined : parsed<PaymentReply>(payment);
    print('1. Cross-zone, allowed: frontend (east) → orders (east, its own zone first) → payments (west, through west\'s ingress)');
    print(`   frontend → orders:    ${order === undefined ? describeReply(checkout) : `${describeReply(order)}, served in ${orderBody?.zone ?? '?'}`}`);
    print(`   orders → payments:    ${payment === undefined ? 'not reached' : `${describeReply(payment)}, served in ${paymentBody?.zone ?? '?'}`}`);
    print(`   payments saw caller:  ${paymentBody?.caller ?? 'none'} (the caller's own identity, end to end through the ingress)`);
    checks.push({ what: 'frontend (east) → orders served in east (locality)', ok: order?.status === 201 && orderBody?.zone === 'east' });
    checks.push({ what: 'orders (east) → payments (west) through west\'s ingress: 200', ok: payment?.status === 200 && paymentBody?.zone === 'west' });
    checks.push({ what: 'payments (west) saw orders\' own SPIFFE ID, not the ingress\'s', ok: paymentBody?.caller === String(ordersEast.ready.spiffeId) });

    const hitsBefore = westApps.paymentsHits();
    const sneak = await callUpstream(eastApps.ports.frontend, 'GET', '/sneak', DENIED_BY_HEADER);
    const sneakReply = sneak.status === 200 ? (parsed<{ payment: UpstreamReply }>(sneak)?.payment ?? sneak) : sneak;
    print('\n2. Cross-zone, denied: frontend (east) → payments (west); west\'s policy has a deny rule naming frontend');
    print(`   frontend → payments:  ${describeReply(sneakReply)}`);
    print(`      ${sneakReply.body}`);
    checks.push({ what: 'frontend (east) → payments (west) refused by payments-callers rule 1', ok: sneakReply.status === 403 && (sneakReply.deniedBy ?? '').includes('payments-callers') });
    checks.push({ what: 'payments saw no denied request', ok: westApps.paymentsHits() === hitsBefore });

    const streams = await ingressStreams(west.ingress);
    print('\nWest\'s ingress (a few lines of /metrics): it relays the callers\' own TLS, it is not the caller');
    print((streams.slice(0, 6).join('\n') || '(none yet)').split('\n').map((l) => `   ${l}`).join('\n'));
    checks.push({ what: 'west\'s ingress counted the cross-zone streams', ok: streams.some((l) => /result="ok".*\} [1-9]/.test(l)) });

    print('\n3. Failover: orders dies in east (its agent stopped); frontend\'s checkouts go to orders in west');
    const failover = await failOver(ordersEast, eastApps.ports.frontend);
    print(`   ${failover.servedIn === 'west' ? `served by orders in west ${(failover.ms / 1000).toFixed(1)} s after east's orders stopped` : `not served in west within ${FAILOVER_WAIT_MS / 1000} s`}; ${failover.failed} of ${failover.calls} checkouts failed meanwhile`);
    checks.push({ what: `frontend's checkouts fail over to orders in west within ${FAILOVER_WAIT_MS / 1000} s`, ok: failover.servedIn === 'west' });

    print('\nVerdict:');
    for (const c of checks) print(`   ${c.ok ? 'ok  ' : 'FAIL'}  ${c.what}`);
    const allOk = checks.every((c) => c.ok);
    print(allOk ? '\nEverything behaved as the policy and the zones say.' : '\nSomething did not behave as expected (see above).');
    if (keepRunning) {
      print(`\nThe mesh keeps running. Try:
   curl http://127.0.0.1:${eastApps.ports.frontend}/checkout   # east → west, allowed (east's orders is stopped: west's serves)
   curl http://127.0.0.1:${eastApps.ports.frontend}/sneak      # east → west, denied by west's policy
   curl ${String(east.control.ready.admin)}/registry
   policies in ${east.policyDir} and ${west.policyDir}
Ctrl-C stops everything.`);
      await untilSignal();
    }
    return allOk;
  } finally {
    await Promise.all(apps.map((a) => a.close()));
  }
}
