/**
 * Transparent capture, end to end, across network namespaces: apps that know nothing of the mesh, each
 * host with its own iptables, the compiled `trellis` CLI as the only mesh software.
 *
 *   control  198.18.0.11  trellis control run
 *   web      198.18.0.12  curl (as root: captured)             + trellis agent run --capture
 *   orders   198.18.0.13  a plain HTTP server on :8080          + trellis agent run --capture
 *   echo     198.18.0.14  a plain TCP echo server on 198.18.0.14:9000 only + trellis agent run --capture
 *   outside  198.18.0.15  curl and a plain HTTP server on :8081, no sidecar, outside the mesh
 *
 * Each sidecar host has the redirect installed once with `trellis agent redirect install --proxy-uid 1337`;
 * the agents start as root and drop to uid/gid 1337 (`--proxy-uid`), so their own connections are not
 * captured. Policy: orders and echo accept web only.
 *
 * The story: curl on web reaches orders by its plain address and port, and what crosses the wire is TLS
 * to the tunnel port, nothing in clear; a TCP client reaches the echo server the same way; orders calling
 * echo is denied; a caller outside the mesh is refused in strict mode; a destination outside the mesh
 * passes through (and is refused once the mesh allows only mesh destinations); the redirect outlives an
 * agent restart, after which web names no upstream (a mesh-wide subscription, the default under capture)
 * and still reaches orders, also after orders left the mesh and came back running permissive, when it
 * serves the outside caller. At the end every
 * namespace (with its rules) and every process is gone, also when a test failed.
 */
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { originalDstUnavailableReason } from '../../proxy/core/original-dst.js';
import { readPcap, tcpStreams, tlsRecords } from '../helpers/pcap.js';
import { createNetnsLab, listLabNamespaces, netnsRequirements, type LabHost, type LabProcess, type NetnsLab } from '../helpers/netns.js';
import { allow, eventually, MAIN, requireBuild, trellis } from './mesh-support.js';

const PROXY_UID = 1337;
const ORDERS_PORT = 8080;
const ECHO_PORT = 9000;
const OUTSIDE_PORT = 8081;
const MARKER = 'plaintext-marker-7f3a';

function gate(): { skip: boolean } {
  const need = netnsRequirements(['curl', 'tcpdump']);
  if (need.skip) return need;
  const reason = originalDstUnavailableReason();
  if (reason === null) return need;
  if (process.env.CI === 'true') throw new Error(`CI=true and the original-destination addon is unavailable: ${reason}`);
  console.warn(`SKIPPED (original-destination addon unavailable: ${reason})`);
  return { skip: true };
}

/** A plain HTTP server: one line per request on stdout, so the test sees who reached it. */
const HTTP_APP = `const http = require('http');
const [name, port] = process.argv.slice(1);
http.createServer((req, res) => {
  console.log('request ' + req.socket.remoteAddress + ' ' + req.method + ' ' + req.url);
  res.end(name + ' says hello to ' + req.url + '\\n');
}).listen(Number(port), '0.0.0.0', () => console.log('listening'));`;

/** A plain TCP echo server on the given address only (echo's listens on its workload address, not loopback). */
const ECHO_APP = `const net = require('net');
net.createServer({ allowHalfOpen: true }, (s) => {
  s.on('error', () => {});
  s.on('data', (c) => console.log('data from ' + s.remoteAddress + ': ' + c));
  s.pipe(s);
})
  .listen(Number(process.argv[1]), process.argv[2], () => console.log('listening'));`;

/** A plain TCP client: sends its argument, half-closes, prints what came back, or the error code. */
const TCP_CLIENT = `const net = require('net');
const [host, port, payload] = process.argv.slice(1);
let got = '';
const s = net.connect({ host, port: Number(port), allowHalfOpen: true }, () => s.end(payload));
s.on('data', (c) => (got += c));
s.on('error', (e) => { console.log('error ' + e.code); process.exit(0); });
s.on('close', () => { console.log('reply ' + JSON.stringify(got)); process.exit(0); });
setTimeout(() => { console.log('timeout'); process.exit(0); }, 5000);`;

