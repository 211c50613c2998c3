/**
 * Large bodies through the sidecar pair: a 1 MiB body both ways intact through slow readers, and
 * backpressure end to end. When the reader stops, the writer must stall after a bounded number of bytes
 * (socket and HTTP/2 flow-control windows), not have the whole body buffered by a sidecar.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { request, type ClientRequest, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Writable } from 'node:stream';
import { startMesh, type TestMesh } from './http-harness.js';

const MiB = 1024 * 1024;
const CHUNK = Buffer.alloc(64 * 1024, 0x61);
/** The whole stream that a stalled reader is offered; far beyond every window on the way. */
const FLOOD_BYTES = 256 * MiB;
/**
 * Bytes that may sit in kernel socket buffers (loopback autotuning) and flow-control windows across the
 * three hops. Measured here: the writer stalls at about 10 MiB either way; a sidecar that buffered the
 * body would let all 256 MiB through.
 */
const IN_FLIGHT_BOUND = 32 * MiB;

/** Writes CHUNK until the destination stops draining for `quietMs`; resolves with the bytes written. */
function writeUntilStalled(dest: Writable, limit: number, quietMs: number): Promise<number> {
  return new Promise((resolve) => {
    let written = 0;
    const pump = (): void => {
      while (written < limit) {
        written += CHUNK.length;
        if (!dest.write(CHUNK)) {
          const timer = setTimeout(() => {
            dest.off('drain', onDrain);
            resolve(written);
          }, quietMs);
          const onDrain = (): void => {
            clearTimeout(timer);
            pump();
          };
          dest.once('drain', onDrain);
          return;
        }
      }
      resolve(written);
    };
    pump();
  });
}

/** Writes the rest with backpressure, then ends. */
function writeRest(dest: Writable, from: number, total: number): Promise<void> {
  return new Promise((resolve) => {
    let written = from;
    const pump = (): void => {
      while (written < total) {
        written += CHUNK.length;
        if (!dest.write(CHUNK)) {
          dest.once('drain', pump);
          return;
        }
      }
      dest.end(() => resolve());
    };
    pump();
  });
}

function deterministicBody(size: number): Buffer {
  const body = Buffer.alloc(size);
  for (let i = 0; i < size; i += 1) body[i] = (i * 31 + (i >> 8)) & 0xff;
  return body;
}

function sha256(data: Buffer): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Reads a stream slowly: pauses after every chunk for a turn of the timer queue. */
function readSlowly(stream: IncomingMessage, onChunk: (chunk: Buffer) => void, done: () => void): void {
  stream.on('data', (chunk: Buffer) => {
    onChunk(chunk);
    stream.pause();
    setTimeout(() => stream.resume(), 1);
  });
  stream.on('end', done);
}

describe('HTTP path: large bodies and backpressure', () => {
  let mesh: TestMesh;
  let releaseRequestReader: (() => void) | undefined;
  let floodResponse: ((res: ServerResponse) => void) | undefined;

  beforeAll(async () => {
    mesh = await startMesh({
      apps: [
        (req: IncomingMessage, res: ServerResponse) => {
          if (req.url === '/echo-slowly') {
            const hash = createHash('sha256');
            res.writeHead(200, { 'content-type': 'application/octet-stream' });
            readSlowly(
              req,
              (chunk) => {
                hash.update(chunk);
                res.write(chunk);
              },
              () => res.end(),
            );
          } else if (req.url === '/stalled-reader') {
            req.pause();
            releaseRequestReader = () => {
              let received = 0;
              req.on('data', (c: Buffer) => (received += c.length));
              req.on('end', () => res.end(String(received)));
              req.resume();
            };
          } else if (req.url === '/flood') {
            floodResponse?.(res);
          }
        },
      ],
    });
  });
  afterAll(async () => {
    await mesh?.close();
  });

  it('carries a 1 MiB body both ways intact through slow readers', async () => {
    const body = deterministicBody(MiB);
    const echoed = await new Promise<Buffer>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: mesh.outboundPort, method: 'POST', path: '/echo-slowly', agent: false });
      req.on('error', reject);
      req.on('response', (res) => {
        const parts: Buffer[] = [];
        readSlowly(res, (c) => parts.push(c), () => resolve(Buffer.concat(parts)));
      });
      req.end(body);
    });
    expect(echoed.length).toBe(MiB);
    expect(sha256(echoed)).toBe(sha256(body));
  });

  it('stalls an upload after a bounded amount when the destination app stops reading', async () => {
    const result = await new Promise<{ stalledAt: number; received: number; arrayBuffersGrowth: number }>((resolve, reject) => {
      const baseline = process.memoryUsage().arrayBuffers;
      const req: ClientRequest = request({ host: '127.0.0.1', port: mesh.outboundPort, method: 'POST', path: '/stalled-reader', agent: false });
      req.on('error', reject);
      req.on('response', (res) => {
        let text = '';
        res.on('data', (c: Buffer) => (text += c.toString()));
        res.on('end', () => resolve({ stalledAt, received: Number(text), arrayBuffersGrowth }));
      });
      let stalledAt = 0;
      let arrayBuffersGrowth = 0;
      void writeUntilStalled(req, FLOOD_BYTES, 300).then(async (written) => {
        stalledAt = written;
        arrayBuffersGrowth = process.memoryUsage().arrayBuffers - baseline;
        releaseRequestReader?.();
        await writeRest(req, written, 32 * MiB > written ? 32 * MiB : written);
      });
    });
    expect(result.stalledAt).toBeLessThan(IN_FLIGHT_BOUND);
    expect(result.arrayBuffersGrowth).toBeLessThan(IN_FLIGHT_BOUND);
    expect(result.received).toBe(Math.max(32 * MiB, result.stalledAt));
  });

  it('stalls a download after a bounded amount when the calling app stops reading', async () => {
    let stalledAt = 0;
    let finishFlood: (() => Promise<void>) | undefined;
    floodResponse = (res) => {
      res.writeHead(200, { 'content-type': 'application/octet-stream' });
      void writeUntilStalled(res, FLOOD_BYTES, 300).then((written) => {
        stalledAt = written;
        finishFlood = () => writeRest(res, written, Math.max(32 * MiB, written));
      });
    };
    const received = await new Promise<number>((resolve, reject) => {
      const req = request({ host: '127.0.0.1', port: mesh.outboundPort, path: '/flood', agent: false });
      req.on('error', reject);
      req.on('response', (res) => {
        res.pause();
        const wait = setInterval(() => {
          if (finishFlood === undefined) return;
          clearInterval(wait);
          let bytes = 0;
          res.on('data', (c: Buffer) => (bytes += c.length));
          res.on('end', () => resolve(bytes));
          res.resume();
          void finishFlood();
        }, 20);
      });
      req.end();
    });
    expect(stalledAt).toBeGreaterThan(0);
    expect(stalledAt).toBeLessThan(IN_FLIGHT_BOUND);
    expect(received).toBe(Math.max(32 * MiB, stalledAt));
  });
});
