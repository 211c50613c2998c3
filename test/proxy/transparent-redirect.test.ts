/**
 * The capture listeners behind real iptables rules, in a two-host lab: the outbound listener and the
 * inbound capture listener run (compiled, from dist/) as the proxy user in the `app` host, whose rules
 * redirect its TCP traffic to them; `remote` is another host.
 *
 * What only real rules can show: original destinations read from conntrack, the passthrough dial going
 * out as the proxy user without being captured again, a direct dial of 15001 refused rather than looped,
 * and the permissive hand-off to an app that listens only on the workload address, made from 127.0.0.6 so
 * that it is not captured again.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { netnsRunner } from '../../capture/command-runner.js';
import { createRedirectInstaller } from '../../capture/installer.js';
import { validateRedirectOptions } from '../../capture/options.js';
import { originalDstUnavailableReason } from '../../proxy/core/original-dst.js';
import { createNetnsLab, listLabNamespaces, netnsRequirements, type LabHost, type LabProcess, type NetnsLab } from '../helpers/netns.js';

const ROOT = join(import.meta.dirname, '../..');
const DIST = join(ROOT, 'dist');
const PROXY_UID = 1337;

function gate(): { skip: boolean } {
  const need = netnsRequirements();
  if (need.skip) return need;
  const reason = originalDstUnavailableReason();
  if (reason === null) return need;
  if (process.env.CI === 'true') throw new Error(`CI=true and the original-destination addon is unavailable: ${reason}`);
  console.warn(`SKIPPED (original-destination addon unavailable: ${reason})`);
  return { skip: true };
}

/**
 * Both capture listeners, as the sidecar runs them. The mesh path is a stand-in that answers with the
 * route it was handed (the real one is exercised by test/e2e/capture-mesh.test.ts). SIGUSR2 switches
 * inbound capture to strict.
 */
const CAPTURE_PROCESS = `
import { pino } from 'pino';
import { Registry } from 'prom-client';
const dist = process.argv[1];
const remote = process.argv[2];
const { createTransparentListener } = await import(dist + '/proxy/outbound/capture/transparent-listener.js');
const { createTransparentMetrics } = await import(dist + '/proxy/outbound/capture/transparent-metrics.js');
const { createCaptureListener } = await import(dist + '/proxy/inbound/capture/capture-listener.js');
const { createCaptureMetrics } = await import(dist + '/proxy/inbound/capture/capture-metrics.js');
const registry = new Registry();
const logger = pino({ level: 'info' });
const outbound = createTransparentListener({
  port: 15001, outsideMesh: 'passthrough', metrics: createTransparentMetrics(registry), logger, accessLog: true,
  forwardTcp: (socket, route) => socket.end('mesh ' + route.namespace + '/' + route.service + ':' + route.targetPort),
});
outbound.setUpstreams([{ name: 'orders', namespace: 'shop', ports: [{ port: 80, targetPort: 8080, protocol: 'tcp' }],
  endpoints: [{ address: remote, tunnelPort: 15008, zone: 'z', healthy: true }] }]);
const inbound = createCaptureListener({ port: 15006, mode: 'permissive', appPorts: [], metrics: createCaptureMetrics(registry), logger, accessLog: true });
await outbound.listen();
await inbound.listen();
process.on('SIGUSR2', () => { inbound.setMode('strict'); console.log('mode strict'); });
process.on('SIGTERM', async () => { await Promise.all([outbound.close(0), inbound.close(0)]); process.exit(0); });
console.log('capture ready uid=' + process.getuid());
`;

/** A server that answers `<label> <caller address>` and closes. */
const LABELLED_SERVER = `const net = require('net');
const [label, host, port] = process.argv.slice(1);
net.createServer((s) => { s.on('error', () => {}); s.end(label + ' ' + s.remoteAddress); }).listen(Number(port), host, () => console.log('listening'));`;