describe.skipIf(gate().skip)('transparent capture across network namespaces', () => {
  let lab: NetnsLab;
  let runId = '';
  let dir = '';
  let hosts: Record<'control' | 'web' | 'orders' | 'echo' | 'outside', LabHost>;
  const agents = new Map<string, LabProcess>();
  let ordersApp: LabProcess;
  let echoApp: LabProcess;
  let outsideApp: LabProcess;
  /** tcpdump on web's wire, from before the first sidecar starts. */
  let wire: LabProcess;
  let pcap = '';
  const pids: number[] = [];

  const controlUrl = (): string => `https://${hosts.control.ipv4}:15012`;

  async function startAgent(host: LabHost, service: string, appPort: number, extra: readonly string[] = []): Promise<LabProcess> {
    const data = join(dir, `${service}-data`);
    const agent = lab.spawn(host, [
      'node', MAIN, 'agent', 'run', '--control', controlUrl(), '--token-file', join(dir, `${service}.token`), '--ca-file', join(dir, 'trust-bundle.pem'),
      '--service', service, '--app-port', String(appPort), '--address', host.ipv4, '--data-dir', data,
      '--tunnel', '0.0.0.0:15008', '--admin', '127.0.0.1:15000', '--health-interval', '500ms', '--drain-grace', '1s', '--log-level', 'info',
      '--capture', 'transparent', '--proxy-uid', String(PROXY_UID), '--proxy-gid', String(PROXY_UID), ...extra,
    ]);
    agents.set(service, agent);
    await agent.waitForOutput(/"event":"ready"/, 20_000);
    if (agent.child.pid !== undefined) pids.push(agent.child.pid);
    return agent;
  }

  async function curl(from: LabHost, url: string): Promise<{ code: number; body: string; error: string }> {
    const result = await lab.exec(from, ['curl', '-sS', '--max-time', '5', url], { allowFailure: true });
    return { code: result.code, body: result.stdout, error: result.stderr.trim() };
  }

  async function tcp(from: LabHost, host: string, port: number, payload: string): Promise<string> {
    return (await lab.exec(from, ['node', '-e', TCP_CLIENT, host, String(port), payload])).stdout.trim();
  }

  async function metric(host: LabHost, name: string, labels: Readonly<Record<string, string>>): Promise<number> {
    // The admin port is on loopback, which the redirect never captures.
    const text = (await lab.exec(host, ['curl', '-sS', '--max-time', '5', 'http://127.0.0.1:15000/metrics'])).stdout;
    let total = 0;
    for (const line of text.split('\n')) {
      if (!line.startsWith(`${name}{`)) continue;
      if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) total += Number(line.slice(line.lastIndexOf(' ') + 1));
    }
    return total;
  }

  beforeAll(async () => {
    requireBuild();
    lab = await createNetnsLab();
    runId = lab.runId;
    hosts = {
      control: await lab.addHost('control'),
      web: await lab.addHost('web'),
      orders: await lab.addHost('orders'),
      echo: await lab.addHost('echo'),
      outside: await lab.addHost('outside'),
    };
    // Readable by the proxy user the agents drop to; each agent's data dir is its own.
    dir = mkdtempSync(join(tmpdir(), 'trellis-capture-e2e-'));
    chmodSync(dir, 0o755);
    const policyDir = join(dir, 'policy');
    mkdirSync(policyDir);
    writeFileSync(join(policyDir, 'orders.yaml'), allow('orders', ['web']));
    writeFileSync(join(policyDir, 'echo.yaml'), allow('echo', ['web']));

    const control = lab.spawn(hosts.control, [
      'node', MAIN, 'control', 'run', '--data-dir', join(dir, 'control'), '--policy', policyDir,
      '--listen', `${hosts.control.ipv4}:15012`, '--admin', '127.0.0.1:15100', '--log-level', 'warn',
    ]);
    await control.waitForOutput(/"event":"ready"/, 20_000);
    if (control.child.pid !== undefined) pids.push(control.child.pid);
    writeFileSync(join(dir, 'trust-bundle.pem'), readFileSync(join(dir, 'control', 'trust-bundle.pem')));
    for (const service of ['web', 'orders', 'echo']) {
      const file = join(dir, `${service}.token`);
      const made = await trellis(['token', 'create', '--service', service, '--namespace', 'default', '--ttl', '10m', '--data-dir', join(dir, 'control'), '--output', file]);
      if (made.code !== 0) throw new Error(`token create failed: ${made.stderr}`);
      chownSync(file, PROXY_UID, PROXY_UID);
      const data = join(dir, `${service}-data`);
      mkdirSync(data, { mode: 0o700 });
      chownSync(data, PROXY_UID, PROXY_UID);
    }

    ordersApp = lab.spawn(hosts.orders, ['node', '-e', HTTP_APP, 'orders', String(ORDERS_PORT)]);
    echoApp = lab.spawn(hosts.echo, ['node', '-e', ECHO_APP, String(ECHO_PORT), hosts.echo.ipv4]);
    outsideApp = lab.spawn(hosts.outside, ['node', '-e', HTTP_APP, 'outside', String(OUTSIDE_PORT)]);
    await Promise.all([ordersApp, echoApp, outsideApp].map((p) => p.waitForOutput(/listening/)));

    pcap = join(dir, 'web.pcap');
    // Immediate mode and -U: packets reach the file as they are seen. -Z root: write the file as root.
    wire = lab.spawn(hosts.web, ['tcpdump', '-i', 'eth0', '--immediate-mode', '-U', '-n', '-Z', 'root', '-w', pcap, 'tcp']);
    await wire.waitForOutput(/listening on/);
    for (const host of [hosts.web, hosts.orders, hosts.echo]) {
      await lab.exec(host, ['node', MAIN, 'agent', 'redirect', 'install', '--proxy-uid', String(PROXY_UID), '--proxy-gid', String(PROXY_UID)]);
    }
    await Promise.all([
      startAgent(hosts.web, 'web', 9999, ['--upstream', 'orders', '--upstream', 'echo']),
      startAgent(hosts.orders, 'orders', ORDERS_PORT, ['--protocol', 'http', '--upstream', 'echo', '--inbound-mode', 'strict']),
      // echo's app listens on the workload address only: the tunnel must dial it from the hand-off source.
      startAgent(hosts.echo, 'echo', ECHO_PORT, ['--app-host', hosts.echo.ipv4]),
    ]);
    // Config reaches the agents once all three registered.
    await eventually(async () => (await curl(hosts.web, `http://${hosts.orders.ipv4}:${ORDERS_PORT}/warm-up`)).code === 0, 'web reaches orders through the mesh', 20_000);
  }, 90_000);

  afterAll(async () => {
    await lab?.cleanup();
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
    expect(listLabNamespaces(runId)).toEqual([]);
    for (const pid of pids) expect(() => process.kill(pid, 0), `process ${pid} still running`).toThrow();
  });

  it('runs each agent as the proxy user, after it started as root', () => {
    for (const agent of agents.values()) {
      const status = readFileSync(`/proc/${agent.child.pid}/status`, 'utf8');
      // `ip netns exec` execs the command in place, so the spawned pid is the agent itself.
      expect(/^Uid:\s+(\d+)/m.exec(status)?.[1]).toBe(String(PROXY_UID));
      expect(/^Gid:\s+(\d+)/m.exec(status)?.[1]).toBe(String(PROXY_UID));
    }
  });

  it('carries unmodified curl to an unmodified HTTP server through both sidecars, with only TLS on the wire', async () => {
    const fromOrders = (): number => readPcap(pcap).filter((p) => p.src === hosts.orders.ipv4 && p.srcPort === 15008).reduce((n, p) => n + p.payload.length, 0);
    const before = fromOrders();
    const result = await curl(hosts.web, `http://${hosts.orders.ipv4}:${ORDERS_PORT}/${MARKER}`);
    // Packets reach the file as they are seen; stop once the answer is in it.
    await eventually(async () => fromOrders() > before, 'the answer is in the capture', 5_000);
    await wire.stop();
    expect(result).toMatchObject({ code: 0, body: `orders says hello to /${MARKER}\n` });
    // The orders sidecar delivered it on loopback: the app saw its own sidecar, not the caller.
    expect(ordersApp.output()).toContain(`request 127.0.0.1 GET /${MARKER}`);

    const packets = readPcap(pcap).filter((p) => p.payload.length > 0);
    const toTunnel = packets.filter((p) => p.dst === hosts.orders.ipv4 && p.dstPort === 15008);
    const fromTunnel = packets.filter((p) => p.src === hosts.orders.ipv4 && p.srcPort === 15008);
    expect(packets.length).toBeGreaterThan(0);
    // Nothing went to the app's port on the wire: the captured connection left as a tunnel stream.
    expect(packets.filter((p) => p.dstPort === ORDERS_PORT || p.srcPort === ORDERS_PORT)).toEqual([]);
    expect(toTunnel.length).toBeGreaterThan(0);
    expect(fromTunnel.length).toBeGreaterThan(0);
    // The capture started before the sidecars, so it holds every tunnel connection from its first byte:
    // each direction opens with a TLS handshake record (ClientHello, ServerHello) and is TLS records
    // throughout (the request rode a session opened ahead of need, as application-data records).
    for (const stream of tcpStreams([...toTunnel, ...fromTunnel])) {
      const records = tlsRecords(stream.bytes);
      expect(records.types[0], `${stream.key} opens with a TLS handshake`).toBe(22);
      expect(records.garbage, `${stream.key} is TLS throughout`).toBe(false);
      expect(records.types, `${stream.key} carries application data`).toContain(23);
    }
    const wireBytes = Buffer.concat(packets.map((p) => p.payload));
    expect(wireBytes.includes(MARKER)).toBe(false);
    expect(wireBytes.includes('HTTP/1.1')).toBe(false);
    expect(wireBytes.includes('hello')).toBe(false);
    expect(await metric(hosts.web, 'trellis_capture_outbound_connections_total', { result: 'mesh', destination: 'default/orders' })).toBeGreaterThan(0);
  });

  it('carries an unmodified TCP client to a TCP echo server the same way', async () => {
    expect(await tcp(hosts.web, hosts.echo.ipv4, ECHO_PORT, 'ping over the mesh')).toBe('reply "ping over the mesh"');
    // Delivered from the hand-off source, which the rules exempt, to the app's own address.
    expect(echoApp.output()).toContain('data from 127.0.0.6: ping over the mesh');
  });

  it('denies a pair the policy does not allow, before the app sees a byte', async () => {
    const answer = await tcp(hosts.orders, hosts.echo.ipv4, ECHO_PORT, 'let me in');
    expect(answer).toBe('reply ""');
    expect(echoApp.output()).not.toContain('let me in');
    expect(await metric(hosts.echo, 'trellis_policy_denials_total', { source: 'default/orders', destination: 'default/echo' })).toBeGreaterThan(0);
  });

  it('refuses a plaintext caller from outside the mesh in strict mode', async () => {
    const result = await curl(hosts.outside, `http://${hosts.orders.ipv4}:${ORDERS_PORT}/from-outside`);
    expect(result.code).not.toBe(0);
    expect(ordersApp.output()).not.toContain('/from-outside');
    expect(await metric(hosts.orders, 'trellis_capture_inbound_connections_total', { mode: 'strict', result: 'refused' })).toBeGreaterThan(0);
  });

  it('passes a destination outside the mesh through untouched', async () => {
    const result = await curl(hosts.web, `http://${hosts.outside.ipv4}:${OUTSIDE_PORT}/passthrough`);
    expect(result).toMatchObject({ code: 0, body: 'outside says hello to /passthrough\n' });
    // It came straight from the web host (its proxy's own connection), not through any tunnel.
    expect(outsideApp.output()).toContain(`request ${hosts.web.ipv4} GET /passthrough`);
    expect(await metric(hosts.web, 'trellis_capture_outbound_connections_total', { result: 'passthrough' })).toBeGreaterThan(0);
  });

  it('keeps the redirect across an agent restart: outside the mesh refused when only mesh destinations are allowed, the mesh still carried', async () => {
    await agents.get('web')?.stop();
    // While the agent is down the rules stay: web's captured connections fail closed, never bypass the mesh.
    const down = await curl(hosts.web, `http://${hosts.outside.ipv4}:${OUTSIDE_PORT}/while-down`);
    expect(down.code).not.toBe(0);
    expect(outsideApp.output()).not.toContain('/while-down');
    expect((await lab.exec(hosts.web, ['iptables-save', '-t', 'nat'])).stdout).toContain('-j TRELLIS_OUTPUT');

    // No --upstream this time: under capture the agent then subscribes to every service of the mesh.
    await startAgent(hosts.web, 'web', 9999, ['--outside-mesh', 'refuse']);
    // Past the snapshot saved before the restart (which named orders): what follows is the mesh-wide one.
    await eventually(async () => (await lab.exec(hosts.web, ['curl', '-sS', '--max-time', '5', 'http://127.0.0.1:15000/ready'], { allowFailure: true })).stdout.includes('"restoredFromDisk": false'), 'web runs the control plane\'s config', 20_000);
    const mesh = await eventually(async () => {
      const r = await curl(hosts.web, `http://${hosts.orders.ipv4}:${ORDERS_PORT}/after-restart`);
      return r.code === 0 ? r : undefined;
    }, 'web reaches orders after its agent restarted', 20_000);
    expect(mesh.body).toBe('orders says hello to /after-restart\n');
    const refused = await curl(hosts.web, `http://${hosts.outside.ipv4}:${OUTSIDE_PORT}/refused`);
    expect(refused.code).not.toBe(0);
    expect(outsideApp.output()).not.toContain('/refused');
    expect(await metric(hosts.web, 'trellis_capture_outbound_connections_total', { result: 'refused-outside-mesh' })).toBeGreaterThan(0);
  });

  it('serves a caller outside the mesh once the destination runs permissive, and still carries mesh callers', async () => {
    await agents.get('orders')?.stop();
    await startAgent(hosts.orders, 'orders', ORDERS_PORT, ['--protocol', 'http', '--upstream', 'echo', '--inbound-mode', 'permissive']);
    const served = await eventually(async () => {
      const r = await curl(hosts.outside, `http://${hosts.orders.ipv4}:${ORDERS_PORT}/permissive`);
      return r.code === 0 ? r : undefined;
    }, 'outside reaches orders in permissive mode', 20_000);
    expect(served.body).toBe('orders says hello to /permissive\n');
    expect(await metric(hosts.orders, 'trellis_capture_inbound_connections_total', { mode: 'permissive', result: 'passed' })).toBeGreaterThan(0);
    const mesh = await eventually(async () => {
      const r = await curl(hosts.web, `http://${hosts.orders.ipv4}:${ORDERS_PORT}/mesh-again`);
      return r.code === 0 ? r : undefined;
    }, 'web reaches orders after its agent restarted', 20_000);
    expect(mesh.body).toBe('orders says hello to /mesh-again\n');
    // Handed to the app on loopback by the orders sidecar: the outside caller never reached the app port itself.
    expect(ordersApp.output()).toContain('request 127.0.0.1 GET /permissive');
  });
});
