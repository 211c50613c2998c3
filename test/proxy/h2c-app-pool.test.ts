/**
 * The inbound's HTTP/2 connections to its app (inbound/http2/h2c-pool.ts) against a real node:http2 server:
 * the app's SETTINGS_MAX_CONCURRENT_STREAMS bounds streams per connection, a few connections are opened and
 * no more, requests beyond wait, an app GOAWAY takes its connection out of rotation while its streams finish,
 * and a refused connection fails the waiting requests with TRELLIS_HTTP_APP_UNAVAILABLE.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createServer, type Http2Server, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { H2cAppPool, DEFAULT_H2C_POOL_LIMITS } from '../../proxy/inbound/http2/h2c-pool.js';
import type { ClientHttp2Stream } from 'node:http2';

interface App {
  server: Http2Server;
  port: number;
  sessions: ServerHttp2Session[];
  active: Map<ServerHttp2Session, number>;
  peak: number;
  held: ServerHttp2Stream[];
}

async function startApp(maxConcurrentStreams: number): Promise<App> {
  const app: App = { server: createServer({ settings: { maxConcurrentStreams } }), port: 0, sessions: [], active: new Map(), peak: 0, held: [] };
  app.server.on('session', (s: ServerHttp2Session) => app.sessions.push(s));
  app.server.on('stream', (stream: ServerHttp2Stream) => {
    const session = stream.session as ServerHttp2Session;
    const n = (app.active.get(session) ?? 0) + 1;
    app.active.set(session, n);
    app.peak = Math.max(app.peak, n);
    stream.once('close', () => app.active.set(session, (app.active.get(session) ?? 1) - 1));
    app.held.push(stream);
  });
  await new Promise<void>((resolve) => app.server.listen(0, '127.0.0.1', resolve));
  app.port = (app.server.address() as AddressInfo).port;
  return app;
}

function answerAll(app: App): void {
  for (const s of app.held.splice(0)) if (!s.destroyed && !s.closed) s.respond({ ':status': 200 }, { endStream: true });
}

function status(stream: ClientHttp2Stream): Promise<number> {
  return new Promise((resolve, reject) => {
    stream.once('response', (h) => resolve(Number(h[':status'])));
    stream.once('error', reject);
    stream.resume();
  });
}

const until = async (cond: () => boolean): Promise<void> => {
  for (let i = 0; i < 500 && !cond(); i++) await new Promise((r) => setTimeout(r, 10));
  expect(cond()).toBe(true);
};

describe('h2c connections to the app', () => {
  const cleanup: (() => void)[] = [];
  afterEach(() => {
    for (const c of cleanup.splice(0)) c();
  });

  it("respects the app's max concurrent streams, opens at most maxConnections, queues the rest", async () => {
    const app = await startApp(2);
    const pool = new H2cAppPool({ port: app.port, protocol: 'http2', host: '127.0.0.1' }, { ...DEFAULT_H2C_POOL_LIMITS, maxConnections: 3 }, undefined);
    cleanup.push(() => pool.close(), () => app.server.close());
    const pending = Array.from({ length: 10 }, () => pool.request({ ':method': 'GET', ':path': '/' }, { endStream: true }));
    await until(() => app.held.length === 6);
    await new Promise((r) => setTimeout(r, 100));
    expect(app.held.length).toBe(6);
    expect(app.sessions.length).toBe(3);
    expect(app.peak).toBe(2);
    const answered: Promise<number>[] = [];
    while (answered.length < 10) {
      await until(() => app.held.length > 0);
      const n = app.held.length;
      answerAll(app);
      for (let i = 0; i < n; i++) answered.push(pending[answered.length]!.then(status));
    }
    expect(await Promise.all(answered)).toEqual(Array.from({ length: 10 }, () => 200));
    expect(app.sessions.length).toBe(3);
    expect(app.peak).toBe(2);
  });

  it("takes a connection out of rotation at the app's GOAWAY; its streams finish, new ones use a new connection", async () => {
    const app = await startApp(100);
    const pool = new H2cAppPool({ port: app.port, protocol: 'http2', host: '127.0.0.1' }, DEFAULT_H2C_POOL_LIMITS, undefined);
    cleanup.push(() => pool.close(), () => app.server.close());
    const first = status(await pool.request({ ':method': 'GET', ':path': '/a' }, { endStream: true }));
    await until(() => app.held.length === 1);
    const [session] = app.sessions;
    session?.goaway(0, 1);
    await new Promise((r) => setTimeout(r, 50));
    const second = status(await pool.request({ ':method': 'GET', ':path': '/b' }, { endStream: true }));
    await until(() => app.held.length === 2);
    expect(app.sessions.length).toBe(2);
    expect(app.held[1]?.session).toBe(app.sessions[1]);
    answerAll(app);
    expect(await first).toBe(200);
    expect(await second).toBe(200);
  });

  it('fails waiting requests with TRELLIS_HTTP_APP_UNAVAILABLE when the app refuses the connection', async () => {
    const app = await startApp(10);
    const port = app.port;
    await new Promise<void>((resolve) => app.server.close(() => resolve()));
    const pool = new H2cAppPool({ port, protocol: 'http2', host: '127.0.0.1' }, DEFAULT_H2C_POOL_LIMITS, undefined);
    cleanup.push(() => pool.close());
    await expect(pool.request({ ':method': 'GET', ':path': '/' }, { endStream: true })).rejects.toMatchObject({ code: 'TRELLIS_HTTP_APP_UNAVAILABLE' });
  });
});
