/**
 * The zone's golden-metrics uploader against a global that does not know the path (an older version): it
 * answers 404, the zone stops sending on that session and tries again on the next one; the sync stream is
 * never touched. A real HTTP/2 server on loopback answers as an older global does.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { connect, createServer, type ClientHttp2Session, type Http2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { CODE } from '../../../common/error-codes.js';
import { createLogger } from '../../../common/log.js';
import { GoldenWindow } from '../../../control/golden/golden-window.js';
import { GoldenUpload } from '../../../control/zone-sync/golden-upload.js';
import { ZONE_SYNC_PATHS } from '../../../control/zone-sync/protocol.js';

let server: Http2Server | undefined;
const sessions: ClientHttp2Session[] = [];

afterEach(async () => {
  for (const s of sessions.splice(0)) s.destroy();
  await new Promise((r) => (server === undefined ? r(undefined) : server.close(r)));
  server = undefined;
});

/** A server answering the golden path with `status` and counting what it got. */
async function globalAnswering(status: number): Promise<{ url: string; paths: string[] }> {
  const paths: string[] = [];
  server = createServer();
  server.on('stream', (stream, headers) => {
    paths.push(String(headers[':path']));
    stream.resume();
    stream.on('end', () => {
      stream.respond({ ':status': status, 'content-type': 'application/json' });
      stream.end(JSON.stringify(status === 200 ? { accepted: true } : { error: { code: CODE.CONTROL_NOT_FOUND, message: `no ${String(headers[':path'])}` } }));
    });
  });
  await new Promise<void>((r) => server?.listen(0, '127.0.0.1', r));
  return { url: `http://127.0.0.1:${(server?.address() as AddressInfo).port}`, paths };
}

function open(url: string): ClientHttp2Session {
  const s = connect(url);
  sessions.push(s);
  return s;
}

describe('GoldenUpload', () => {
  it('sends the edge view on the live session and stops on that session when the global answers 404', async () => {
    const older = await globalAnswering(404);
    let session = open(older.url);
    const upload = new GoldenUpload({ zone: 'west', window: new GoldenWindow('west'), session: () => session, log: createLogger({ name: 'test', level: 'silent' }) });
    try {
      expect(await upload.sendOnce()).toBe(false);
      expect(await upload.sendOnce()).toBe(false);
      expect(older.paths).toEqual([ZONE_SYNC_PATHS.golden]);
      // A reconnect (a new session: the global may have been upgraded) tries again.
      session = open(older.url);
      expect(await upload.sendOnce()).toBe(false);
      expect(older.paths).toHaveLength(2);
    } finally {
      upload.close();
    }
  });

  it('reports success from a global that takes it, and sends nothing without a live session', async () => {
    const current = await globalAnswering(200);
    let session: ClientHttp2Session | undefined;
    const upload = new GoldenUpload({ zone: 'west', window: new GoldenWindow('west'), session: () => session, log: createLogger({ name: 'test', level: 'silent' }) });
    try {
      expect(await upload.sendOnce()).toBe(false);
      expect(current.paths).toEqual([]);
      session = open(current.url);
      expect(await upload.sendOnce()).toBe(true);
      expect(await upload.sendOnce()).toBe(true);
      expect(current.paths).toEqual([ZONE_SYNC_PATHS.golden, ZONE_SYNC_PATHS.golden]);
    } finally {
      upload.close();
    }
  });
});