/** Connects, prints what came back, or the error code. */
const CLIENT = `const net = require('net');
const [host, port] = process.argv.slice(1);
let got = '';
const s = net.connect({ host, port: Number(port) });
s.on('data', (c) => (got += c));
s.on('error', (e) => { console.log('error ' + e.code); process.exit(0); });
s.on('close', () => { console.log(got); process.exit(0); });
setTimeout(() => { console.log('timeout'); process.exit(0); }, 5000);`;

describe.skipIf(gate().skip)('capture listeners behind real redirect rules', () => {
  let lab: NetnsLab;
  let runId = '';
  let app: LabHost;
  let remote: LabHost;
  let capture: LabProcess;

  const dial = async (from: LabHost, host: string, port: number, uid?: number): Promise<string> =>
    (await lab.exec(from, ['node', '-e', CLIENT, host, String(port)], uid === undefined ? {} : { uid })).stdout.trim();

  beforeAll(async () => {
    if (!existsSync(join(DIST, 'proxy/outbound/capture/transparent-listener.js'))) throw new Error(`${DIST} is not built: run \`npx tsc -p tsconfig.build.json\` first`);
    lab = await createNetnsLab();
    runId = lab.runId;
    app = await lab.addHost('app');
    remote = await lab.addHost('remote');
    const servers = [
      lab.spawn(remote, ['node', '-e', LABELLED_SERVER, 'remote-8081', '0.0.0.0', '8081']),
      // The app listens on the workload address only: a hand-off on loopback could not reach it.
      lab.spawn(app, ['node', '-e', LABELLED_SERVER, 'app-9090', app.ipv4, '9090']),
    ];
    await Promise.all(servers.map((s) => s.waitForOutput(/listening/)));
    await createRedirectInstaller({ runner: netnsRunner(app.netns) }).install(validateRedirectOptions({ proxyUids: [PROXY_UID], proxyGids: [PROXY_UID] }));
    capture = lab.spawn(app, ['node', '--input-type=module', '-e', CAPTURE_PROCESS, DIST, remote.ipv4], { uid: PROXY_UID });
    await capture.waitForOutput(/capture ready uid=1337/);
  }, 60_000);

  afterAll(async () => {
    await lab?.cleanup();
    expect(listLabNamespaces(runId)).toEqual([]);
  });

  it('maps a captured connection to a mesh endpoint address by its original destination', async () => {
    expect(await dial(app, remote.ipv4, 8080)).toBe('mesh shop/orders:8080');
  });

  it('passes a destination outside the mesh through as the proxy user, not captured again', async () => {
    expect(await dial(app, remote.ipv4, 8081)).toBe(`remote-8081 ${app.ipv4}`);
    await capture.waitForOutput(/"msg":"tcp passthrough"/);
    expect(capture.output()).toContain(`"destination":"${remote.ipv4}:8081"`);
  });

  it('refuses a direct connection to the outbound capture port instead of dialling itself', async () => {
    expect(await dial(app, '127.0.0.1', 15001)).toBe('error ECONNRESET');
    // The log line is written asynchronously and may trail the reset on a busy machine.
    await capture.waitForOutput(/TRELLIS_CAPTURE_NOT_REDIRECTED/);
  });

  it('hands a plaintext caller to an app on the workload address from 127.0.0.6 in permissive mode', async () => {
    expect(await dial(remote, app.ipv4, 9090)).toBe('app-9090 127.0.0.6');
    await capture.waitForOutput(/"msg":"tcp from outside the mesh"/);
  });

  it('refuses the same caller in strict mode', async () => {
    capture.child.kill('SIGUSR2');
    await capture.waitForOutput(/mode strict/);
    expect(await dial(remote, app.ipv4, 9090)).toMatch(/^error (ECONNRESET|EPIPE)$|^$/);
    expect(capture.output()).toContain('inbound mode strict');
  });

  it('never captures the tunnel port', async () => {
    const tunnel = lab.spawn(app, ['node', '-e', LABELLED_SERVER, 'tunnel', '0.0.0.0', '15008']);
    await tunnel.waitForOutput(/listening/);
    expect(await dial(remote, app.ipv4, 15008)).toBe(`tunnel ${remote.ipv4}`);
    await tunnel.stop();
  });
});
