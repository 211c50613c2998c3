/**
 * HTTP/2 from apps with real clients nobody here wrote (curl `--http2-prior-knowledge`, h2load): a port
 * declared `http` serves HTTP/1.1 and HTTP/2 clients side by side (the destination app reached in the
 * caller's protocol), policy `http` rules judge HTTP/2 requests exactly as HTTP/1.1 ones, a port declared
 * `http2` tells HTTP/1.1 clients 505, and the app-facing HTTP/2 server ends a connection that sends
 * malformed HTTP/2 or resets streams in a burst with GOAWAY, harming no other connection.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect as h2connect, constants as h2, createServer as createH2Server, type Http2ServerRequest, type Http2ServerResponse } from 'node:http2';
import { connect as netConnect, createServer as createNetServer, type AddressInfo, type Server } from 'node:net';
import { promisify } from 'node:util';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { detectClientProtocol } from '../../proxy/http2/preface.js';
import { startMesh, type Mesh } from './support/grpc-mesh.js';

const run = promisify(execFile);

const POLICY = `
apiVersion: trellis.dev/v1alpha1
kind: TrafficPermission
metadata: { name: echo-callers, namespace: shop }
spec:
  destination: echo
  rules:
    - action: deny
      from: [web]
      http: { paths: ["/admin/*"] }
    - action: allow
      from: [web]
`;

/** An app that speaks HTTP/1.1 and h2c on one port (as Go's h2c handler or Envoy do), telling which it got. */
async function startMixedApp(): Promise<{ server: Server; port: number }> {
  const answer = (req: IncomingMessage | Http2ServerRequest, res: ServerResponse | Http2ServerResponse): void => {
    let body = 0;
    req.on('data', (c: Buffer) => (body += c.length));
    req.on('end', () => {
      res.setHeader('x-app-protocol', req.httpVersion);
      res.end(`proto=${req.httpVersion} ${req.method} ${req.url} body=${body} from=${String(req.headers['x-forwarded-client-cert'])}`);
    });
  };
  const h1 = createHttpServer(answer);
  const h2s = createH2Server(answer);
  const server = createNetServer((socket) => {
    detectClientProtocol(socket, 10_000, (protocol) => {
      (protocol === 'h2' ? h2s : h1).emit('connection', socket);
      if (protocol !== 'h2') socket.resume();
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return { server, port: (server.address() as AddressInfo).port };
}

async function curl(args: string[]): Promise<{ status: number; body: string; headers: string }> {
  const { stdout } = await run('curl', ['-sS', '--max-time', '10', '-D', '-', ...args], { maxBuffer: 16 * 1024 * 1024 });
  const split = stdout.indexOf('\r\n\r\n');
  const headers = stdout.slice(0, split);
  const status = Number(/^HTTP\/[\d.]+ (\d{3})/.exec(headers)?.[1]);
  return { status, headers, body: stdout.slice(split + 4) };
}

describe('HTTP/2 clients on http and http2 ports', () => {
  let app: { server: Server; port: number };
  let mesh: Mesh;
  let h2only: Mesh;
  let base: string;

  beforeAll(async () => {
    app = await startMixedApp();
    mesh = await startMesh({ appPorts: [app.port, app.port], protocol: 'http', policy: POLICY });
    h2only = await startMesh({ appPorts: [app.port], protocol: 'http2', policy: POLICY });
    base = `http://127.0.0.1:${mesh.listenerPort}`;
  }, 30_000);

  afterAll(async () => {
    await mesh?.close();
    await h2only?.close();
    await new Promise<void>((resolve) => app?.server.close(() => resolve()));
  });

  it('serves HTTP/1.1 and HTTP/2 clients side by side on one http port, each reaching the app in its own protocol', async () => {
    const [one, two] = await Promise.all([curl([`${base}/orders/1`]), curl(['--http2-prior-knowledge', `${base}/orders/2`])]);
    expect(one.status).toBe(200);
    expect(one.body).toMatch(/^proto=1\.1 GET \/orders\/1 body=0 from=URI=spiffe:\/\/.*\/ns\/shop\/sa\/web$/);
    expect(one.headers).toMatch(/^HTTP\/1\.1 200/);
    expect(two.status).toBe(200);
    expect(two.headers).toMatch(/^HTTP\/2 200/);
    expect(two.body).toMatch(/^proto=2\.0 GET \/orders\/2 body=0 from=URI=spiffe:\/\/.*\/ns\/shop\/sa\/web$/);
    const dir = await mkdtemp(join(tmpdir(), 'trellis-h2-'));
    try {
      await writeFile(join(dir, 'body'), Buffer.alloc(8 * 1024 * 1024, 1));
      const upload = await curl(['--http2-prior-knowledge', '--data-binary', `@${join(dir, 'body')}`, `${base}/upload`]);
      expect(upload.body).toMatch(/^proto=2\.0 POST \/upload body=8388608 /);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it('judges HTTP/2 requests by http rules exactly as HTTP/1.1 ones, on the normalised path', async () => {
    for (const extra of [[], ['--http2-prior-knowledge']]) {
      const denied = await curl([...extra, '--path-as-is', `${base}/public/../admin/x`]);
      expect(denied.status).toBe(403);
      expect(denied.headers).toMatch(/trellis-denied-by: shop\/echo-callers#0/i);
      const bad = await curl([...extra, '--path-as-is', `${base}/public/..%2Fadmin/x`]);
      expect(bad.status).toBe(400);
      const ok = await curl([...extra, '--path-as-is', `${base}/a//b/./c`]);
      expect(ok.body).toContain('GET /a/b/c ');
    }
  });

  it('carries an h2load run (many streams on few connections) without a failure', async () => {
    const { stdout } = await run('h2load', ['-n', '2000', '-c', '4', '-m', '16', `${base}/load`], { maxBuffer: 4 * 1024 * 1024 });
    expect(stdout).toMatch(/requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed, 0 errored/);
    expect(stdout).toMatch(/status codes: 2000 2xx/);
  });

  it('an http2 port serves HTTP/2 and tells HTTP/1.1 clients 505', async () => {
    const url = `http://127.0.0.1:${h2only.listenerPort}/x`;
    const two = await curl(['--http2-prior-knowledge', url]);
    expect(two.status).toBe(200);
    expect(two.body).toMatch(/^proto=2\.0 GET \/x/);
    const one = await curl([url]);
    expect(one.status).toBe(505);
    expect(one.headers).toMatch(/trellis-error: TRELLIS_HTTP_NOT_HTTP2/);
  });

  it('ends a connection sending malformed HTTP/2 with GOAWAY; a stream on another connection carries on', async () => {
    const good = h2connect(base);
    try {
      const slow = good.request({ ':method': 'POST', ':path': '/slow' });
      slow.write('part one,');
      // A SETTINGS frame whose length is not a multiple of 6: FRAME_SIZE_ERROR (RFC 9113 6.5).
      const bad = netConnect(mesh.listenerPort, '127.0.0.1');
      const frame = Buffer.from([0, 0, 5, 0x4, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5]);
      bad.write(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1'), frame]));
      const received: Buffer[] = [];
      bad.on('data', (c: Buffer) => received.push(c));
      await new Promise<void>((resolve) => bad.once('close', () => resolve()));
      const bytes = Buffer.concat(received);
      // Our SETTINGS, maybe a SETTINGS ack, then GOAWAY (type 7) with FRAME_SIZE_ERROR (6).
      const goaway = findFrame(bytes, 0x7);
      expect(goaway).toBeDefined();
      expect(goaway?.readUInt32BE(4)).toBe(h2.NGHTTP2_FRAME_SIZE_ERROR);
      slow.end(' part two');
      const body = await new Promise<string>((resolve) => {
        let text = '';
        slow.on('data', (c: Buffer) => (text += c.toString()));
        slow.on('end', () => resolve(text));
      });
      expect(body).toMatch(/^proto=2\.0 POST \/slow body=18/);
    } finally {
      good.close();
    }
  });

  it('ends a connection that resets streams in a burst (rapid reset) with GOAWAY(ENHANCE_YOUR_CALM)', async () => {
    const abuser = h2connect(base);
    abuser.on('error', () => undefined);
    const goaway = new Promise<number>((resolve) => abuser.once('goaway', (code: number) => resolve(code)));
    for (let i = 0; i < 400 && !abuser.destroyed && !abuser.closed; i++) {
      const s = abuser.request({ ':path': `/r${i}` });
      s.on('error', () => undefined);
      s.close(h2.NGHTTP2_CANCEL);
    }
    expect(await goaway).toBe(h2.NGHTTP2_ENHANCE_YOUR_CALM);
    abuser.destroy();
    const after = await curl(['--http2-prior-knowledge', `${base}/after`]);
    expect(after.status).toBe(200);
  });
});


describe('WebSocket over HTTP/2 (RFC 8441 extended CONNECT) is not offered', () => {
  let app: { server: Server; port: number };
  let mesh: Mesh;
  let seen: string[];

  beforeAll(async () => {
    app = await startMixedApp();
    seen = [];
    app.server.on('connection', () => seen.push('connection'));
    mesh = await startMesh({ appPorts: [app.port], protocol: 'http', policy: POLICY });
  }, 30_000);

  afterAll(async () => {
    await mesh?.close();
    await new Promise<void>((resolve) => app?.server.close(() => resolve()));
  });

  it('the app-facing server leaves SETTINGS_ENABLE_CONNECT_PROTOCOL off, so an extended CONNECT never starts; a plain CONNECT gets 400 and reaches no app', async () => {
    const client = h2connect(`http://127.0.0.1:${mesh.listenerPort}`);
    client.on('error', () => undefined);
    try {
      const settings = await new Promise<{ enableConnectProtocol?: boolean }>((resolve) => client.once('remoteSettings', resolve));
      // RFC 8441 §3: without the setting a client must not send :protocol; conforming WebSocket clients
      // (browsers, Go, node) open an HTTP/1.1 connection instead, which the upgrade path carries.
      expect(settings.enableConnectProtocol).toBe(false);
      const extended = client.request({ ':method': 'CONNECT', ':protocol': 'websocket', ':path': '/chat', ':scheme': 'http', ':authority': 'echo' });
      const failed = await new Promise<string>((resolve) => {
        extended.on('error', (err: NodeJS.ErrnoException) => resolve(String(err.code)));
        extended.on('response', (h) => resolve(`response ${String(h[':status'])}`));
      });
      expect(failed).toBe('ERR_HTTP2_STREAM_ERROR');
      const plain = client.request({ ':method': 'CONNECT', ':authority': 'echo.shop:80' });
      plain.on('error', () => undefined);
      const status = await new Promise<number>((resolve) => plain.on('response', (h) => resolve(Number(h[':status']))));
      expect(status).toBe(400);
      expect(seen).toEqual([]);
    } finally {
      client.close();
    }
  });
});

/** The payload of the first frame of `type` after the connection's frames start. */
function findFrame(bytes: Buffer, type: number): Buffer | undefined {
  let at = 0;
  while (at + 9 <= bytes.length) {
    const length = bytes.readUIntBE(at, 3);
    if (bytes[at + 3] === type) return bytes.subarray(at + 9, at + 9 + length);
    at += 9 + length;
  }
  return undefined;
}
