/**
 * The inbound HTTP path spoken to directly over the tunnel (an mTLS HTTP/2 client with a caller's
 * certificate), for what a well-behaved outbound sidecar never sends: tunnelled streams that do not start
 * with an upgrade, oversized or garbage upgrade heads, request targets that are not paths, and a caller
 * that stops uploading after a refusal.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { connect, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import type { IncomingMessage } from 'node:http';
import { compilePolicy } from '../../policy/compiled-policy.js';
import { parsePolicyFiles } from '../../policy/validator.js';
import { createTestPki, type TestPki } from '../helpers/pki.js';
import { captureLogger, closeApp, POLICY_YAML, ROUTE, startApp, startTunnel, type TestApp, type TestTunnel } from './http-harness.js';

const TARGET = `payments.shop:${ROUTE.targetPort}`;

interface Answer {
  readonly headers: IncomingHttpHeaders;
  readonly body: string;
  readonly rstCode: number | undefined;
}

function exchange(session: ClientHttp2Session, headers: OutgoingHttpHeaders, write?: (stream: ClientHttp2Stream) => void): Promise<Answer> {
  return new Promise((resolve) => {
    const stream = session.request(headers, { endStream: write === undefined });
    let answer: IncomingHttpHeaders = {};
    let body = '';
    stream.on('response', (h) => (answer = h));
    stream.on('data', (c: Buffer) => (body += c.toString()));
    stream.on('error', () => undefined);
    stream.on('close', () => resolve({ headers: answer, body, rstCode: stream.rstCode }));
    write?.(stream);
  });
}

describe('inbound HTTP path: what only a misbehaving peer sends', () => {
  let pki: TestPki;
  let app: TestApp;
  let tunnel: TestTunnel;
  let session: ClientHttp2Session;
  const seen: string[] = [];

  beforeAll(async () => {
    pki = await createTestPki();
    app = await startApp((req: IncomingMessage, res) => {
      seen.push(`${req.method} ${req.url}`);
      req.resume();
      res.end('ok');
    });
    const policy = compilePolicy(parsePolicyFiles([{ path: 'p.yaml', text: POLICY_YAML }]), { trustDomain: pki.trustDomain, rootNamespace: 'trellis-system' });
    tunnel = await startTunnel({ pki, appPort: { port: app.port, protocol: 'http', host: '127.0.0.1' }, policy, logger: captureLogger().logger });
    const caller = await pki.issue('orders', 'shop');
    session = connect(`https://127.0.0.1:${tunnel.port}`, { cert: caller.certChainPem, key: caller.keyPem, ca: caller.trustBundlePem, checkServerIdentity: () => undefined });
    session.on('error', () => undefined);
    await new Promise<void>((resolve) => session.once('connect', () => resolve()));
  });
  afterAll(async () => {
    session?.destroy();
    await tunnel?.close();
    await closeApp(app);
  });

  it('serves a plain request sent straight to the tunnel', async () => {
    const res = await exchange(session, { ':method': 'GET', ':path': '/direct', ':authority': 'payments', 'trellis-target': TARGET });
    expect(res.headers[':status']).toBe(200);
    expect(res.body).toBe('ok');
  });

  it('refuses a tunnelled stream that does not start with an upgrade request, before the app sees it', async () => {
    const before = seen.length;
    const res = await exchange(session, { ':method': 'CONNECT', ':authority': TARGET }, (s) => s.write('GET /sneaky HTTP/1.1\r\nHost: x\r\n\r\n'));
    expect(res.headers[':status']).toBe(400);
    expect(res.headers['trellis-error']).toBe('TRELLIS_HTTP_BAD_REQUEST');
    expect(seen.length).toBe(before);
  });

  it('refuses an upgrade head beyond the limit with 431', async () => {
    const res = await exchange(session, { ':method': 'CONNECT', ':authority': TARGET }, (s) =>
      s.write(`GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`),
    );
    expect(res.headers[':status']).toBe(431);
    expect(res.headers['trellis-error']).toBe('TRELLIS_HTTP_HEAD_TOO_LARGE');
  });

  it('refuses garbage on a tunnelled stream with 400', async () => {
    const res = await exchange(session, { ':method': 'CONNECT', ':authority': TARGET }, (s) => s.write('\x16\x03\x01 not http at all\r\n\r\n'));
    expect(res.headers[':status']).toBe(400);
  });

  it('refuses a request path with a broken escape with 400 (HTTP/2 itself refuses non-path targets)', async () => {
    const res = await exchange(session, { ':method': 'GET', ':path': '/files/%zz', ':authority': 'payments', 'trellis-target': TARGET });
    expect(res.headers[':status']).toBe(400);
    expect(res.headers['trellis-error']).toBe('TRELLIS_HTTP_BAD_PATH');
  });

  it('answers a denied upload at once and then stops the upload (RST_STREAM NO_ERROR)', async () => {
    const before = seen.length;
    const res = await exchange(session, { ':method': 'POST', ':path': '/admin/upload', ':authority': 'payments', 'trellis-target': TARGET }, (s) => {
      s.write(Buffer.alloc(16 * 1024));
      // Never ends: the inbound must not wait for the rest of the body.
    });
    expect(res.headers[':status']).toBe(403);
    expect(res.body).toContain('TRELLIS_HTTP_DENIED');
    expect(res.rstCode).toBe(0);
    expect(seen.length).toBe(before);
  });
});
