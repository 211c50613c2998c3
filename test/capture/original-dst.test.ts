/**
 * The original-destination loader and addon, in this process, with real sockets on loopback: what it says
 * when the addon is missing, and the clear errors it gives for every fd that is not a redirected TCP
 * connection. (A real redirected connection is in redirect-traffic.test.ts, inside a namespace.)
 */
import { mkdtempSync, mkdirSync, openSync, closeSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createOriginalDstReader, getOriginalDst, getSocketOriginalDst, originalDstUnavailableReason, socketFd } from '../../proxy/core/original-dst.js';

describe('when the addon is unavailable', () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), 'trellis-odst-'));
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('says the addon is missing and how to build it', () => {
    const reader = createOriginalDstReader({ packageRoot: dir });
    expect(reader.unavailableReason).toMatch(/original_dst\.node is missing \(it is built by `npm ci`; run `npm rebuild` in .* with python3, make and a C compiler installed\)/);
    expect(() => reader.getOriginalDst(0)).toThrow(expect.objectContaining({ code: 'TRELLIS_CAPTURE_UNAVAILABLE' }));
  });

  it('repeats the reason the install script recorded when the build failed', () => {
    mkdirSync(join(dir, 'build'), { recursive: true });
    writeFileSync(join(dir, 'build', 'original_dst-unavailable.txt'), 'node-gyp could not build the addon: missing make\n');
    expect(createOriginalDstReader({ packageRoot: dir }).unavailableReason).toBe('node-gyp could not build the addon: missing make');
  });

  it('says why a file that is not the addon cannot be loaded', () => {
    const bogus = join(dir, 'bogus.node');
    writeFileSync(bogus, 'not a shared object');
    expect(createOriginalDstReader({ addonPath: bogus }).unavailableReason).toMatch(/could not be loaded/);
  });
});

const addonReason = originalDstUnavailableReason();
if (addonReason !== null && process.env.CI === 'true') throw new Error(`CI=true and the original-destination addon is unavailable: ${addonReason}`);

describe.skipIf(addonReason !== null)('with the built addon', () => {
  let server: net.Server;
  let client: net.Socket;
  let accepted: net.Socket;

  beforeAll(async () => {
    const acceptedPromise = new Promise<net.Socket>((resolve) => {
      server = net.createServer(resolve);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    accepted = await acceptedPromise;
  });
  afterAll(async () => {
    client?.destroy();
    accepted?.destroy();
    await new Promise((resolve) => server?.close(resolve));
  });

  it('finds the file descriptor of a connected socket', () => {
    const fd = socketFd(accepted);
    expect(Number.isInteger(fd) && fd > 2).toBe(true);
    expect(socketFd(client)).not.toBe(fd);
  });

  it('reports a connection that was never redirected as such', () => {
    expect(() => getSocketOriginalDst(accepted)).toThrow(expect.objectContaining({ code: 'TRELLIS_CAPTURE_NOT_REDIRECTED', side: 'downstream' }));
  });

  it('explains an fd that is not a socket', () => {
    const file = openSync(new URL(import.meta.url), 'r');
    try {
      expect(() => getOriginalDst(file)).toThrow(
        expect.objectContaining({ code: 'TRELLIS_CAPTURE_ORIGINAL_DST_FAILED', message: expect.stringContaining('the file descriptor is not a socket (ENOTSOCK)') }),
      );
    } finally {
      closeSync(file);
    }
  });

  it('explains an fd that is not open', () => {
    const file = openSync(new URL(import.meta.url), 'r');
    closeSync(file);
    expect(() => getOriginalDst(file)).toThrow(expect.objectContaining({ message: expect.stringContaining('(EBADF)'), details: expect.objectContaining({ errno: 'EBADF' }) }));
  });

  it('explains a socket that is not TCP/IP', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'trellis-odst-unix-'));
    const path = join(dir, 's.sock');
    const unixServer = net.createServer((s) => s.destroy());
    await new Promise<void>((resolve) => unixServer.listen(path, resolve));
    const unixClient = net.connect(path);
    try {
      await new Promise((resolve) => unixClient.once('connect', resolve));
      expect(() => getSocketOriginalDst(unixClient)).toThrow(expect.objectContaining({ code: 'TRELLIS_CAPTURE_ORIGINAL_DST_FAILED', message: expect.stringContaining('EAFNOSUPPORT') }));
    } finally {
      unixClient.destroy();
      await new Promise((resolve) => unixServer.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses fds that are not non-negative integers, and closed sockets', () => {
    expect(() => getOriginalDst(-1)).toThrow(/non-negative integer/);
    expect(() => getOriginalDst(1.5)).toThrow(/non-negative integer/);
    const closed = new net.Socket();
    expect(() => socketFd(closed)).toThrow(/closed/);
  });
});
