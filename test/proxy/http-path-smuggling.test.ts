/**
 * Regression: "paths that mean something else to the app". `/public/..%2Fadmin`, `/public/..\admin`,
 * `/public/..%5Cadmin` and `/public/..;/admin` passed a policy allowing /public/* and reached the app
 * verbatim, where WHATWG URL, Python's translate_path or a servlet container read them as /admin. Now the
 * path policy refuses them with 400 on every way in (lane, HTTP/2 request, tunnelled upgrade) and the app
 * receives exactly the normalised path that was judged. Also pinned here: repeated equal Content-Length
 * values and whitespace after a chunk size are refused, never forwarded as received, and a framing error
 * in a request body is answered 400. Real sockets; the app sits behind a byte recorder.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { ClientHttp2Session } from 'node:http2';
import { PUBLIC_ONLY_POLICY, startMesh, type TestMesh } from './http-harness.js';
import { laneExchange, peerSession, rawRequest, upgradeExchange } from './support/peer.js';

const BAD_PATHS = ['/public/..%2Fadmin', '/public/..%2fadmin', '/public/..\\admin', '/public/..%5Cadmin', '/public/..%5cadmin', '/public/..;/admin', '/public/%2e%2e;/admin', '/public/x%00', '/public/%zz', '/public/x#/../../admin'];

const BAD_FRAMING: [string, string][] = [
  ['equal Content-Length fields', 'POST /public/a HTTP/1.1\r\nHost: payments\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello'],
  ['an equal Content-Length list', 'POST /public/a HTTP/1.1\r\nHost: payments\r\nContent-Length: 5, 5\r\n\r\nhello'],
];

const BAD_CHUNKS: [string, string][] = [
  ['a space after the chunk size', '5 \r\nhello\r\n0\r\n\r\n'],
  ['a tab after the chunk size', '5\t\r\nhello\r\n0\r\n\r\n'],
  ['whitespace before an extension', '5 ;x=1\r\nhello\r\n0\r\n\r\n'],
  ['a size that is not hex', 'zz\r\nhello\r\n0\r\n\r\n'],
];

const seen: string[] = [];
function recordingApp(req: IncomingMessage, res: ServerResponse): void {
  seen.push(`${req.method} ${req.url}`);
  req.resume();
  req.on('end', () => res.end(`served ${req.url}`));
}

function get(path: string): string {
  return `GET ${path} HTTP/1.1\r\nHost: payments\r\n\r\n`;
}

describe.each([
  ['lanes', true],
  ['HTTP/2 requests', false],
])('the path policy on a real mesh (%s)', (_name, lanes) => {
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
  const recorded = (): string => mesh.recorders[0]!.text();

  it.each(BAD_PATHS)('refuses %s through the outbound sidecar with 400', async (path) => {
    const before = recorded().length;
    const answer = await rawRequest(mesh.outboundPort, get(path));
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(recorded().length).toBe(before);
  });

  it.each(BAD_PATHS)('refuses %s from an allowed peer on a lane and on a tunnelled upgrade', async (path) => {
    const before = recorded().length;
    const lane = await laneExchange(peer, get(path));
    expect(lane).toMatch(/^HTTP\/1\.1 400 /);
    expect(lane).toContain('trellis-error: TRELLIS_HTTP_BAD_PATH');
    const upgrade = await upgradeExchange(peer, `GET ${path} HTTP/1.1\r\nHost: payments\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n`);
    expect(upgrade.status).toBe(400);
    expect(recorded().length).toBe(before);
    expect(recorded()).not.toContain('admin');
  });

  it('forwards the normalised path, exactly what was judged', async () => {
    const answer = await rawRequest(mesh.outboundPort, get('/public/./a/../b%7e//c?q=%2e'));
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    expect(recorded()).toContain('GET /public/b~/c?q=%2e HTTP/1.1\r\n');
    expect(seen).toContain('GET /public/b~/c?q=%2e');
  });

  it.each(BAD_FRAMING)('refuses %s with 400 on both sides', async (_name, bytes) => {
    const before = recorded().length;
    expect(await rawRequest(mesh.outboundPort, bytes)).toMatch(/^HTTP\/1\.1 400 /);
    expect(await laneExchange(peer, bytes)).toMatch(/^HTTP\/1\.1 400 /);
    expect(recorded().length).toBe(before);
  });

  it.each(BAD_CHUNKS)('answers a chunked body with %s with 400, never passing the size line on', async (_name, chunks) => {
    const head = 'POST /public/up HTTP/1.1\r\nHost: payments\r\nTransfer-Encoding: chunked\r\n\r\n';
    expect(await rawRequest(mesh.outboundPort, head + chunks)).toMatch(/^HTTP\/1\.1 400 /);
    expect(await laneExchange(peer, head + chunks)).toMatch(/^HTTP\/1\.1 400 /);
    expect(recorded()).not.toContain(chunks.slice(0, chunks.indexOf('\r\n') + 2));
  });
});

describe('path parameters and escaped slashes, per port', () => {
  it('refuses a ";" that a servlet container would strip, which would pass a deny rule on /admin/*', async () => {
    // The default policy: orders may call anything but /admin/*.
    const mesh = await startMesh({ apps: [recordingApp], recordBytes: true });
    try {
      const answer = await rawRequest(mesh.outboundPort, get('/admin;jsessionid=1/users'));
      expect(answer).toMatch(/^HTTP\/1\.1 400 /);
      expect(answer).toContain('TRELLIS_HTTP_BAD_PATH');
      expect(await rawRequest(mesh.outboundPort, get('/admin/users'))).toMatch(/^HTTP\/1\.1 403 /);
      expect(mesh.recorders[0]!.text()).not.toContain('admin');
    } finally {
      await mesh.close();
    }
  });

  it('passes %2F, %5C and ";" on unchanged for a port that asks for it', async () => {
    const mesh = await startMesh({ apps: [recordingApp], policyYaml: PUBLIC_ONLY_POLICY, recordBytes: true, appHttp: { escapedSlashes: 'keep', pathParameters: 'keep' } });
    try {
      const answer = await rawRequest(mesh.outboundPort, get('/public/a%2fb%5Cc;v=1'));
      expect(answer).toMatch(/^HTTP\/1\.1 200 /);
      expect(mesh.recorders[0]!.text()).toContain('GET /public/a%2Fb%5Cc;v=1 HTTP/1.1\r\n');
      expect(await rawRequest(mesh.outboundPort, get('/public/..;/admin'))).toMatch(/^HTTP\/1\.1 400 /);
      expect(await rawRequest(mesh.outboundPort, get('/public/..\\admin'))).toMatch(/^HTTP\/1\.1 400 /);
      expect(mesh.recorders[0]!.text()).not.toContain('admin');
    } finally {
      await mesh.close();
    }
  });
});
