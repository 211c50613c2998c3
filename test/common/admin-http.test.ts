/**
 * The bounded server behind every admin and status port (common/admin-http.ts), over a real socket on
 * port 0: routing, methods, HEAD, 404/405/500 and the header budget.
 */
import { request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { Server } from 'node:http';
import { createAdminHttpServer, jsonReply, textReply, type AdminHttpOptions } from '../../common/admin-http.js';

interface Answer {
  readonly status: number;
  readonly headers: Record<string, string | string[] | undefined>;
  readonly body: string;
}

const servers: Server[] = [];
afterEach(async () => {
  for (const server of servers.splice(0)) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
});

async function start(options: Partial<AdminHttpOptions> = {}): Promise<number> {
  const server = createAdminHttpServer({
    routes: {
      '/healthz': () => textReply(200, 'ok\n'),
      '/state': () => jsonReply(200, { ready: true }),
      '/slow': async () => textReply(200, 'later\n'),
      '/broken': () => {
        throw new Error('boom');
      },
    },
    methodNotAllowed: textReply(405, 'only GET and HEAD\n'),
    notFound: (path) => textReply(404, `no ${path}\n`),
    ...options,
  });
  servers.push(server);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function call(port: number, path: string, method = 'GET', headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = request({ host: '127.0.0.1', port, path, method, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('admin HTTP server', () => {
  it('routes by path, ignoring the query, with no-store and a length', async () => {
    const port = await start();
    const answer = await call(port, '/healthz?verbose=1');
    expect(answer).toMatchObject({ status: 200, body: 'ok\n' });
    expect(answer.headers).toMatchObject({ 'content-type': 'text/plain', 'content-length': '3', 'cache-control': 'no-store' });
    expect(await call(port, '/state')).toMatchObject({ status: 200, body: '{\n  "ready": true\n}\n', headers: { 'content-type': 'application/json' } });
    expect(await call(port, '/slow')).toMatchObject({ status: 200, body: 'later\n' });
  });

  it('answers HEAD with the headers only', async () => {
    const port = await start();
    const answer = await call(port, '/healthz', 'HEAD');
    expect(answer).toMatchObject({ status: 200, body: '', headers: { 'content-length': '3' } });
  });

  it('refuses other methods with 405 and allow, and unknown paths with the server 404', async () => {
    const port = await start();
    expect(await call(port, '/healthz', 'POST')).toMatchObject({ status: 405, body: 'only GET and HEAD\n', headers: { allow: 'GET, HEAD' } });
    expect(await call(port, '/nope')).toMatchObject({ status: 404, body: 'no /nope\n' });
  });

  it('sends a route that throws to onError (500 by default)', async () => {
    const port = await start();
    expect(await call(port, '/broken')).toMatchObject({ status: 500, body: 'internal error\n' });
    const custom = await start({ onError: (err) => textReply(500, `${(err as Error).message}\n`) });
    expect(await call(custom, '/broken')).toMatchObject({ status: 500, body: 'boom\n' });
  });

  it('gives raw routes the request whatever its method, and looks up paths not in the table', async () => {
    const port = await start({
      rawRoutes: { '/raw': (req, res) => res.end(`raw ${req.method}`) },
      lookup: (path) => (path.startsWith('/dyn/') ? () => textReply(200, `${path}\n`) : undefined),
    });
    expect(await call(port, '/raw', 'POST')).toMatchObject({ status: 200, body: 'raw POST' });
    expect(await call(port, '/dyn/a')).toMatchObject({ status: 200, body: '/dyn/a\n' });
  });

  it('keeps to its header budget', async () => {
    const port = await start({ limits: { maxHeaderBytes: 1024 } });
    expect((await call(port, '/healthz', 'GET', { 'x-big': 'a'.repeat(2048) })).status).toBe(431);
  });
});
