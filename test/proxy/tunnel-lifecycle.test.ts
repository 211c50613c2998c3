/**
 * The tunnel while things change: a policy change that closes an open, now-denied stream; certificate
 * rotation under steady load; an endpoint killed under load; a slow reader on a big transfer.
 */
import { describe, expect, it } from 'vitest';
import { connect, createServer, type AddressInfo, type Socket } from 'node:net';
import { createServer as createHttpServer, request as httpRequest, type IncomingMessage } from 'node:http';
import { createHash } from 'node:crypto';
import { allow, closeServer, listenerPort, meshFixture, metricValue, policyOf, roundTrip, startClientSidecar, startServerSidecar } from './support/mesh.js';
import type { Sidecar } from '../../proxy/sidecar.js';

const mesh = meshFixture();
const { cleanup, echo } = mesh;

describe('policy change', () => {
  it('closes an open stream that the new policy denies, and leaves allowed ones open', async () => {
    const app = await echo();
    const server = await startServerSidecar({ identity: await mesh.pki.issue('api', 'shop'), appPorts: [{ port: app.port, protocol: 'tcp', host: '127.0.0.1' }], policy: policyOf(allow('api', ['web'])) });
    cleanup.push(() => server.stop(0));
    const client = await startClientSidecar(await mesh.pki.issue('web', 'shop'), [server.addresses().tunnel!.port], app.port);
    cleanup.push(() => client.stop(0));

    const socket = connect({ port: listenerPort(client), host: '127.0.0.1' });
    socket.on('error', () => undefined);
    const closed = new Promise<void>((r) => socket.on('close', () => r()));
    const firstEcho = new Promise<string>((r) => socket.once('data', (d: Buffer) => r(d.toString())));
    socket.write('ping');
    expect(await firstEcho).toBe('ping');

    // Same policy again: nothing is closed.
    await server.applyConfig({ upstreams: [], listeners: [], policy: policyOf(allow('api', ['web'])) });
    const secondEcho = new Promise<string>((r) => socket.once('data', (d: Buffer) => r(d.toString())));
    socket.write('pong');
    expect(await secondEcho).toBe('pong');

    await server.applyConfig({ upstreams: [], listeners: [], policy: policyOf(allow('api', ['billing'])) });
    await closed;
    expect(await metricValue(server, 'trellis_tcp_connections_total', { direction: 'inbound', result: 'policy-revoked' })).toBe(1);
    // And new connections are refused.
    const r = await roundTrip(listenerPort(client), 'again');
    expect(r.data.length).toBe(0);
  });
});

/** An app (half-open allowed) behind a server sidecar for api, reached from web's client sidecar. */
async function tcpMesh(onConnection: (s: Socket) => void): Promise<{ server: Sidecar; port: number; appSockets: Set<Socket> }> {
  const appSockets = new Set<Socket>();
  const app = createServer({ allowHalfOpen: true }, (s) => {
    appSockets.add(s);
    s.on('error', () => undefined);
    onConnection(s);
  });
  await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
  cleanup.push(() => closeServer(app, appSockets));
  const appPort = (app.address() as AddressInfo).port;
  const server = await startServerSidecar({ identity: await mesh.pki.issue('api', 'shop'), appPorts: [{ port: appPort, protocol: 'tcp', host: '127.0.0.1' }], policy: policyOf(allow('api', ['web'])) });
  cleanup.push(() => server.stop(0));
  const client = await startClientSidecar(await mesh.pki.issue('web', 'shop'), [server.addresses().tunnel!.port], appPort);
  cleanup.push(() => client.stop(0));
  return { server, port: listenerPort(client), appSockets };
}

describe('a caller that has already half-closed', () => {

  /** Sends a request and FIN; resolves with how the connection then ended for the caller. */
  function sendAndHalfClose(port: number): { outcome: Promise<string>; socket: Socket } {
    const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    const outcome = new Promise<string>((resolve) => {
      socket.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
      socket.on('end', () => resolve('clean end'));
    });
    socket.resume();
    socket.end('request');
    cleanup.push(async () => {
      socket.destroy();
    });
    return { outcome, socket };
  }

  it('is reset (no clean end) when its stream is cut by a policy change', async () => {
    // The app reads everything and never answers nor closes.
    const { server, port, appSockets } = await tcpMesh((s) => s.resume());
    const { outcome } = sendAndHalfClose(port);
    await expect.poll(() => appSockets.size).toBe(1);
    await expect.poll(() => metricValue(server, 'trellis_tcp_connections_active', { direction: 'inbound' })).toBe(1);
    await server.applyConfig({ upstreams: [], listeners: [], policy: policyOf(allow('api', ['billing'])) });
    expect(await outcome).toBe('ECONNRESET');
  });

  it('is reset (no clean end) when the app resets after part of its answer', async () => {
    const { port } = await tcpMesh((s) => {
      s.once('end', () => s.write('partial answer', () => setTimeout(() => s.resetAndDestroy(), 20)));
      s.resume();
    });
    for (let i = 0; i < 20; i += 1) expect(await sendAndHalfClose(port).outcome).toBe('ECONNRESET');
  });
});

