/**
 * The multi-zone story, in network namespaces (test/helpers/netns-zones.ts): two zones, each a private
 * network behind its own NAT router, joined by an "internet" bridge that also holds the global control plane.
 *
 *   internet 198.18.0.0/24:  east's router · west's router (each forwards :15443 to its zone's ingress) · global
 *   east 10.1.0.0/24:  east-cp (zone control plane) · east-ingress · east-node (frontend; orders ×3: orders-east-a/b/c)
 *   west 10.2.0.0/24:  west-cp · west-ingress · west-node (payments, orders-west) · west-vm (billing)
 *
 * The VM is a host of its own on west's private network, beside the cluster as a VM in the same VPC is:
 * its agent joins west's control plane like any workload, and west's ingress reaches it on the private
 * side. (A VM elsewhere on the internet would need its tunnel port public, which is what an ingress spares.)
 * Each zone runs its ingress; the story's calls go from east to west, so west's is the one it kills.
 *
 * The story, in order:
 * - the private networks are not routable to each other: east-node cannot connect to west-node at all;
 * - frontend in east calls payments, which only west has, through west's ingress; payments' sidecar logs
 *   and counts frontend (its own SPIFFE ID, zone east), not the ingress;
 * - a cross-zone call west's policy denies gets 403 naming the rule, and the denial log names frontend's
 *   SPIFFE ID; frontend calls billing on west's VM;
 * - orders dies in east (all three instances): frontend's calls go to west's orders, with no failed request
 *   beyond those in flight, and the failover time is printed;
 * - one east instance returns: with 1 of 3 healthy, east keeps a share and spills the rest to west;
 * - west is cut off (its router's internet link down): orders moves wholly to east, nothing fails but what
 *   was sent to west, and the failover time is printed; then west comes back;
 * - the global control plane stops: cross-zone calls keep flowing; while it is down west's ingress is
 *   killed (payments unreachable) and restarted (payments again, and a failover to west's orders works at
 *   once); then the global comes back and both zones are online there;
 * - tcpdump on the internet bridge, running from before the first process started, saw only TLS: every
 *   TCP payload is TLS records, and no path or body of any call is on the wire.
 *
 * Every namespace, process and rule is removed at the end, also when a test fails or the run is killed.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { listLabNamespaces, netnsRequirements, type LabHost, type LabProcess, type NetnsLab } from '../helpers/netns.js';
import { createZonesLab, type LabZone, type ZonesLab } from '../helpers/netns-zones.js';
import { readPcap, tcpStreams, tlsRecords } from '../helpers/pcap.js';
import { allow, eventually, requireBuild, trellis } from './mesh-support.js';
import { counter, joinToken, servedBy, startTrellis, startWorkloadHost, type LoadResult, type WorkloadHost } from './netns-zone-support.js';

const need = netnsRequirements(['curl', 'tcpdump', 'sysctl']);

const GLOBAL_PORT = 15020;
const CONTROL_PORT = 15012;
const INGRESS_PORT = 15443;
/** frontend's upstream ports on east-node's loopback. */
const UPSTREAM = { payments: 7001, orders: 7002, billing: 7003 } as const;
/** A string in every path the story calls: it must never cross the internet in clear. */
const MARKER = 'zone-marker-5c1e';
/** Slower than this, a request to east's healthy instance was held up by something (a dial to the lost zone). */
const SLOW_MS = 1_000;

const PAYMENTS_POLICY = `apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: payments-callers, namespace: default }
spec:
  destination: payments
  mode: enforce
  rules:
    - action: deny
      from: [east/default/*]
      http: { paths: [/${MARKER}/refunds/*] }
    - action: allow
      from: [frontend]
`;

const upstream = (name: keyof typeof UPSTREAM, path: string): string => `http://127.0.0.1:${UPSTREAM[name]}/${MARKER}${path}`;

