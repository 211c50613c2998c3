/**
 * A framing error inside a request body, on both sides: answered 400 while no response has started (the
 * outbound used to cut the app's connection without a word), and never a 400 written into a response the
 * app already started (the inbound lane used to append one after the app's early answer); the lane is reset
 * instead, so the caller cannot take what follows for a next response.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { LANE_HEADER, LANE_HTTP1 } from '../../proxy/core/tunnel-protocol.js';
import { PUBLIC_ONLY_POLICY, ROUTE, startMesh, type TestMesh } from './http-harness.js';
import { laneExchange, peerSession, rawRequest } from './support/peer.js';

const HEAD = 'POST /public/up HTTP/1.1\r\nHost: payments\r\nTransfer-Encoding: chunked\r\n\r\n';

describe('framing errors in a request body', () => {
  let mesh: TestMesh | undefined;
  afterEach(async () => {
    await mesh?.close();
    mesh = undefined;
  });

  it('answers 400 at the outbound sidecar when no response has started', async () => {
    mesh = await startMesh({ apps: [(req, res) => req.resume().on('end', () => res.end('x'))], policyYaml: PUBLIC_ONLY_POLICY });
    const answer = await rawRequest(mesh.outboundPort, `${HEAD}5\r\nhello\r\nzz\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain('trellis-error: TRELLIS_HTTP_BAD_REQUEST');
    expect(answer.toLowerCase()).toContain('connection: close');
  });

  it('resets the lane, adding nothing, when the app already answered (an early response)', async () => {
    // The app answers at once and never reads the body: its response is on the lane before the error.
    mesh = await startMesh({ apps: [(_req, res) => res.end('early')], policyYaml: PUBLIC_ONLY_POLICY });
    const peer = await peerSession(mesh);
    try {
      const stream = peer.request({ ':method': 'CONNECT', ':authority': `payments.shop:${ROUTE.targetPort}`, [LANE_HEADER]: LANE_HTTP1 });
      stream.on('error', () => undefined);
      let text = '';
      const early = new Promise<void>((resolve) => {
        stream.on('data', (c: Buffer) => {
          text += c.toString('latin1');
          if (text.endsWith('early')) resolve();
        });
      });
      const closed = new Promise<number>((resolve) => stream.once('close', () => resolve(stream.rstCode ?? -1)));
      stream.write(`${HEAD}5\r\nhello\r\n`);
      await early;
      stream.write('zz\r\n');
      const rstCode = await closed;
      expect(text).toMatch(/^HTTP\/1\.1 200 [\s\S]*early$/);
      expect(text).not.toContain('400');
      expect(rstCode).not.toBe(0);
    } finally {
      peer.destroy();
    }
  });
});

/** A chunked upload whose trailer forges the verified caller, for an app that merges trailers into headers. */
const FORGED_TRAILER = `${HEAD}5\r\nhello\r\n0\r\nX-Forwarded-Client-Cert: URI=spiffe://forged/ns/shop/sa/admin\r\n\r\n`;

describe('request trailers that frame, route or belong to the mesh', () => {
  it('are refused with 400 on lanes, through the outbound and from an allowed peer', async () => {
    const mesh = await startMesh({ apps: [(req, res) => req.resume().on('end', () => res.end('x'))], policyYaml: PUBLIC_ONLY_POLICY, recordBytes: true });
    const peer = await peerSession(mesh);
    try {
      expect(await rawRequest(mesh.outboundPort, FORGED_TRAILER)).toMatch(/^HTTP\/1\.1 400 /);
      expect(await laneExchange(peer, FORGED_TRAILER)).toMatch(/^HTTP\/1\.1 400 /);
      expect(mesh.recorders[0]!.text()).not.toContain('forged');
    } finally {
      peer.destroy();
      await mesh.close();
    }
  });

  it('are dropped on the HTTP/2 request path, where trailers are re-serialised', async () => {
    const trailers: Record<string, string | undefined>[] = [];
    const mesh = await startMesh({
      apps: [
        (req, res) => {
          req.resume();
          req.on('end', () => {
            trailers.push(req.trailers);
            res.end('x');
          });
        },
      ],
      policyYaml: PUBLIC_ONLY_POLICY,
      lanes: false,
    });
    try {
      const head = HEAD.replace('\r\n\r\n', '\r\nTrailer: X-Forwarded-Client-Cert, X-Sum\r\n\r\n');
      const answer = await rawRequest(mesh.outboundPort, `${head}5\r\nhello\r\n0\r\nX-Forwarded-Client-Cert: URI=spiffe://forged/ns/shop/sa/admin\r\nX-Sum: 1\r\n\r\n`);
      expect(answer).toMatch(/^HTTP\/1\.1 200 /);
      expect(trailers.at(-1)).toEqual({ 'x-sum': '1' });
    } finally {
      await mesh.close();
    }
  });
});