describe('policy change on an http port', () => {
  /** An app that answers every request with a first chunk and then holds the response open. */
  async function holdingApp(): Promise<number> {
    const sockets = new Set<Socket>();
    const app = createHttpServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/plain' });
      res.write('first chunk');
    });
    app.on('connection', (s: Socket) => {
      sockets.add(s);
      s.once('close', () => sockets.delete(s));
    });
    await new Promise<void>((r) => app.listen(0, '127.0.0.1', r));
    cleanup.push(() => closeServer(app as unknown as ReturnType<typeof createServer>, sockets));
    return (app.address() as AddressInfo).port;
  }

  /** Starts a request through the client's listener; resolves with the response once its first chunk is in. */
  function openRequest(port: number, expectContinue: boolean): Promise<{ res: IncomingMessage; ended: Promise<'complete' | 'aborted'> }> {
    return new Promise((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, method: 'POST', path: '/feed', headers: expectContinue ? { expect: '100-continue', 'content-length': '4' } : { 'content-length': '4' } });
      req.on('error', () => undefined);
      if (expectContinue) req.on('continue', () => req.end('body'));
      else req.end('body');
      req.on('response', (res) => {
        const ended = new Promise<'complete' | 'aborted'>((r) => {
          res.on('error', () => undefined);
          res.once('close', () => r(res.complete ? 'complete' : 'aborted'));
        });
        res.once('data', () => resolve({ res, ended }));
        res.resume();
      });
      setTimeout(() => reject(new Error('no first chunk within 5 s')), 5_000).unref();
    });
  }

  // A plain request goes on a lane; one with Expect: 100-continue takes the HTTP/2-request path.
  for (const [path, expectContinue] of [['lane', false], ['HTTP/2 request', true]] as const) {
    it(`resets a request in flight (${path} path) once the new policy denies it`, async () => {
      const appPort = await holdingApp();
      const server = await startServerSidecar({ identity: await mesh.pki.issue('api', 'shop'), appPorts: [{ port: appPort, protocol: 'http', host: '127.0.0.1' }], policy: policyOf(allow('api', ['web'])) });
      cleanup.push(() => server.stop(0));
      const client = await startClientSidecar(await mesh.pki.issue('web', 'shop'), [server.addresses().tunnel!.port], appPort, { protocol: 'http' });
      cleanup.push(() => client.stop(0));

      const { res, ended } = await openRequest(listenerPort(client), expectContinue);
      expect(res.statusCode).toBe(200);
      // The same policy again leaves it open; a policy without web closes it.
      await server.applyConfig({ upstreams: [], listeners: [], policy: policyOf(allow('api', ['web'])) });
      const stillOpen = await Promise.race([ended, new Promise<'open'>((r) => setTimeout(() => r('open'), 200))]);
      expect(stillOpen).toBe('open');
      await server.applyConfig({ upstreams: [], listeners: [], policy: policyOf(allow('api', ['billing'])) });
      expect(await ended).toBe('aborted');
      const next = await openRequest(listenerPort(client), expectContinue).catch((err: Error) => err);
      expect(next instanceof Error ? 0 : next.res.statusCode).toBe(403);
    });
  }
});

