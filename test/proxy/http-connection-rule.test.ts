/**
 * Regression: "a Connection header naming a framing field smuggles a second request". A request with
 * `Connection: content-length` (or transfer-encoding, host, a mesh field) was framed by its body, then
 * forwarded without the field it named, so the app read the body as a second request nobody authorized
 * (`GET /admin/...`), and its answer went to the next caller on the lane. Now such a request is refused with
 * 400 on both sides, before a byte reaches the app; a response whose Connection names its framing is a bad
 * response. Real sockets, real mTLS; the app sits behind a byte recorder, so the assertion is on what it was sent.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ClientHttp2Session } from 'node:http2';
import { PUBLIC_ONLY_POLICY, startMesh, type TestMesh } from './http-harness.js';
import { laneExchange, peerSession, rawRequest, upgradeExchange } from './support/peer.js';

const SMUGGLED = 'GET /admin/secret HTTP/1.1\r\nHost: payments\r\n\r\n';
const CHUNKED_SMUGGLED = `${SMUGGLED.length.toString(16)}\r\n${SMUGGLED}\r\n0\r\n\r\n`;

/** A request on /public whose body is a whole second request, and a Connection that names `connection`. */
function smuggling(connection: string, framing: 'length' | 'chunked' = 'length', extra = ''): string {
  const body = framing === 'length' ? `Content-Length: ${SMUGGLED.length}\r\n\r\n${SMUGGLED}` : `Transfer-Encoding: chunked\r\n\r\n${CHUNKED_SMUGGLED}`;
  return `POST /public/form HTTP/1.1\r\nHost: payments\r\nConnection: ${connection}\r\n${extra}${body}`;
}

const CASES: [string, string, 'length' | 'chunked'][] = [
  ['content-length', 'content-length', 'length'],
  ['Content-Length among other tokens', 'keep-alive, Content-Length', 'length'],
  ['CONTENT-LENGTH with empty elements and odd whitespace', ' ,\t, CONTENT-LENGTH ,', 'length'],
  ['transfer-encoding', 'Transfer-Encoding', 'chunked'],
  ['host', 'host', 'length'],
  ['a mesh field', 'trellis-target', 'length'],
  ['the verified caller', 'X-Forwarded-Client-Cert', 'length'],
  ['the request id', 'x-request-id', 'length'],
];

const seen: string[] = [];
function recordingApp(req: IncomingMessage, res: ServerResponse): void {
  seen.push(`${req.method} ${req.url}`);
  req.resume();
  req.on('end', () => res.end(`served ${req.url}`));
}

function expectNothingUnauthorized(mesh: TestMesh): void {
  const bytes = mesh.recorders[0]!.text();
  expect(bytes).not.toContain('/admin');
  expect(seen.some((s) => s.includes('/admin'))).toBe(false);
}

describe.each([
  ['lanes', true],
  ['HTTP/2 requests', false],
])('Connection naming a framing or routing field (%s)', (_name, lanes) => {
  let mesh: TestMesh;
  let peer: ClientHttp2Session;
  beforeAll(async () => {
    mesh = await startMesh({ apps: [recordingApp], policyYaml: PUBLIC_ONLY_POLICY, lanes, recordBytes: true });
    peer = await peerSession(mesh);
  });
  afterAll(async () => {
    peer?.destroy();
    await mesh?.close();
  });

  it.each(CASES)('refuses it through the outbound sidecar with 400: %s', async (_case, connection, framing) => {
    const before = mesh.recorders[0]!.text().length;
    const answer = await rawRequest(mesh.outboundPort, smuggling(connection, framing) + SMUGGLED);
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain('trellis-error: TRELLIS_HTTP_BAD_REQUEST');
    expect(mesh.recorders[0]!.text().length).toBe(before);
    expectNothingUnauthorized(mesh);
  });

  it.each(CASES)('refuses it from an allowed peer on a lane with 400: %s', async (_case, connection, framing) => {
    const before = mesh.recorders[0]!.text().length;
    const answer = await laneExchange(peer, smuggling(connection, framing));
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain('trellis-error: TRELLIS_HTTP_BAD_REQUEST');
    expect(mesh.recorders[0]!.text().length).toBe(before);
    expectNothingUnauthorized(mesh);
  });

  it('refuses it on a tunnelled upgrade from an allowed peer', async () => {
    const answer = await upgradeExchange(peer, smuggling('upgrade, content-length', 'length', 'Upgrade: websocket\r\n'));
    expect(answer.status).toBe(400);
    expect(answer.headers['trellis-error']).toBe('TRELLIS_HTTP_BAD_REQUEST');
    expectNothingUnauthorized(mesh);
  });

  it('still serves a request whose Connection names an ordinary field, and drops that field', async () => {
    const answer = await rawRequest(mesh.outboundPort, 'GET /public/ok HTTP/1.1\r\nHost: payments\r\nConnection: x-hop\r\nX-Hop: 1\r\n\r\n');
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    expect(mesh.recorders[0]!.text()).toContain('GET /public/ok HTTP/1.1');
    expect(mesh.recorders[0]!.text().toLowerCase()).not.toContain('x-hop: 1');
  });
});

describe.each([
  ['lanes', true],
  ['HTTP/2 requests', false],
])('a response whose Connection names its framing (%s)', (_name, lanes) => {
  it('is refused as a bad response, never reframed', async () => {
    const mesh = await startMesh({
      apps: [
        (_req, res) => {
          res.setHeader('connection', 'content-length');
          res.setHeader('content-length', '5');
          res.end('hello');
        },
      ],
      policyYaml: PUBLIC_ONLY_POLICY,
      lanes,
    });
    try {
      const answer = await rawRequest(mesh.outboundPort, 'GET /public/x HTTP/1.1\r\nHost: payments\r\n\r\n');
      expect(answer).toMatch(/^HTTP\/1\.1 502 /);
      expect(answer).toContain('TRELLIS_HTTP_APP_BAD_RESPONSE');
    } finally {
      await mesh.close();
    }
  });
});
