/**
 * Real connections through the installed redirect, between two lab hosts:
 *
 *   app (rules installed; capture servers on 15001 and 15006, a "tunnel" on 15008, the app itself on 9090)
 *   remote (a plain server on 8080 and 8443, the app's peer)
 *
 * Each case names who connects where (and as which user) and which server must answer; the capture
 * servers report the original destination read through the real loader and addon. Together they pin the
 * order of the rules: outbound and inbound capture, the proxy's uid/gid excluded, the tunnel and excluded
 * ports untouched, loopback and the app talking to itself untouched, the proxy calling its own address
 * sent through inbound capture, the inbound hand-off source (127.0.0.6) untouched.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { fileURLToPath } from 'node:url';
import { netnsRunner } from '../../capture/command-runner.js';
import { createRedirectInstaller, type RedirectInstaller } from '../../capture/installer.js';
import { validateRedirectOptions } from '../../capture/options.js';
import { originalDstUnavailableReason } from '../../proxy/core/original-dst.js';
import { createNetnsLab, listLabNamespaces, netnsRequirements, type LabHost, type NetnsLab } from '../helpers/netns.js';
import { ADDON_PATH, LOADER_MODULES, transpileModules, type TranspiledModules } from './transpiled.js';

const PROXY_UID = 1337;
const OTHER_UID = 4000;
const SERVER = fileURLToPath(new URL('./fixtures/capture-server.mjs', import.meta.url));
const CLIENT = fileURLToPath(new URL('./fixtures/tcp-client.mjs', import.meta.url));

function gate(): { skip: boolean } {
  const need = netnsRequirements();
  if (need.skip) return need;
  const reason = originalDstUnavailableReason();
  if (reason === null) return need;
  if (process.env.CI === 'true') throw new Error(`CI=true and the original-destination addon is unavailable: ${reason}`);
  console.warn(`SKIPPED (original-destination addon unavailable: ${reason})`);
  return { skip: true };
}

interface Answer {
  readonly label: string;
  readonly remote?: { address: string; port: number };
  readonly originalDst?: { address: string; port: number; family: number };
  readonly error?: { code: string };
}

describe.skipIf(gate().skip)('connections through the redirect in network namespaces', () => {
  let lab: NetnsLab;
  let app: LabHost;
  let remote: LabHost;
  let loader: TranspiledModules;
  let installer: RedirectInstaller;
  let runId = '';

  async function connect(from: LabHost, host: string, port: number, options: { uid?: number; localAddress?: string } = {}): Promise<Answer | string> {
    const args = ['node', CLIENT, host, String(port), ...(options.localAddress === undefined ? [] : [options.localAddress])];
    const result = await lab.exec(from, args, { uid: options.uid, allowFailure: true });
    const line = result.stdout.trim();
    return line.startsWith('{') ? (JSON.parse(line) as Answer) : line;
  }

  beforeAll(async () => {
    lab = await createNetnsLab({ ipv6: true });
    runId = lab.runId;
    loader = transpileModules(LOADER_MODULES);
    app = await lab.addHost('app');
    remote = await lab.addHost('remote');
    const capture = ['--loader', loader.path('proxy/core/original-dst.ts'), '--addon', ADDON_PATH];
    const servers = [
      lab.spawn(app, ['node', SERVER, '--label', 'outbound-capture', '--port', '15001', ...capture]),
      lab.spawn(app, ['node', SERVER, '--label', 'inbound-capture', '--port', '15006', ...capture]),
      lab.spawn(app, ['node', SERVER, '--label', 'tunnel', '--port', '15008']),
      lab.spawn(app, ['node', SERVER, '--label', 'app', '--port', '9090']),
      lab.spawn(remote, ['node', SERVER, '--label', 'remote', '--port', '8080']),
      lab.spawn(remote, ['node', SERVER, '--label', 'remote-excluded-port', '--port', '8443']),
    ];
    await Promise.all(servers.map((s) => s.waitForOutput(/listening/)));
    installer = createRedirectInstaller({ runner: netnsRunner(app.netns) });
    await installer.install(validateRedirectOptions({ proxyUids: [PROXY_UID], proxyGids: [PROXY_UID], excludeOutboundPorts: [8443], ipv6: lab.ipv6 }));
  });

  afterAll(async () => {
    await lab?.cleanup();
    loader?.remove();
    expect(listLabNamespaces(runId)).toEqual([]);
  });

  it("redirects the app's outbound connection to 15001 and reports where it was going", async () => {
    expect(await connect(app, remote.ipv4, 8080)).toMatchObject({ label: 'outbound-capture', originalDst: { address: remote.ipv4, port: 8080, family: 4 } });
  });

  it("leaves the proxy's own connections alone, by uid and by gid", async () => {
    expect(await connect(app, remote.ipv4, 8080, { uid: PROXY_UID })).toMatchObject({ label: 'remote' });
    // Another user in the proxy's group: the gid rule alone must exclude it.
    const byGid = await lab.exec(app, ['setpriv', `--reuid=${OTHER_UID}`, `--regid=${PROXY_UID}`, '--clear-groups', '--', 'node', CLIENT, remote.ipv4, '8080']);
    expect(JSON.parse(byGid.stdout.trim())).toMatchObject({ label: 'remote' });
    expect(await connect(app, remote.ipv4, 8080, { uid: OTHER_UID })).toMatchObject({ label: 'outbound-capture' });
  });

  it('redirects inbound connections to 15006 with the original destination', async () => {
    // REDIRECT keeps the caller's own address: the inbound sidecar sees who is calling.
    expect(await connect(remote, app.ipv4, 9090)).toMatchObject({
      label: 'inbound-capture',
      originalDst: { address: app.ipv4, port: 9090, family: 4 },
      remote: { address: `::ffff:${remote.ipv4}` },
    });
  });

  it('never redirects the tunnel port, nor excluded ports', async () => {
    expect(await connect(remote, app.ipv4, 15008)).toMatchObject({ label: 'tunnel' });
    expect(await connect(app, remote.ipv4, 8443)).toMatchObject({ label: 'remote-excluded-port' });
  });

  it('leaves loopback and the app calling its own address alone', async () => {
    expect(await connect(app, '127.0.0.1', 9090)).toMatchObject({ label: 'app' });
    expect(await connect(app, app.ipv4, 9090)).toMatchObject({ label: 'app' });
  });

  it('sends the proxy dialling its own workload address through inbound capture, except from the hand-off source', async () => {
    expect(await connect(app, app.ipv4, 9090, { uid: PROXY_UID })).toMatchObject({ label: 'inbound-capture', originalDst: { address: app.ipv4, port: 9090 } });
    expect(await connect(app, app.ipv4, 9090, { uid: PROXY_UID, localAddress: '127.0.0.6' })).toMatchObject({ label: 'app' });
    // The ordinary hand-off: the inbound sidecar dials the app on loopback.
    expect(await connect(app, '127.0.0.1', 9090, { uid: PROXY_UID })).toMatchObject({ label: 'app' });
  });

  it('reports a connection that reached the capture port directly as not redirected', async () => {
    expect(await connect(app, '127.0.0.1', 15001)).toMatchObject({ label: 'outbound-capture', error: { code: 'TRELLIS_CAPTURE_NOT_REDIRECTED' } });
  });

  it('captures IPv6 both ways with ip6tables', async (ctx) => {
    if (!lab.ipv6 || app.ipv6 === null || remote.ipv6 === null) return ctx.skip(`IPv6 unavailable here: ${lab.ipv6Problem ?? 'no addresses'}`);
    expect(await connect(app, remote.ipv6, 8080)).toMatchObject({ label: 'outbound-capture', originalDst: { address: remote.ipv6, port: 8080, family: 6 } });
    expect(await connect(remote, app.ipv6, 9090)).toMatchObject({ label: 'inbound-capture', originalDst: { address: app.ipv6, port: 9090, family: 6 } });
    expect(await connect(app, remote.ipv6, 8080, { uid: PROXY_UID })).toMatchObject({ label: 'remote' });
  });

  it('stops capturing once uninstalled', async () => {
    await installer.uninstall();
    expect(await connect(app, remote.ipv4, 8080)).toMatchObject({ label: 'remote' });
    expect(await connect(remote, app.ipv4, 9090)).toMatchObject({ label: 'app' });
  });
});
