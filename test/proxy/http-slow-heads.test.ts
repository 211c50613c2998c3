/**
 * Slow heads are cut: the head timeout is a total deadline from a head's first byte, not inactivity, on
 * the outbound listener (heads from the app) and on an inbound lane (heads from a peer). A head sent a
 * byte at a time, each byte well inside the timeout, is answered 408 TRELLIS_HTTP_REQUEST_TIMEOUT and
 * the connection (lane) closed, before the head is complete.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { connect } from 'node:net';
import type { ClientHttp2Stream, IncomingHttpHeaders } from 'node:http2';
import { LANE_HEADER, LANE_HTTP1 } from '../../proxy/core/tunnel-protocol.js';
import { endpointOf, ROUTE, startMesh, type TestMesh } from './http-harness.js';

const HEAD = `GET /slow HTTP/1.1\r\nhost: payments\r\nx-padding: ${'a'.repeat(200)}\r\n\r\n`;

/** Writes `text` a byte every `gapMs` until done or `closed()`; resolves true if it was all written. */
async function drip(write: (b: string) => void, closed: () => boolean, text: string, gapMs: number): Promise<boolean> {
  for (const ch of text) {
    if (closed()) return false;
    write(ch);
    await new Promise((r) => setTimeout(r, gapMs));
  }
  return !closed();
}

describe('slow request heads', () => {
  let mesh: TestMesh | undefined;
  afterEach(async () => {
    await mesh?.close();
    mesh = undefined;
  });

  it('the outbound listener answers 408 and closes when a trickled head misses its total deadline', async () => {
    mesh = await startMesh({ apps: [(_req, res) => res.end('served')], outboundLimits: { headersTimeoutMs: 300 } });
    const socket = connect(mesh.outboundPort, '127.0.0.1');
    socket.on('error', () => undefined);
    let received = '';
    let closed = false;
    socket.on('data', (c: Buffer) => (received += c.toString('latin1')));
    socket.on('close', () => (closed = true));
    await new Promise<void>((resolve) => socket.once('connect', () => resolve()));
    // Each byte comes well within 300 ms of the one before; the whole head would take seconds.
    const whole = await drip((b) => socket.write(b), () => closed || received.length > 0, HEAD, 10);
    while (!closed) await new Promise((r) => setTimeout(r, 10));
    expect(whole).toBe(false);
    expect(received).toMatch(/^HTTP\/1\.1 408 /);
    expect(received).toContain('TRELLIS_HTTP_REQUEST_TIMEOUT');
    expect(mesh.apps[0]!.connections).toBe(0);
  });

  it('an inbound lane answers 408 and ends the lane when a peer trickles a head past the deadline', async () => {
    mesh = await startMesh({ apps: [(_req, res) => res.end('served')], laneHeadTimeoutMs: 300 });
    const target = { endpoint: endpointOf(mesh.tunnels[0]!.port), service: ROUTE.service, namespace: ROUTE.namespace, port: ROUTE.targetPort };
    const lane: ClientHttp2Stream = await mesh.pool.openStream(target, { ':method': 'CONNECT', ':authority': `payments.shop:${ROUTE.targetPort}`, [LANE_HEADER]: LANE_HTTP1 });
    lane.on('error', () => undefined);
    const status = await new Promise<number>((resolve) => lane.once('response', (h: IncomingHttpHeaders) => resolve(Number(h[':status']))));
    expect(status).toBe(200);
    let received = '';
    let closed = false;
    lane.on('data', (c: Buffer) => (received += c.toString('latin1')));
    lane.on('close', () => (closed = true));
    const whole = await drip((b) => lane.write(b), () => closed || received.length > 0, HEAD, 10);
    while (!closed) await new Promise((r) => setTimeout(r, 10));
    expect(whole).toBe(false);
    expect(received).toMatch(/^HTTP\/1\.1 408 /);
    expect(received).toContain('TRELLIS_HTTP_REQUEST_TIMEOUT');
    expect(mesh.apps[0]!.connections).toBe(0);
  });
});
