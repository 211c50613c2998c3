/**
 * The HTTP fast path: app requests framed by the outbound sidecar and carried as raw HTTP/1.1 on
 * kept-alive lanes (CONNECT streams marked `trellis-lane`), each request authorized on its own at the
 * inbound side. What the other HTTP suites prove about semantics holds on this path (they run on it);
 * these cases are about the lanes themselves: reuse, per-request refusals on a lane, the app's own
 * keep-alive, header hygiene, framing attacks from either side, rotation and shutdown.
 */
import { afterEach, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { Agent, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect as h2connect } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { buildTlsMaterial } from '../../proxy/core/tls-material.js';
import { LANE_HEADER, LANE_HTTP1 } from '../../proxy/core/tunnel-protocol.js';
import { send } from './http-client.js';
import { ROUTE, startMesh, type TestMesh } from './http-harness.js';

/** Writes raw bytes to a port and collects everything until the server closes (or `ms` passes). */
function rawExchange(port: number, bytes: string, ms = 3_000): Promise<string> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: '127.0.0.1', port });
    const parts: Buffer[] = [];
    const timer = setTimeout(() => socket.destroy(), ms);
    socket.on('data', (c: Buffer) => parts.push(c));
    socket.on('error', () => undefined);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(parts).toString('latin1'));
    });
    socket.write(bytes);
  });
}

/** An app that records the paths it served and answers with them. */
function recordingApp(seen: string[]): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    seen.push(`${req.method} ${req.url}`);
    req.resume();
    req.on('end', () => res.end(`served ${req.url}`));
  };
}