describe('certificate rotation under steady load', () => {
  it('fails no connection while both sides rotate their certificates', async () => {
    const app = await echo();
    const server = await startServerSidecar({ identity: await mesh.pki.issue('api', 'shop'), appPorts: [{ port: app.port, protocol: 'tcp', host: '127.0.0.1' }], policy: policyOf(allow('api', ['web'])) });
    cleanup.push(() => server.stop(0));
    const client = await startClientSidecar(await mesh.pki.issue('web', 'shop'), [server.addresses().tunnel!.port], app.port);
    cleanup.push(() => client.stop(0));
    const port = listenerPort(client);
    const newServerId = await mesh.pki.issue('api', 'shop');
    const newClientId = await mesh.pki.issue('web', 'shop');

    let failures = 0;
    let done = 0;
    let running = true;
    const worker = async (w: number): Promise<void> => {
      for (let i = 0; running; i += 1) {
        const payload = `w${w}-${i}`;
        const r = await roundTrip(port, payload);
        if (r.data.toString() !== payload) failures += 1;
        done += 1;
      }
    };
    const workers = Array.from({ length: 8 }, (_, w) => worker(w));
    await expect.poll(() => done, { timeout: 10_000 }).toBeGreaterThan(50);
    server.setIdentity(newServerId);
    client.setIdentity(newClientId);
    const atRotation = done;
    await expect.poll(() => done, { timeout: 10_000 }).toBeGreaterThan(atRotation + 200);
    running = false;
    await Promise.all(workers);
    expect(failures).toBe(0);
    // New sessions were made with the new identity (a full handshake each), and the old ones drained.
    await expect.poll(() => metricValue(client, 'trellis_tunnel_sessions', { direction: 'outbound' })).toBe(2);
  });
});

describe('an endpoint killed under load', () => {
  it('loses only what was in flight on it; new connections go to the other endpoint', async () => {
    const app = await echo();
    const policy = policyOf(allow('api', ['web']));
    const appPorts = [{ port: app.port, protocol: 'tcp' as const, host: '127.0.0.1' }];
    const a = await startServerSidecar({ identity: await mesh.pki.issue('api', 'shop'), appPorts, policy });
    const b = await startServerSidecar({ identity: await mesh.pki.issue('api', 'shop'), appPorts, policy });
    cleanup.push(() => a.stop(0));
    cleanup.push(() => b.stop(0));
    const client = await startClientSidecar(await mesh.pki.issue('web', 'shop'), [a.addresses().tunnel!.port, b.addresses().tunnel!.port], app.port);
    cleanup.push(() => client.stop(0));
    const port = listenerPort(client);

    let inFlight = 0;
    let maxInFlightAtKill = 0;
    let failures = 0;
    let done = 0;
    let running = true;
    const worker = async (w: number): Promise<void> => {
      for (let i = 0; running; i += 1) {
        const payload = `w${w}-${i}`;
        inFlight += 1;
        const r = await roundTrip(port, payload);
        inFlight -= 1;
        if (r.data.toString() !== payload) failures += 1;
        done += 1;
      }
    };
    const workers = Array.from({ length: 8 }, (_, w) => worker(w));
    await expect.poll(() => done, { timeout: 10_000 }).toBeGreaterThan(50);
    maxInFlightAtKill = inFlight;
    await a.stop(0);
    const atKill = done;
    await expect.poll(() => done, { timeout: 10_000 }).toBeGreaterThan(atKill + 200);
    running = false;
    await Promise.all(workers);
    expect(failures).toBeLessThanOrEqual(maxInFlightAtKill);
    // Everything after the kill went to b.
    expect(await metricValue(b, 'trellis_tcp_connections_total', { direction: 'inbound', result: 'ok' })).toBeGreaterThan(200);
  });

  it('retries a connection on another endpoint when the first cannot deliver it', async () => {
    const app = await echo();
    const policy = policyOf(allow('api', ['web']));
    // Endpoint a delivers to 127.0.0.2, where nothing listens: it answers 503 and the client must try b.
    const a = await startServerSidecar({ identity: await mesh.pki.issue('api', 'shop'), appPorts: [{ port: app.port, protocol: 'tcp', host: '127.0.0.2' }], policy });
    const b = await startServerSidecar({ identity: await mesh.pki.issue('api', 'shop'), appPorts: [{ port: app.port, protocol: 'tcp', host: '127.0.0.1' }], policy });
    cleanup.push(() => a.stop(0));
    cleanup.push(() => b.stop(0));
    const client = await startClientSidecar(await mesh.pki.issue('web', 'shop'), [a.addresses().tunnel!.port, b.addresses().tunnel!.port], app.port);
    cleanup.push(() => client.stop(0));
    // 20 sequential connections: the chance that the balancer never tries a first is 2^-20.
    for (let i = 0; i < 20; i += 1) {
      const r = await roundTrip(listenerPort(client), `try ${i}`);
      expect(r.data.toString()).toBe(`try ${i}`);
    }
    expect(await metricValue(a, 'trellis_tcp_connections_total', { direction: 'inbound', result: 'app-refused' })).toBeGreaterThanOrEqual(1);
    expect(await metricValue(b, 'trellis_tcp_connections_total', { direction: 'inbound', result: 'ok' })).toBe(20);
  });
});