describe.skipIf(need.skip)('two zones in network namespaces: the multi-zone story', { timeout: 60_000 }, () => {
  let zl: ZonesLab;
  let lab: NetnsLab;
  let runId = '';
  let dir = '';
  let east: LabZone;
  let west: LabZone;
  let h: Record<'global' | 'eastCp' | 'eastIngress' | 'eastNode' | 'westCp' | 'westIngress' | 'westNode' | 'vm', LabHost>;
  let eastNode: WorkloadHost;
  let westNode: WorkloadHost;
  let global: LabProcess;
  let westIngress: LabProcess;
  let wire: LabProcess;
  let pcap = '';
  const agents = new Map<string, LabProcess>();

  const globalArgs = (): string[] => ['control', 'run', '--mode', 'global', '--data-dir', join(dir, 'global'), '--policy', join(dir, 'global-policy'),
    '--listen', `${h.global.ipv4}:${GLOBAL_PORT}`, '--admin', '127.0.0.1:15021', '--log-level', 'warn'];
  // The default 30 s zone lease: a zone cut off is found by the callers' outer-session PINGs, not the lease.

  async function startZoneControl(zone: LabZone, host: LabHost, policies: Readonly<Record<string, string>>): Promise<void> {
    const policyDir = join(dir, zone.name, 'policy');
    mkdirSync(policyDir, { recursive: true });
    for (const [file, yaml] of Object.entries(policies)) writeFileSync(join(policyDir, file), yaml);
    const tokenFile = join(dir, `${zone.name}.zone-token`);
    const made = await trellis(['zone', 'token', 'create', '--zone', zone.name, '--data-dir', join(dir, 'global'), '--output', tokenFile]);
    expect(made.code, made.stderr).toBe(0);
    await startTrellis(lab, host, ['control', 'run', '--data-dir', join(dir, zone.name, 'control'), '--policy', policyDir, '--zone', zone.name,
      '--listen', `${host.ipv4}:${CONTROL_PORT}`, '--admin', '127.0.0.1:15014', '--log-level', 'warn',
      '--global', `https://${h.global.ipv4}:${GLOBAL_PORT}`, '--global-ca', join(dir, 'global', 'trust-bundle.pem'), '--global-token-file', tokenFile]);
  }

  const zoneCa = (zone: LabZone): string => join(dir, zone.name, 'control', 'trust-bundle.pem');
  const zoneApi = (zone: LabZone): string => `https://${(zone === east ? h.eastCp : h.westCp).ipv4}:${CONTROL_PORT}`;

  /** `zone`'s ingress on `host` (west's unless told), reached from the internet through its router's forward. */
  async function startIngress(zone: LabZone = west, host: LabHost = h.westIngress): Promise<LabProcess> {
    const token = await joinToken(join(dir, zone.name, 'control'), join(dir, 'tokens', zone.name), 'trellis-ingress', 'trellis-system', 'ingress');
    return startTrellis(lab, host, ['ingress', 'run', '--control', zoneApi(zone), '--token-file', token, '--ca-file', zoneCa(zone),
      '--listen', `${host.ipv4}:${INGRESS_PORT}`, '--public-address', `${zone.publicAddress}:${INGRESS_PORT}`,
      '--admin', '127.0.0.1:15000', '--grace', '1s', '--log-level', 'warn']);
  }

  /** An agent on `host` beside app port `appPort`; `slot` spaces the ports of several agents on one host. */
  async function startAgent(zone: LabZone, host: LabHost, name: string, service: string, slot: number, appPort: number | null, upstreams: readonly string[] = []): Promise<void> {
    const token = await joinToken(join(dir, zone.name, 'control'), join(dir, 'tokens', name), service);
    const agent = await startTrellis(lab, host, ['agent', 'run', '--control', zoneApi(zone), '--token-file', token, '--ca-file', zoneCa(zone), '--service', service,
      ...(appPort === null ? [] : ['--app-port', String(appPort), '--protocol', 'http']), ...upstreams.flatMap((u) => ['--upstream', u]),
      '--tunnel', `0.0.0.0:${15008 + 10 * slot}`, '--admin', `127.0.0.1:${15000 + 10 * slot}`, '--health-interval', '500ms', '--drain-grace', '1s', '--log-level', 'info']);
    agents.set(name, agent);
  }

  const adminOf = (slot: number, path: string): string => `http://127.0.0.1:${15000 + 10 * slot}${path}`;

  async function curlIn(host: LabHost, url: string): Promise<string> {
    return (await lab.exec(host, ['curl', '-sS', '--max-time', '5', url])).stdout;
  }

  beforeAll(async () => {
    requireBuild();
    zl = await createZonesLab(['east', 'west']);
    lab = zl.lab;
    runId = lab.runId;
    [east, west] = [zl.zone('east'), zl.zone('west')];
    h = {
      global: await zl.addInternetHost('global'),
      eastCp: await east.addHost('east-cp'),
      eastIngress: await east.addHost('east-ingress'),
      eastNode: await east.addHost('east-node'),
      westCp: await west.addHost('west-cp'),
      westIngress: await west.addHost('west-ingress'),
      westNode: await west.addHost('west-node'),
      vm: await west.addHost('west-vm'),
    };
    await Promise.all([west.forward(INGRESS_PORT, h.westIngress), east.forward(INGRESS_PORT, h.eastIngress)]);
    dir = mkdtempSync(join(tmpdir(), 'trellis-netns-zones-'));
    mkdirSync(join(dir, 'global-policy'));

    // The wire first, so every connection that ever crosses the internet is seen from its first byte.
    pcap = join(dir, 'internet.pcap');
    // A 32 MiB capture buffer: on a loaded machine the default 2 MiB drops packets, and a stream with a hole cannot be read as TLS.
    wire = lab.spawn(lab.switch, ['tcpdump', '-i', lab.network.bridge, '--immediate-mode', '-U', '-B', '32768', '-n', '-Z', 'root', '-w', pcap, 'tcp']);
    await wire.waitForOutput(/listening on/);

    global = await startTrellis(lab, h.global, globalArgs());
    await Promise.all([
      startZoneControl(east, h.eastCp, { 'orders.yaml': allow('orders', ['frontend']) }),
      startZoneControl(west, h.westCp, { 'payments.yaml': PAYMENTS_POLICY, 'orders.yaml': allow('orders', ['frontend']), 'billing.yaml': allow('billing', ['frontend']) }),
    ]);
    // Each zone has its ingress; the story's calls go east → west, so west's is the one it kills.
    [westIngress] = await Promise.all([startIngress(), startIngress(east, h.eastIngress)]);

    [eastNode, westNode] = await Promise.all([
      startWorkloadHost(lab, h.eastNode, dir, { 'orders-east-a': 8081, 'orders-east-b': 8082, 'orders-east-c': 8083 }),
      startWorkloadHost(lab, h.westNode, dir, { payments: 8080, 'orders-west': 8081 }),
      startWorkloadHost(lab, h.vm, dir, { billing: 8080 }),
    ]);
    await Promise.all([
      startAgent(west, h.westNode, 'payments', 'payments', 0, 8080),
      startAgent(west, h.westNode, 'orders-west', 'orders', 1, 8081),
      startAgent(west, h.vm, 'billing', 'billing', 0, 8080),
      startAgent(east, h.eastNode, 'orders-east-a', 'orders', 1, 8081),
      startAgent(east, h.eastNode, 'orders-east-b', 'orders', 2, 8082),
      startAgent(east, h.eastNode, 'orders-east-c', 'orders', 3, 8083),
    ]);
    await startAgent(east, h.eastNode, 'frontend', 'frontend', 0, null, Object.entries(UPSTREAM).map(([name, port]) => `${name}=${port}`));
  }, 150_000);

  afterAll(async () => {
    await zl?.cleanup();
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
    if (runId !== '') expect(listLabNamespaces(runId)).toEqual([]);
  });

  it('keeps the zones\' private networks apart: east cannot reach a west workload\'s private address', async () => {
    // West's ingress is reachable at west's public address (the one way in) ...
    expect(await eastNode.connect(west.publicAddress, INGRESS_PORT)).toEqual({ ok: true });
    // ... but nothing routes to west's private range from east: payments' tunnel port is out of reach.
    const direct = await eastNode.connect(h.westNode.ipv4, 15008);
    expect(direct.ok).toBeUndefined();
    expect(direct.error).toMatch(/EHOSTUNREACH|ENETUNREACH|ETIMEDOUT/);
  });

  it('frontend in east calls payments, only in west, through west\'s ingress; payments\' sidecar sees frontend itself', async () => {
    const res = await eventually(async () => {
      const r = await eastNode.call(upstream('payments', '/pay'));
      return r.status === 200 ? r : undefined;
    }, 'payments answers across the zones', 30_000);
    expect(res.body).toBe(`payments GET /${MARKER}/pay\n`);
    // The access log and the metrics of payments' sidecar name frontend of zone east: the identity its
    // certificate proves through the nested TLS, not the ingress's (trellis-system/trellis-ingress).
    const accessLine = /"source":"default\/frontend","sourceZone":"east","destination":"default\/payments","method":"GET","path":"\/zone-marker-5c1e\/pay","status":200/;
    await eventually(async () => accessLine.test(agents.get('payments')?.output() ?? ''), 'payments\' sidecar logs frontend\'s call', 5_000);
    const metrics = (await westNode.call(adminOf(0, '/metrics'))).body ?? '';
    expect(counter(metrics, 'trellis_http_requests_total', { source: 'default/frontend', destination: 'default/payments' })).toBeGreaterThan(0);
    expect(metrics).not.toContain('source="trellis-system/trellis-ingress"');
    const ingressMetrics = await curlIn(h.westIngress, 'http://127.0.0.1:15000/metrics');
    expect(counter(ingressMetrics, 'trellis_ingress_streams_total', { result: 'ok', destination: 'default/payments' })).toBeGreaterThan(0);
  });

  it('a cross-zone call west\'s policy denies gets 403 naming the rule; the denial names frontend\'s SPIFFE ID', async () => {
    const res = await eastNode.call(upstream('payments', '/refunds/7'));
    expect(res.status).toBe(403);
    expect(res.headers?.['trellis-denied-by']).toBe('default/payments-callers#0');
    expect(westNode.process.output()).not.toContain('/refunds/');
    expect(agents.get('payments')?.output()).toContain('spiffe://trellis.local/ns/default/sa/frontend');
  });

  it('frontend calls billing on west\'s VM, whose agent joined west\'s control plane', async () => {
    const res = await eventually(async () => {
      const r = await eastNode.call(upstream('billing', '/invoice'));
      return r.status === 200 ? r : undefined;
    }, 'billing on the VM answers across the zones', 30_000);
    expect(res.body).toBe(`billing GET /${MARKER}/invoice\n`);
    await eventually(async () => /"source":"default\/frontend","sourceZone":"east"/.test(agents.get('billing')?.output() ?? ''), 'billing\'s sidecar logs the call', 5_000);
  });

  /** Waits until frontend's config lists orders endpoints of `zone` (the failover target must be known first). */
  async function frontendKnowsOrdersIn(zone: string): Promise<void> {
    await eventually(async () => {
      const view = JSON.parse((await eastNode.call(adminOf(0, '/config'))).body ?? '{}') as { snapshot?: { upstreams: { name: string; endpoints: { zone: string }[] }[] } };
      return view.snapshot?.upstreams.find((u) => u.name === 'orders')?.endpoints.some((e) => e.zone === zone);
    }, `orders of ${zone} in frontend's config`, 30_000);
  }

  it('orders dies in east and frontend\'s calls go to west\'s orders, nothing failed but what was in flight', async () => {
    await frontendKnowsOrdersIn('west');
    // Locality: while east has healthy orders, every call stays in east (west's is known, and never used).
    const local: string[] = [];
    for (let i = 0; i < 20; i++) local.push(servedBy(await eastNode.call(upstream('orders', `/local-${i}`))));
    expect(local.filter((s) => !s.startsWith('orders-east-')), local.join(', ')).toEqual([]);
    await eastNode.startLoad(upstream('orders', '/load'), { concurrency: 2 });
    await new Promise((r) => setTimeout(r, 500));
    const killedAt = Date.now();
    await Promise.all(['orders-east-a', 'orders-east-b', 'orders-east-c'].map((app) => eastNode.stopApp(app)));
    await eventually(async () => servedBy(await eastNode.call(upstream('orders', '/'))) === 'orders-west', 'orders served from west', 20_000);
    console.log(`orders failover east → west (all east instances dead): ${Date.now() - killedAt} ms`);
    await new Promise((r) => setTimeout(r, 500));
    const results = await eastNode.stopLoad();
    const failed = results.filter((r) => r.status !== 200);
    expect(results.length - failed.length).toBeGreaterThan(0);
    // Only requests already on the dying apps' connections may fail: at most one per load loop.
    expect(failed.length, JSON.stringify(failed)).toBeLessThanOrEqual(2);
    expect(servedBy(results[results.length - 1] as LoadResult)).toBe('orders-west');
  });

  it('one east instance back: east keeps its share and spills the rest to west (1 of 3 healthy)', async () => {
    await eastNode.startApp('orders-east-a');
    await eventually(async () => servedBy(await eastNode.call(upstream('orders', '/'))) === 'orders-east-a', 'east\'s orders back', 20_000);
    const served: string[] = [];
    for (let i = 0; i < 90; i++) served.push(servedBy(await eastNode.call(upstream('orders', `/spill-${i}`))));
    const fromEast = served.filter((s) => s === 'orders-east-a').length;
    const fromWest = served.filter((s) => s === 'orders-west').length;
    console.log(`with 1 of 3 east instances healthy: ${fromEast} of 90 served in east, ${fromWest} in west`);
    expect(fromEast + fromWest).toBe(90);
    // East keeps healthy / (threshold × usual) = 1 / 1.5 of the calls: about 60 of 90, 30 to west; each
    // bound is more than four standard deviations away.
    expect(fromEast).toBeGreaterThanOrEqual(40);
    expect(fromWest).toBeGreaterThanOrEqual(10);
  });

  it('west cut off from the internet: orders moves wholly to east, nothing failed but what was sent to west', async () => {
    await eastNode.startLoad(upstream('orders', '/cut'), { intervalMs: 50 });
    await new Promise((r) => setTimeout(r, 1_000));
    const cutAt = Date.now();
    await west.cut();
    // Long enough for the failover and then a stretch of steady traffic after it.
    await new Promise((r) => setTimeout(r, 9_000));
    const results = await eastNode.stopLoad();
    await west.restore();

    const after = results.filter((r) => r.start >= cutAt);
    const failed = after.filter((r) => r.status !== 200);
    // A request held up by the lost zone failed (it was sent there), or was answered by east late (its
    // dial to west failed and it was tried again): the failover time is how long after the cut new
    // requests were still sent to west. East's instance is healthy throughout and answers in milliseconds.
    const heldUp = after.filter((r) => r.status !== 200 || servedBy(r) === 'orders-west' || r.end - r.start > SLOW_MS);
    const lastToWest = Math.max(cutAt, ...heldUp.map((r) => r.start));
    const failoverMs = lastToWest - cutAt;
    console.log(`west cut off: orders failover to east in ${failoverMs} ms; of ${after.length} requests sent after the cut ${failed.length} failed, ${heldUp.length - failed.length} were answered late by east:`,
      heldUp.map((r) => `+${r.start - cutAt} ms, ${r.end - r.start} ms: ${servedBy(r)}`));
    expect(after.filter((r) => r.start > lastToWest).length).toBeGreaterThan(20);
    expect(after.filter((r) => r.start > lastToWest).every((r) => servedBy(r) === 'orders-east-a')).toBe(true);
    // Generous (the issue asks < 5 s): a loaded two-core machine must not make this flaky.
    expect(failoverMs).toBeLessThan(8_000);
    const before = results.filter((r) => r.end < cutAt);
    console.log(`before the cut: ${before.length} requests, ${before.filter((r) => servedBy(r) === 'orders-west').length} served by west`);
    expect(before.every((r) => r.status === 200)).toBe(true);
    // West had its share until the cut: the failover moved live traffic.
    expect(before.some((r) => servedBy(r) === 'orders-west')).toBe(true);
  });

  it('west back on the internet: payments through its ingress again', async () => {
    await eventually(async () => (await eastNode.call(upstream('payments', '/after-the-cut'))).status === 200, 'payments after west came back', 40_000);
  });

  it('the global stopped: calls keep flowing; west\'s ingress killed and restarted meanwhile', async () => {
    await global.stop('SIGKILL');
    for (let i = 0; i < 5; i++) expect((await eastNode.call(upstream('payments', `/without-global-${i}`))).status).toBe(200);

    await westIngress.stop('SIGKILL');
    await eventually(async () => (await eastNode.call(upstream('payments', '/no-ingress'), 'GET', 3_000)).status !== 200, 'payments unreachable without west\'s ingress', 20_000);
    westIngress = await startIngress();
    await eventually(async () => (await eastNode.call(upstream('payments', '/again'))).status === 200, 'payments again after the ingress restarted', 30_000);
    for (let i = 0; i < 5; i++) expect((await eastNode.call(upstream('payments', `/still-without-global-${i}`))).status).toBe(200);
    // With west's ingress back, a failover to west works at once: every remote service's sessions go
    // through that ingress, and those that failed while it was down dial again as soon as one works.
    await eastNode.startLoad(upstream('orders', '/after-ingress-restart'), { concurrency: 2 });
    await new Promise((r) => setTimeout(r, 500));
    await eastNode.stopApp('orders-east-a');
    await new Promise((r) => setTimeout(r, 2_000));
    const results = await eastNode.stopLoad();
    const failed = results.filter((r) => r.status !== 200);
    expect(failed.length, JSON.stringify(failed.slice(0, 5))).toBeLessThanOrEqual(2);
    expect(servedBy(results[results.length - 1] as LoadResult)).toBe('orders-west');

    global = await startTrellis(lab, h.global, globalArgs());
    await eventually(async () => {
      const zones = JSON.parse(await curlIn(h.global, 'http://127.0.0.1:15021/zones')) as { zones: { name: string; state: string; connected: boolean }[] };
      return ['east', 'west'].every((z) => zones.zones.some((s) => s.name === z && s.state === 'online' && s.connected));
    }, 'both zones online at the restarted global', 30_000);
  });

  it('tcpdump on the internet bridge saw only TLS: no path, body or HTTP head in clear', async () => {
    await wire.stop();
    const packets = readPcap(pcap);
    const dropped = /\d+ packets dropped by kernel/.exec(wire.output())?.[0] ?? 'no drop count printed';
    const streams = tcpStreams(packets).filter((s) => s.bytes.length > 0);
    // The global's sync sessions, west's ingress (calls and its health), and east's calls out.
    expect(streams.some((s) => s.key.endsWith(`>${west.publicAddress}:${INGRESS_PORT}`))).toBe(true);
    expect(streams.some((s) => s.key.endsWith(`>${h.global.ipv4}:${GLOBAL_PORT}`))).toBe(true);
    for (const stream of streams) {
      const records = tlsRecords(stream.bytes);
      expect(stream.gap, `${stream.key} was captured whole (tcpdump: ${dropped})`).toBe(false);
      expect(records.types[0], `${stream.key} opens with a TLS handshake`).toBe(22);
      expect(records.garbage, `${stream.key} is TLS records throughout`).toBe(false);
    }
    const wireBytes = Buffer.concat(packets.map((p) => p.payload));
    for (const clear of [MARKER, 'HTTP/1.1', 'payments GET', 'orders-', 'billing GET']) expect(wireBytes.includes(clear), clear).toBe(false);
    expect(readFileSync(pcap).length).toBeGreaterThan(0);
  });
});
