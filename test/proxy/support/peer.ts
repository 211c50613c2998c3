/**
 * A hostile but allowed peer for the HTTP path's tests: an HTTP/2 session straight to a test tunnel with a
 * mesh certificate (shop/orders), so a test can write raw bytes on a lane or a tunnelled-upgrade stream
 * without the outbound sidecar's checks in between. Also a raw HTTP/1.1 client for the outbound listener.
 */
import { connect as h2connect, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { buildTlsMaterial } from '../../../proxy/core/tls-material.js';
import { LANE_HEADER, LANE_HTTP1 } from '../../../proxy/core/tunnel-protocol.js';
import type { TestMesh } from '../http-harness.js';
import { ROUTE } from '../http-harness.js';

/** A session to the first tunnel of `mesh` as shop/orders (allowed by the test policies). */
export async function peerSession(mesh: TestMesh): Promise<ClientHttp2Session> {
  const material = buildTlsMaterial(await mesh.pki.issue('orders', 'shop'));
  const port = mesh.tunnels[0]!.port;
  const session = h2connect(`https://127.0.0.1:${port}`, {
    createConnection: () => tlsConnect({ host: '127.0.0.1', port, secureContext: material.clientContext, ALPNProtocols: ['h2'], checkServerIdentity: () => undefined }),
  });
  session.on('error', () => undefined);
  return session;
}

/**
 * Collects bytes until one whole HTTP/1.1 response (by Content-Length, or the end of the stream) has come,
 * or `ms` passes: a lane is not closed after every answer.
 */
function collectResponse(source: NodeJS.ReadableStream & { destroy(): void }, ms: number): Promise<string> {
  return new Promise((resolve) => {
    const parts: Buffer[] = [];
    let done = false;
    const finish = (): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      resolve(Buffer.concat(parts).toString('latin1'));
    };
    const timer = setTimeout(finish, ms);
    source.on('data', (c: Buffer) => {
      parts.push(c);
      const text = Buffer.concat(parts).toString('latin1');
      const headEnd = text.indexOf('\r\n\r\n');
      const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(0, headEnd));
      if (headEnd >= 0 && length !== null && text.length >= headEnd + 4 + Number(length[1])) finish();
    });
    source.on('end', finish);
    source.on('close', finish);
    source.on('error', finish);
  });
}

/** Writes raw bytes on a fresh lane and returns the first response on it. */
export function laneExchange(session: ClientHttp2Session, bytes: string, ms = 3_000): Promise<string> {
  const stream = session.request({ ':method': 'CONNECT', ':authority': `payments.shop:${ROUTE.targetPort}`, [LANE_HEADER]: LANE_HTTP1 });
  stream.on('error', () => undefined);
  const answer = collectResponse(stream, ms);
  stream.write(bytes, 'latin1');
  return answer.finally(() => stream.destroy());
}

/** Writes raw bytes on a tunnelled-upgrade stream (CONNECT without the lane mark): the CONNECT's status and what follows. */
export function upgradeExchange(session: ClientHttp2Session, bytes: string, ms = 3_000): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  const stream: ClientHttp2Stream = session.request({ ':method': 'CONNECT', ':authority': `payments.shop:${ROUTE.targetPort}` });
  stream.on('error', () => undefined);
  const headers = new Promise<IncomingHttpHeaders>((resolve) => {
    stream.once('response', resolve);
    stream.once('close', () => resolve({ ':status': '0' }));
  });
  const body = collectResponse(stream, ms);
  stream.write(bytes, 'latin1');
  return Promise.all([headers, body]).then(([h, b]) => {
    stream.destroy();
    return { status: Number(h[':status']), headers: h, body: b };
  });
}

/** Writes raw bytes to a local port (the outbound listener) and returns the first response. */
export function rawRequest(port: number, bytes: string, ms = 3_000): Promise<string> {
  const socket = netConnect({ host: '127.0.0.1', port });
  socket.on('error', () => undefined);
  const answer = collectResponse(socket, ms);
  socket.write(bytes, 'latin1');
  return answer.finally(() => socket.destroy());
}
