/**
 * HTTP/1.1 as an app sees it without a mesh, through a sidecar pair: keep-alive reuse on both hops,
 * `Connection: close`, chunked bodies both ways, request and response trailers, HEAD/204/304 without
 * bodies, pipelining, Expect: 100-continue (relayed from the destination app), and an upgrade echo.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { Agent, request, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';
import { send } from './http-client.js';
import { startMesh, type TestMesh } from './http-harness.js';

interface Seen {
  readonly method: string;
  readonly url: string;
  readonly headers: IncomingMessage['headers'];
  readonly body: string;
  readonly trailers: IncomingMessage['trailers'];
}

function app(seen: Seen[]) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const body = Buffer.concat(parts).toString();
      seen.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body, trailers: req.trailers });
      const url = req.url ?? '/';
      if (req.method === 'HEAD') {
        res.writeHead(200, { 'content-length': '42', 'content-type': 'text/plain' });
        res.end();
      } else if (url === '/no-content') {
        res.writeHead(204);
        res.end();
      } else if (url === '/not-modified') {
        res.writeHead(304, { etag: '"v1"' });
        res.end();
      } else if (url === '/chunked') {
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('part1-');
        setImmediate(() => {
          res.write('part2-');
          res.end('end');
        });
      } else if (url === '/trailers') {
        res.writeHead(200, { trailer: 'x-checksum' });
        res.write('body');
        res.addTrailers({ 'x-checksum': 'abc123' });
        res.end();
      } else if (url.startsWith('/slow')) {
        setTimeout(() => res.end(`slow ${url}`), 50);
      } else {
        res.setHeader('content-type', 'text/plain');
        res.setHeader('set-cookie', ['a=1', 'b=2']);
        res.end(`${req.method} ${url} ${body}`);
      }
    });
  };
}

describe('HTTP path: HTTP/1.1 semantics through the mesh', () => {
  let mesh: TestMesh;
  const seen: Seen[] = [];

  beforeAll(async () => {
    mesh = await startMesh({ apps: [app(seen)] });
    const target = mesh.apps[0];
    // Expect: 100-continue handled by the destination app itself.
    target?.server.on('checkContinue', (req: IncomingMessage, res: ServerResponse) => {
      if (req.url === '/refuse-upload') {
        res.writeHead(413, { 'content-type': 'text/plain' });
        res.end('too big');
        return;
      }
      res.writeContinue();
      app(seen)(req, res);
    });
    target?.server.on('upgrade', (req: IncomingMessage, socket: Socket, head: Buffer) => {
      if (req.url === '/decline') {
        socket.end('HTTP/1.1 426 Upgrade Required\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope');
        return;
      }
      socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Path: ${req.url}\r\n\r\n`);
      if (head.length > 0) socket.write(head);
      socket.pipe(socket);
    });
  });
  afterAll(async () => {
    await mesh?.close();
  });

  it('reuses one kept-alive connection on both hops for sequential requests', async () => {
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const appConnectionsBefore = mesh.apps[0]?.connections ?? 0;
    try {
      const ports = new Set<number | undefined>();
      for (let i = 0; i < 5; i += 1) {
        const res = await send({ port: mesh.outboundPort, path: `/k${i}`, agent });
        expect(res.status).toBe(200);
        expect(res.headers.connection).toBe('keep-alive');
        ports.add(res.localPort);
      }
      expect(ports.size).toBe(1);
      // The inbound's pool reused its app connection too (at most the one it already had).
      expect((mesh.apps[0]?.connections ?? 0) - appConnectionsBefore).toBeLessThanOrEqual(1);
    } finally {
      agent.destroy();
    }
  });

  it('honours Connection: close from the app client', async () => {
    const socket = connect(mesh.outboundPort, '127.0.0.1');
    const text = await new Promise<string>((resolve, reject) => {
      let data = '';
      socket.on('data', (c: Buffer) => (data += c.toString()));
      socket.on('end', () => resolve(data));
      socket.on('error', reject);
      socket.write('GET /bye HTTP/1.1\r\nHost: payments\r\nConnection: close\r\n\r\n');
    });
    expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    expect(text.toLowerCase()).toContain('connection: close');
    expect(text).toContain('GET /bye');
    socket.destroy();
  });

  it('carries chunked request and response bodies', async () => {
    const res = await send({ port: mesh.outboundPort, method: 'POST', path: '/echo', body: ['one,', 'two,', 'three'] });
    expect(res.status).toBe(200);
    expect(res.body).toBe('POST /echo one,two,three');
    const last = seen.at(-1);
    expect(last?.headers['transfer-encoding']).toBe('chunked');
    const chunked = await send({ port: mesh.outboundPort, path: '/chunked' });
    expect(chunked.body).toBe('part1-part2-end');
    expect(chunked.headers['transfer-encoding']).toBe('chunked');
  });

  it('frames a GET body without content-length as chunked towards the app', async () => {
    const res = await send({ port: mesh.outboundPort, method: 'GET', path: '/get-with-body', headers: { 'transfer-encoding': 'chunked' }, body: ['a', 'b'] });
    expect(res.status).toBe(200);
    expect(res.body).toBe('GET /get-with-body ab');
  });

  it('keeps repeated response headers (set-cookie) and content-length bodies', async () => {
    const res = await send({ port: mesh.outboundPort, method: 'PUT', path: '/x', body: 'payload', headers: { 'content-length': '7' } });
    expect(res.headers['set-cookie']).toEqual(['a=1', 'b=2']);
    expect(res.body).toBe('PUT /x payload');
    expect(seen.at(-1)?.headers['content-length']).toBe('7');
  });

  it('carries request and response trailers', async () => {
    const res = await new Promise<{ trailers: IncomingMessage['trailers']; body: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: mesh.outboundPort, method: 'POST', path: '/trailers', headers: { trailer: 'x-sum', te: 'trailers' }, agent: false });
      req.on('error', reject);
      req.on('response', (r) => {
        let body = '';
        r.on('data', (c: Buffer) => (body += c.toString()));
        r.on('end', () => resolve({ trailers: r.trailers, body }));
      });
      req.write('data');
      req.addTrailers({ 'x-sum': '42' });
      req.end();
    });
    expect(res.body).toBe('body');
    expect(res.trailers['x-checksum']).toBe('abc123');
    expect(seen.at(-1)?.trailers['x-sum']).toBe('42');
  });

  it('answers HEAD, 204 and 304 without bodies', async () => {
    const head = await send({ port: mesh.outboundPort, method: 'HEAD', path: '/h' });
    expect(head.status).toBe(200);
    expect(head.body).toBe('');
    expect(head.headers['content-length']).toBe('42');
    const noContent = await send({ port: mesh.outboundPort, path: '/no-content' });
    expect(noContent.status).toBe(204);
    expect(noContent.body).toBe('');
    const notModified = await send({ port: mesh.outboundPort, path: '/not-modified' });
    expect(notModified.status).toBe(304);
    expect(notModified.headers.etag).toBe('"v1"');
  });

  it('answers pipelined requests in order on one connection', async () => {
    const socket = connect(mesh.outboundPort, '127.0.0.1');
    const text = await new Promise<string>((resolve, reject) => {
      let data = '';
      socket.on('data', (c: Buffer) => {
        data += c.toString();
        if ((data.match(/HTTP\/1\.1 200/g) ?? []).length === 3 && data.endsWith('GET /p3 ')) resolve(data);
      });
      socket.on('error', reject);
      // The first is slow: the others must still come back after it.
      socket.write('GET /slow/p1 HTTP/1.1\r\nHost: a\r\n\r\nGET /p2 HTTP/1.1\r\nHost: a\r\n\r\nGET /p3 HTTP/1.1\r\nHost: a\r\n\r\n');
    });
    socket.destroy();
    const first = text.indexOf('slow /slow/p1');
    const second = text.indexOf('GET /p2');
    const third = text.indexOf('GET /p3');
    expect(first).toBeGreaterThan(0);
    expect(second).toBeGreaterThan(first);
    expect(third).toBeGreaterThan(second);
  });

  it('relays Expect: 100-continue from the destination app, then the body', async () => {
    const result = await new Promise<{ continued: boolean; status: number; body: string }>((resolve, reject) => {
      let continued = false;
      const req = request({ host: '127.0.0.1', port: mesh.outboundPort, method: 'POST', path: '/upload', headers: { expect: '100-continue', 'content-length': '5' }, agent: false });
      req.on('error', reject);
      req.on('continue', () => {
        continued = true;
        req.end('12345');
      });
      req.on('response', (r) => {
        let body = '';
        r.on('data', (c: Buffer) => (body += c.toString()));
        r.on('end', () => resolve({ continued, status: r.statusCode ?? 0, body }));
      });
    });
    expect(result.continued).toBe(true);
    expect(result.status).toBe(200);
    expect(result.body).toBe('POST /upload 12345');
    expect(seen.at(-1)?.headers.expect).toBe('100-continue');
  });

  it('relays a refusal of an Expect: 100-continue upload without the body, and closes the connection', async () => {
    const result = await new Promise<{ continued: boolean; status: number; connection: string | undefined }>((resolve, reject) => {
      let continued = false;
      const req = request({ host: '127.0.0.1', port: mesh.outboundPort, method: 'POST', path: '/refuse-upload', headers: { expect: '100-continue', 'content-length': '5' }, agent: false });
      req.on('error', reject);
      req.on('continue', () => {
        continued = true;
      });
      req.on('response', (r) => {
        r.resume();
        r.on('end', () => resolve({ continued, status: r.statusCode ?? 0, connection: r.headers.connection }));
      });
    });
    expect(result.continued).toBe(false);
    expect(result.status).toBe(413);
    expect(result.connection).toBe('close');
  });

  it('carries an upgrade (WebSocket-style) as a tunnelled stream and echoes bytes both ways', async () => {
    const echoed = await new Promise<{ status: number; path: string | undefined; data: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: mesh.outboundPort, path: '/ws/chat', headers: { connection: 'Upgrade', upgrade: 'websocket' }, agent: false });
      req.on('error', reject);
      req.on('response', (r) => reject(new Error(`expected an upgrade, got ${r.statusCode}`)));
      req.on('upgrade', (res: IncomingMessage, socket: Socket, head: Buffer) => {
        let data = head.toString();
        socket.on('data', (c: Buffer) => {
          data += c.toString();
          if (data === 'hello mesh') {
            socket.destroy();
            resolve({ status: res.statusCode ?? 0, path: res.headers['x-path'] as string | undefined, data });
          }
        });
        socket.write('hello ');
        setImmediate(() => socket.write('mesh'));
      });
      req.end();
    });
    expect(echoed).toEqual({ status: 101, path: '/ws/chat', data: 'hello mesh' });
  });

  it('authorizes an upgrade by its path: a denied one gets 403 and never reaches the app', async () => {
    const result = await new Promise<{ status: number; deniedBy: string | undefined; body: string }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: mesh.outboundPort, path: '/admin/ws', headers: { connection: 'Upgrade', upgrade: 'websocket' }, agent: false });
      req.on('error', reject);
      req.on('upgrade', () => reject(new Error('a denied upgrade must not switch protocols')));
      req.on('response', (r) => {
        let body = '';
        r.on('data', (c: Buffer) => (body += c.toString()));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, deniedBy: r.headers['trellis-denied-by'] as string | undefined, body }));
      });
      req.end();
    });
    expect(result.status).toBe(403);
    expect(result.deniedBy).toBe('shop/payments-callers#0');
    expect(result.body).toContain('TRELLIS_HTTP_DENIED');
  });

  it('relays an upgrade the app declines as a plain response, then closes', async () => {
    const result = await new Promise<{ status: number; body: string; connection: string | undefined }>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: mesh.outboundPort, path: '/decline', headers: { connection: 'Upgrade', upgrade: 'websocket' }, agent: false });
      req.on('error', reject);
      req.on('upgrade', () => reject(new Error('a declined upgrade must not switch protocols')));
      req.on('response', (r) => {
        let body = '';
        r.on('data', (c: Buffer) => (body += c.toString()));
        r.on('end', () => resolve({ status: r.statusCode ?? 0, body, connection: r.headers.connection }));
      });
      req.end();
    });
    expect(result).toEqual({ status: 426, body: 'nope', connection: 'close' });
  });
});
