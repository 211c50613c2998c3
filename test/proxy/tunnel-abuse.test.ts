/**
 * What a hostile but authenticated (or not yet authenticated) peer can do to the tunnel port, and what must
 * then hold: sessions the HTTP/2 layer ended are destroyed with their socket; rapid reset gets
 * GOAWAY(ENHANCE_YOUR_CALM); session caps per identity and per address refuse the extra session while others
 * still connect; stalled handshakes from one source cannot stop another source; stop() ends within its grace
 * period plus a second; a flood of denials writes a bounded number of log lines while the metric counts all.
 * Real sidecars, real mTLS, raw frames where node:http2 would refuse to misbehave (bench/h2-frames.ts).
 */
import { describe, expect, it } from 'vitest';
import { connect as h2connect, constants as h2, type ClientHttp2Session } from 'node:http2';
import { connect as netConnect, createServer, type AddressInfo, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { pino } from 'pino';
import { openRawSession, oversizedHeaderFrames, protocolErrorFrame, rapidResetBurst } from '../../bench/h2-frames.js';
import type { TestWorkloadIdentity } from '../helpers/pki.js';
import type { ProxyLimits } from '../../proxy/core/limits.js';
import type { Sidecar } from '../../proxy/sidecar.js';
import type { Logger } from '../../common/log.js';
import { allow, meshFixture, metricValue, policyOf, startServerSidecar } from './support/mesh.js';

const mesh = meshFixture();
const { cleanup, echo } = mesh;

interface Target {
  readonly server: Sidecar;
  readonly port: number;
  readonly appPort: number;
}

/** A server sidecar for api.shop (web and billing allowed, anyone else denied) in front of an echo app. */
async function target(limits: Partial<ProxyLimits> = {}, logger?: Logger): Promise<Target> {
  const app = await echo();
  const server = await startServerSidecar({
    identity: await mesh.pki.issue('api', 'shop'),
    appPorts: [{ port: app.port, protocol: 'tcp', host: '127.0.0.1' }],
    policy: policyOf(allow('api', ['web', 'billing'])),
    limits,
    ...(logger === undefined ? {} : { logger }),
  });
  cleanup.push(() => server.stop(0));
  return { server, port: server.addresses().tunnel!.port, appPort: app.port };
}

function raw(t: Target, id: TestWorkloadIdentity, localAddress?: string): ReturnType<typeof openRawSession> {
  return openRawSession({ host: '127.0.0.1', port: t.port, localAddress, certChainPem: id.certChainPem, keyPem: id.keyPem, caPem: mesh.pki.bundlePem }).then((s) => {
    cleanup.push(async () => {
      s.socket.destroy();
    });
    return s;
  });
}

/** A node:http2 session as `id` from `localAddress`, and the status of one CONNECT on it (0: none came). */
async function callAs(t: Target, id: TestWorkloadIdentity, localAddress = '127.0.0.1'): Promise<{ session: ClientHttp2Session; status: number }> {
  const session = h2connect(`https://127.0.0.1:${t.port}`, {
    createConnection: () => tlsConnect({ socket: netConnect({ host: '127.0.0.1', port: t.port, localAddress }), ALPNProtocols: ['h2'], checkServerIdentity: () => undefined, cert: id.certChainPem, key: id.keyPem, ca: mesh.pki.bundlePem }),
  });
  session.on('error', () => undefined);
  cleanup.push(async () => {
    session.destroy();
  });
  const status = await new Promise<number>((resolve) => {
    const stream = session.request({ ':method': 'CONNECT', ':authority': `api.shop:${t.appPort}` });
    stream.on('error', () => undefined);
    stream.on('response', (h) => resolve(Number(h[':status'])));
    stream.on('close', () => resolve(0));
  });
  return { session, status };
}

/** A TCP connection to the tunnel port that never sends a byte: a stalled handshake. */
function stalledHandshake(t: Target, localAddress = '127.0.0.1'): { socket: Socket; closed: Promise<void> } {
  const socket = netConnect({ host: '127.0.0.1', port: t.port, localAddress });
  socket.on('error', () => undefined);
  const closed = new Promise<void>((r) => socket.once('close', () => r()));
  cleanup.push(async () => {
    socket.destroy();
  });
  return { socket, closed };
}

describe('sessions the HTTP/2 layer ended', () => {
  it('a protocol error (DATA on stream 0): nghttp2 sends GOAWAY, and the session is destroyed with its socket', async () => {
    const t = await target({ sessionProbeIntervalMs: 200 });
    const s = await raw(t, await mesh.pki.issue('mallory', 'shop'));
    s.socket.write(protocolErrorFrame());
    await s.closed;
    expect(s.reader.goawayCode()).toBe(h2.NGHTTP2_PROTOCOL_ERROR);
    await expect.poll(() => metricValue(t.server, 'trellis_tunnel_sessions', { direction: 'inbound' })).toBe(0);
    // Node 24 reports nghttp2's GOAWAY as a session error; Node 20 was never told, and the wedge probe found
    // the session. Either way the guard ended it once.
    const ended = (await metricValue(t.server, 'trellis_tunnel_errors_total', { reason: 'session-error' })) + (await metricValue(t.server, 'trellis_tunnel_errors_total', { reason: 'session-wedged' }));
    expect(ended).toBe(1);
  });

  it('an oversized header block (70 KB field): the session is destroyed with its socket', async () => {
    const t = await target({ sessionProbeIntervalMs: 200 });
    const s = await raw(t, await mesh.pki.issue('web', 'shop'));
    s.socket.write(oversizedHeaderFrames(1, `api.shop:${t.appPort}`, 70_000));
    await s.closed;
    expect(s.reader.goawayCode()).toBe(h2.NGHTTP2_COMPRESSION_ERROR);
    await expect.poll(() => metricValue(t.server, 'trellis_tunnel_sessions', { direction: 'inbound' })).toBe(0);
  });
});

describe('rapid reset', () => {
  it('a peer that opens and resets streams gets GOAWAY(ENHANCE_YOUR_CALM) and its session is destroyed', async () => {
    const t = await target({ rapidResetMaxResets: 50 });
    const s = await raw(t, await mesh.pki.issue('mallory', 'shop'));
    s.socket.write(rapidResetBurst(1, 400, `api.shop:${t.appPort}`));
    await s.closed;
    expect(s.reader.goawayCode()).toBe(h2.NGHTTP2_ENHANCE_YOUR_CALM);
    expect(await metricValue(t.server, 'trellis_tunnel_errors_total', { reason: 'rapid-reset' })).toBe(1);
    // An allowed caller is unaffected.
    expect((await callAs(t, await mesh.pki.issue('web', 'shop'))).status).toBe(200);
  });

  it('the identity cut for rapid reset cannot come straight back: its next session is refused for abusePenaltyMs', async () => {
    const t = await target({ rapidResetMaxResets: 50, abusePenaltyMs: 60_000 });
    const mallory = await mesh.pki.issue('mallory', 'shop');
    const s = await raw(t, mallory);
    s.socket.write(rapidResetBurst(1, 400, `api.shop:${t.appPort}`));
    await s.closed;
    const again = await raw(t, mallory);
    await again.closed;
    expect(again.reader.goawayCode()).toBe(h2.NGHTTP2_ENHANCE_YOUR_CALM);
    expect(await metricValue(t.server, 'trellis_tunnel_handshakes_total', { result: 'refused', reason: 'identity-penalized' })).toBe(1);
    expect((await callAs(t, await mesh.pki.issue('web', 'shop'))).status).toBe(200);
  });
});

describe('resets the destination sends are not the caller\'s', () => {
  // Regression: every reset on a session used to count towards rapid reset, ours included, so a caller whose
  // destination app resets every connection (crashing, or refusing by reset) was cut and its identity penalized.
  it('an app that resets every connection does not get its caller cut for rapid reset', async () => {
    // It accepts, then resets the connection at its first byte (after the sidecar answered 200).
    const resetting = createServer((socket) => {
      socket.on('error', () => undefined);
      socket.once('data', () => socket.resetAndDestroy());
    });
    await new Promise<void>((r) => resetting.listen(0, '127.0.0.1', () => r()));
    cleanup.push(() => new Promise<void>((r) => resetting.close(() => r())));
    const appPort = (resetting.address() as AddressInfo).port;
    const server = await startServerSidecar({
      identity: await mesh.pki.issue('api', 'shop'),
      appPorts: [{ port: appPort, protocol: 'tcp', host: '127.0.0.1' }],
      policy: policyOf(allow('api', ['web'])),
      limits: { rapidResetMaxResets: 10 },
    });
    cleanup.push(() => server.stop(0));
    const t: Target = { server, port: server.addresses().tunnel!.port, appPort };
    const { session, status } = await callAs(t, await mesh.pki.issue('web', 'shop'));
    expect(status).toBe(200);
    const statuses: number[] = [];
    const codes: number[] = [];
    for (let i = 0; i < 40; i++) {
      codes.push(
        await new Promise<number>((resolve) => {
          const stream = session.request({ ':method': 'CONNECT', ':authority': `api.shop:${appPort}` });
          stream.on('error', () => undefined);
          stream.on('response', (h) => {
            statuses.push(Number(h[':status']));
            stream.write('x');
          });
          stream.on('close', () => resolve(stream.rstCode ?? -1));
        }),
      );
    }
    // Every stream was reset by the destination (the app reset it), and the session is still there.
    expect(statuses.filter((x) => x === 200)).toHaveLength(40);
    expect(codes.every((c) => c !== h2.NGHTTP2_NO_ERROR)).toBe(true);
    expect(session.destroyed || session.closed).toBe(false);
    expect(await metricValue(server, 'trellis_tunnel_errors_total', { reason: 'rapid-reset' })).toBe(0);
  });
});

describe('session caps', () => {
  it('per identity: the extra session of one identity is refused while another identity still connects', async () => {
    const t = await target({ maxSessionsPerIdentity: 2 });
    const web = await mesh.pki.issue('web', 'shop');
    expect((await callAs(t, web)).status).toBe(200);
    expect((await callAs(t, web)).status).toBe(200);
    expect((await callAs(t, web)).status).toBe(0);
    expect(await metricValue(t.server, 'trellis_tunnel_handshakes_total', { result: 'refused', reason: 'sessions-per-identity' })).toBe(1);
    expect((await callAs(t, await mesh.pki.issue('billing', 'shop'))).status).toBe(200);
  });

  it('per source address: the extra session from one address is refused while another address still connects', async () => {
    const t = await target({ maxSessionsPerAddress: 2 });
    const web = await mesh.pki.issue('web', 'shop');
    const billing = await mesh.pki.issue('billing', 'shop');
    expect((await callAs(t, web, '127.0.0.1')).status).toBe(200);
    expect((await callAs(t, billing, '127.0.0.1')).status).toBe(200);
    expect((await callAs(t, billing, '127.0.0.1')).status).toBe(0);
    expect(await metricValue(t.server, 'trellis_tunnel_handshakes_total', { result: 'refused', reason: 'sessions-per-address' })).toBe(1);
    expect((await callAs(t, web, '127.0.0.2')).status).toBe(200);
  });
});

describe('stalled handshakes', () => {
  it('beyond the per-source cap are cut at once, and another source still completes a session', async () => {
    const t = await target({ maxHandshakesPerAddress: 4, handshakeTimeoutMs: 60_000 });
    const stalled = Array.from({ length: 10 }, () => stalledHandshake(t, '127.0.0.1'));
    // Six of the ten are cut at accept; the first four wait for the handshake deadline.
    await expect.poll(() => metricValue(t.server, 'trellis_tunnel_handshakes_total', { result: 'refused', reason: 'handshakes-per-address' })).toBe(6);
    await expect.poll(() => metricValue(t.server, 'trellis_tunnel_handshakes_pending', { direction: 'inbound' })).toBe(4);
    expect(await metricValue(t.server, 'trellis_tunnel_handshakes_total', { result: 'failed' })).toBe(0);
    expect((await callAs(t, await mesh.pki.issue('web', 'shop'), '127.0.0.2')).status).toBe(200);
    expect(stalled.filter((s) => !s.socket.destroyed).length).toBeGreaterThanOrEqual(4);
  });
});

describe('shutdown', () => {
  it('stop(grace) ends within grace + 1 s with a stalled handshake and a wedged session open', async () => {
    // Probes off for the test's length: the wedged session must still be there when stop() begins.
    const t = await target({ handshakeTimeoutMs: 60_000, sessionProbeIntervalMs: 60_000 });
    const stalled = stalledHandshake(t);
    const wedged = await raw(t, await mesh.pki.issue('web', 'shop'));
    wedged.socket.write(protocolErrorFrame());
    await expect.poll(() => wedged.reader.goawayCode()).toBe(h2.NGHTTP2_PROTOCOL_ERROR);
    // The client stops reading too, so a graceful end of the socket can never complete.
    wedged.socket.pause();
    expect(stalled.socket.destroyed).toBe(false);
    const graceMs = 300;
    const started = Date.now();
    await t.server.stop(graceMs);
    expect(Date.now() - started).toBeLessThanOrEqual(graceMs + 1_000);
  });
});

describe('a flood of denials', () => {
  it('writes a bounded number of log lines while the metric counts every denial', async () => {
    const lines: { msg: string; suppressed?: number }[] = [];
    const logger = pino({ level: 'warn' }, { write: (line: string) => void lines.push(JSON.parse(line) as { msg: string }) });
    const t = await target({ denialLogIntervalMs: 60_000 }, logger);
    const { session } = await callAs(t, await mesh.pki.issue('mallory', 'shop'));
    const streams = 300;
    await Promise.all(
      Array.from({ length: streams - 1 }, () =>
        new Promise<void>((resolve) => {
          const stream = session.request({ ':method': 'CONNECT', ':authority': `api.shop:${t.appPort}` });
          stream.on('error', () => undefined);
          stream.on('close', () => resolve());
          stream.resume();
        }),
      ),
    );
    expect(await metricValue(t.server, 'trellis_policy_denials_total', { source: 'shop/mallory' })).toBe(streams);
    const denials = (): typeof lines => lines.filter((l) => l.msg.startsWith('TCP stream denied by policy'));
    expect(denials().length).toBe(1);
    await t.server.stop(0);
    // The summary at shutdown carries the count of the lines not written.
    expect(denials().map((l) => l.suppressed ?? 0)).toEqual([0, streams - 1]);
  });
});