describe('shutdown', () => {
  it('stops both sidecars under load, cutting what outlives the grace period', async () => {
    const app = await echo();
    const server = await startServerSidecar({ identity: await mesh.pki.issue('api', 'shop'), appPorts: [{ port: app.port, protocol: 'tcp', host: '127.0.0.1' }], policy: policyOf(allow('api', ['web'])) });
    const client = await startClientSidecar(await mesh.pki.issue('web', 'shop'), [server.addresses().tunnel!.port], app.port);
    const port = listenerPort(client);
    // Long-lived connections that never end on their own, plus a stream of short ones.
    const idle = Array.from({ length: 5 }, () => {
      const s = connect({ port, host: '127.0.0.1' });
      s.on('error', () => undefined);
      s.write('hold');
      return s;
    });
    cleanup.push(async () => idle.forEach((s) => s.destroy()));
    let running = true;
    const load = (async () => {
      while (running) await roundTrip(port, 'x');
    })();
    await expect.poll(() => metricValue(server, 'trellis_tcp_connections_active', { direction: 'inbound' })).toBeGreaterThanOrEqual(5);
    await Promise.all([client.stop(300), server.stop(300)]);
    running = false;
    await load;
    expect(await metricValue(server, 'trellis_tcp_connections_active', { direction: 'inbound' })).toBe(0);
    expect(await metricValue(client, 'trellis_tcp_connections_active', { direction: 'outbound' })).toBe(0);
    expect(server.readiness().ready).toBe(false);
  });
});

describe('a big transfer through a slow reader', () => {
  it('moves 1 MiB intact, and applies backpressure to a fast sender instead of buffering', async () => {
    const payload = Buffer.alloc(64 * 1024 * 1024);
    for (let i = 0; i < payload.length; i += 4096) payload.writeUInt32BE(i, i);
    let appWritten = 0;
    let appStalled = false;
    // An app that streams 64 MiB as fast as the connection takes it, honouring backpressure.
    const { port } = await tcpMesh((s) => {
      const chunk = 64 * 1024;
      const pump = (): void => {
        while (appWritten < payload.length) {
          const slice = payload.subarray(appWritten, appWritten + chunk);
          appWritten += slice.length;
          if (!s.write(slice)) {
            appStalled = true;
            s.once('drain', () => {
              appStalled = false;
              pump();
            });
            return;
          }
        }
        s.end();
      };
      pump();
    });

    const baseline = process.memoryUsage().arrayBuffers;
    const hash = createHash('sha256');
    let received = 0;
    const socket = connect({ port, host: '127.0.0.1' });
    socket.pause();
    const ended = new Promise<void>((r) => socket.on('end', () => r()));
    // Read 1 MiB, then stop reading: the sender must stall with a bounded amount in between.
    socket.on('data', (d: Buffer) => {
      hash.update(d);
      received += d.length;
      if (received >= 1024 * 1024 && received - d.length < 1024 * 1024) socket.pause();
    });
    socket.resume();
    await expect.poll(() => received >= 1024 * 1024 && appStalled, { timeout: 15_000 }).toBe(true);
    // Let everything that can be buffered be buffered.
    let last = -1;
    await expect.poll(() => {
      const same = last === appWritten;
      last = appWritten;
      return same;
    }, { timeout: 15_000, interval: 200 }).toBe(true);
    const inBetween = appWritten - received;
    const userSpaceGrowth = process.memoryUsage().arrayBuffers - baseline;
    // Windows (1 MiB per stream) plus socket buffers in the kernel: far less than the 64 MiB the app wants to send.
    expect(inBetween).toBeLessThan(32 * 1024 * 1024);
    // The payload itself (64 MiB) was allocated before the baseline; buffering in the sidecars stays small.
    expect(userSpaceGrowth).toBeLessThan(24 * 1024 * 1024);
    socket.resume();
    await ended;
    expect(received).toBe(payload.length);
    expect(hash.digest('hex')).toBe(createHash('sha256').update(payload).digest('hex'));
  });
});