describe('HTTP lanes between sidecars', () => {
  let mesh: TestMesh | undefined;
  afterEach(async () => {
    await mesh?.close();
    mesh = undefined;
  });

  it('carries requests from many app connections over one lane and one app connection', async () => {
    const seen: string[] = [];
    mesh = await startMesh({ apps: [recordingApp(seen)] });
    for (let i = 0; i < 5; i += 1) {
      const res = await send({ port: mesh.outboundPort, path: `/items/${i}` });
      expect(res.status).toBe(200);
      expect(res.body).toBe(`served /items/${i}`);
    }
    expect(seen).toHaveLength(5);
    expect(mesh.apps[0]?.connections).toBe(1);
    expect(mesh.lanes?.idleCount()).toBe(1);
  });

  it('answers a denied request on the lane itself, skips its body, and keeps the lane and the caller connection', async () => {
    const seen: string[] = [];
    mesh = await startMesh({ apps: [recordingApp(seen)] });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const denied = await send({ port: mesh.outboundPort, method: 'POST', path: '/admin/wipe', body: 'x'.repeat(64 * 1024), headers: { 'content-type': 'text/plain' }, agent });
      expect(denied.status).toBe(403);
      expect(denied.headers['trellis-denied-by']).toBe('shop/payments-callers#0');
      expect(denied.headers['trellis-error']).toBe('TRELLIS_HTTP_DENIED');
      // node's client does not chunk a DELETE body by itself: ask for it.
      const chunkedDenied = await send({ port: mesh.outboundPort, method: 'DELETE', path: '/items/7', body: ['a', 'bb', 'ccc'], headers: { 'transfer-encoding': 'chunked' }, agent });
      expect(chunkedDenied.status).toBe(403);
      const ok = await send({ port: mesh.outboundPort, path: '/orders/1', agent });
      expect(ok.status).toBe(200);
      expect(new Set([denied.localPort, chunkedDenied.localPort, ok.localPort]).size).toBe(1);
      expect(seen).toEqual(['GET /orders/1']);
      expect(mesh.lanes?.idleCount()).toBe(1);
    } finally {
      agent.destroy();
    }
  });

  it('passes an early refusal of an upload at once, and both connections go on after the body', async () => {
    const seen: string[] = [];
    mesh = await startMesh({
      apps: [
        (req, res) => {
          seen.push(`${req.method} ${req.url}`);
          if (req.url === '/upload') {
            res.writeHead(413, { 'content-type': 'text/plain' });
            res.end('too large\n');
            req.resume();
            return;
          }
          req.resume();
          req.on('end', () => res.end('ok'));
        },
      ],
    });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const refused = await send({ port: mesh.outboundPort, method: 'POST', path: '/upload', body: 'x'.repeat(1024 * 1024), agent });
      expect(refused.status).toBe(413);
      expect(refused.body).toBe('too large\n');
      const next = await send({ port: mesh.outboundPort, path: '/after', agent });
      expect(next.status).toBe(200);
      expect(seen).toEqual(['POST /upload', 'GET /after']);
    } finally {
      agent.destroy();
    }
  });

  it('reopens the app connection when the app closed it while the lane was idle', async () => {
    const seen: string[] = [];
    mesh = await startMesh({ apps: [recordingApp(seen)] });
    mesh.apps[0]!.server.keepAliveTimeout = 30;
    expect((await send({ port: mesh.outboundPort, path: '/one' })).status).toBe(200);
    // node:http closes an idle connection about a second after keepAliveTimeout.
    await expect.poll(() => mesh?.apps[0]?.sockets.size, { timeout: 5_000 }).toBe(0);
    expect((await send({ port: mesh.outboundPort, path: '/two' })).status).toBe(200);
    expect(seen).toEqual(['GET /one', 'GET /two']);
    expect(mesh.apps[0]?.connections).toBe(2);
    expect(mesh.lanes?.idleCount()).toBe(1);
  });

  it('never lets the app forge mesh fields nor the caller forge its identity', async () => {
    mesh = await startMesh({
      apps: [
        (req, res) => {
          res.setHeader('trellis-error', 'TRELLIS_FORGED');
          res.setHeader('trellis-denied-by', 'nobody');
          res.end(JSON.stringify({ xfcc: req.headers['x-forwarded-client-cert'], target: req.headers['trellis-target'] ?? null, id: req.headers['x-request-id'] }));
        },
      ],
    });
    const res = await send({
      port: mesh.outboundPort,
      path: '/who',
      headers: { 'x-forwarded-client-cert': 'URI=spiffe://evil/ns/x/sa/y', 'trellis-target': 'admin.kube-system:1', 'x-request-id': 'caller-id-1' },
    });
    expect(res.status).toBe(200);
    expect(res.headers['trellis-error']).toBeUndefined();
    expect(res.headers['trellis-denied-by']).toBeUndefined();
    expect(JSON.parse(res.body)).toEqual({ xfcc: `URI=spiffe://${mesh.pki.trustDomain}/ns/shop/sa/orders`, target: null, id: 'caller-id-1' });
  });

  it('refuses an ambiguous request from the app (Content-Length and Transfer-Encoding) and closes its connection', async () => {
    const seen: string[] = [];
    mesh = await startMesh({ apps: [recordingApp(seen)] });
    const text = await rawExchange(
      mesh.outboundPort,
      'POST /x HTTP/1.1\r\nHost: payments\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: payments\r\n\r\n',
    );
    expect(text).toMatch(/^HTTP\/1\.1 400 /);
    expect(text.toLowerCase()).toContain('connection: close');
    expect(seen).toEqual([]);
  });

  it('answers garbage from the app with an error or a close, never a crash, and keeps serving', async () => {
    const seen: string[] = [];
    mesh = await startMesh({ apps: [recordingApp(seen)] });
    const port = mesh.outboundPort;
    // Mostly plausible heads with damage in them, plus raw bytes.
    const byte = fc.constantFrom(...' aZ09-_/.:;,"\t\r\n\u0000\u007f\u0080\u00ff'.split(''));
    const line = fc.array(byte, { maxLength: 40 }).map((chars) => chars.join(''));
    const damaged = fc.tuple(fc.constantFrom('GET / HTTP/1.1\r\n', 'POST /x HTTP/1.1\r\nHost: a\r\n', 'GET /y HTTP/1.0\r\n', ''), fc.array(line, { maxLength: 6 }), fc.constantFrom('', '\r\n\r\n', '\r\n\r\n', '\r\n\r\n'));
    await fc.assert(
      fc.asyncProperty(damaged, async ([start, lines, end]) => {
        const answer = await rawExchange(port, start + lines.join('\r\n') + end, 150);
        // Silence (waiting for more), a close, or an HTTP answer: never anything else.
        expect(answer === '' || answer.startsWith('HTTP/1.1 ')).toBe(true);
      }),
      { numRuns: 40 },
    );
    const fine = await send({ port, path: '/after-garbage' });
    expect(fine.status).toBe(200);
  }, 60_000);

  it('answers 400 and ends a lane on which a peer sends broken framing, harming no other lane', async () => {
    const seen: string[] = [];
    mesh = await startMesh({ apps: [recordingApp(seen)] });
    const identity = await mesh.pki.issue('orders', 'shop');
    const material = buildTlsMaterial(identity);
    const port = mesh.tunnels[0]!.port;
    const session = h2connect(`https://127.0.0.1:${port}`, {
      createConnection: () => tlsConnect({ host: '127.0.0.1', port, secureContext: material.clientContext, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined }),
    });
    session.on('error', () => undefined);
    try {
      const stream = session.request({ ':method': 'CONNECT', ':authority': `payments.shop:${ROUTE.targetPort}`, [LANE_HEADER]: LANE_HTTP1 });
      stream.on('error', () => undefined);
      const answer = await new Promise<string>((resolve) => {
        const parts: Buffer[] = [];
        stream.on('data', (c: Buffer) => parts.push(c));
        stream.on('end', () => resolve(Buffer.concat(parts).toString('latin1')));
        stream.write('GET /a HTTP/1.1\r\nHost: payments\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx');
      });
      expect(answer).toMatch(/^HTTP\/1\.1 400 /);
      expect(answer.toLowerCase()).toContain('connection: close');
      expect(seen).toEqual([]);
      const fine = await send({ port: mesh.outboundPort, path: '/still-fine' });
      expect(fine.status).toBe(200);
      expect(seen).toEqual(['GET /still-fine']);
    } finally {
      session.destroy();
    }
  });

  it('hands a connection to the node:http path at a request the lanes do not carry, after serving earlier ones', async () => {
    const seen: string[] = [];
    mesh = await startMesh({ apps: [recordingApp(seen)] });
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const first = await send({ port: mesh.outboundPort, path: '/plain', agent });
      const expecting = await send({ port: mesh.outboundPort, method: 'POST', path: '/upload', body: 'payload', headers: { expect: '100-continue', 'content-length': '7' }, agent });
      expect(first.status).toBe(200);
      expect(expecting.status).toBe(200);
      expect(expecting.localPort).toBe(first.localPort);
      expect(seen).toEqual(['GET /plain', 'POST /upload']);
    } finally {
      agent.destroy();
    }
  });

  it('after a new certificate, opens new lanes on a new session and lets the old session drain', async () => {
    mesh = await startMesh({ apps: [recordingApp([])] });
    expect((await send({ port: mesh.outboundPort, path: '/before' })).status).toBe(200);
    const tunnel = mesh.tunnels[0]!;
    const [oldSession] = [...tunnel.sessions];
    expect(oldSession).toBeDefined();
    mesh.pool.setIdentity(await mesh.pki.issue('orders', 'shop'));
    await expect.poll(() => mesh?.pool.stats().readySessions, { timeout: 5_000 }).toBeGreaterThanOrEqual(1);
    expect((await send({ port: mesh.outboundPort, path: '/after' })).status).toBe(200);
    await expect.poll(() => oldSession?.closed || oldSession?.destroyed, { timeout: 5_000 }).toBe(true);
    expect((await send({ port: mesh.outboundPort, path: '/again' })).status).toBe(200);
  });

  it('closes lanes idle past the idle timeout, and opens a new one for the next request', async () => {
    const seen: string[] = [];
    mesh = await startMesh({ apps: [recordingApp(seen)] });
    expect((await send({ port: mesh.outboundPort, path: '/a' })).status).toBe(200);
    expect(mesh.lanes?.idleCount()).toBe(1);
    mesh.lanes?.closeIdle(performance.now() + 1_000);
    expect(mesh.lanes?.idleCount()).toBe(1); // not idle long enough (15 s)
    mesh.lanes?.closeIdle(performance.now() + 16_000);
    expect(mesh.lanes?.idleCount()).toBe(0);
    expect((await send({ port: mesh.outboundPort, path: '/b' })).status).toBe(200);
    expect(seen).toEqual(['GET /a', 'GET /b']);
    expect(mesh.lanes?.idleCount()).toBe(1);
  });

  it('closes idle lanes on shutdown, so the tunnel pool does not wait out its grace period', async () => {
    mesh = await startMesh({ apps: [recordingApp([])] });
    expect((await send({ port: mesh.outboundPort, path: '/x' })).status).toBe(200);
    expect(mesh.lanes?.idleCount()).toBe(1);
    mesh.lanes?.close();
    expect(mesh.lanes?.idleCount()).toBe(0);
    // With a lane left open this would wait the full minute (and the test time out).
    await mesh.pool.close(60_000);
  }, 10_000);

  // A body with no Content-Length and no chunked coding runs until the app closes; a reset is not a close.
  // HTTP/1.1 goes on a lane; HTTP/1.0 takes the HTTP/2-request path.
  for (const version of ['1.1', '1.0'] as const) {
    for (const ending of ['close', 'reset'] as const) {
      it(`passes a close-delimited response the app ends with a ${ending} on as a ${ending} (HTTP/${version} caller)`, async () => {
        mesh = await startMesh({
          apps: [
            (req) => {
              req.socket.write('HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nthe body');
              setTimeout(() => (ending === 'reset' ? req.socket.resetAndDestroy() : req.socket.end()), 50);
            },
          ],
        });
        const outcome = await new Promise<string>((resolve) => {
          const socket = netConnect({ host: '127.0.0.1', port: mesh!.outboundPort });
          let received = '';
          socket.setEncoding('latin1');
          socket.on('data', (d: string) => (received += d));
          const body = (): string => (received.endsWith('\r\n\r\nthe body') ? 'the body' : 'not the body');
          socket.on('error', (err: NodeJS.ErrnoException) => resolve(`${err.code ?? err.message} after ${body()}`));
          socket.on('end', () => resolve(`clean end after ${body()}`));
          socket.write(`GET /until-close HTTP/${version}\r\nHost: payments\r\n\r\n`);
        });
        expect(outcome).toBe(ending === 'reset' ? 'ECONNRESET after the body' : 'clean end after the body');
      });
    }
  }

  it('gives the same answers with lanes off (the node:http path alone)', async () => {
    const seen: string[] = [];
    mesh = await startMesh({ apps: [recordingApp(seen)], lanes: false });
    const res = await send({ port: mesh.outboundPort, path: '/plain' });
    expect(res.status).toBe(200);
    expect(mesh.lanes).toBeUndefined();
    expect(seen).toEqual(['GET /plain']);
  });
});
