/**
 * Regression: "an h2c upgrade on an allowed path carries every later request past authorization". After the
 * app's 101 the connection is no longer HTTP to the mesh, so what may be switched to is a rule: never h2c
 * (400 `TRELLIS_HTTP_UPGRADE_REFUSED` on both sides), other protocols only when the app port lists them
 * (WebSocket by default), and the app's 101 must name a protocol that was asked for (else 502).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { IncomingMessage } from 'node:http';
import type { ClientHttp2Session } from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import type { AppHttpOptions } from '../../api/data-plane.js';
import { isConfigurableUpgradeProtocol, switchAccepted, upgradeProtocolNames, upgradeRequestProblem } from '../../proxy/http/upgrade-rules.js';
import { PUBLIC_ONLY_POLICY, startMesh, type TestMesh } from './http-harness.js';
import { peerSession, rawRequest, upgradeExchange } from './support/peer.js';

const H2C = 'GET /public/x HTTP/1.1\r\nHost: payments\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n';

function upgradeTo(protocol: string, path = '/public/ws'): string {
  return `GET ${path} HTTP/1.1\r\nHost: payments\r\nConnection: Upgrade\r\nUpgrade: ${protocol}\r\n\r\n`;
}

/** An app that switches to what was asked (or to `answerWith`) and then echoes. */
async function upgradingMesh(lanes: boolean, appHttp?: AppHttpOptions, answerWith?: string): Promise<TestMesh> {
  const mesh = await startMesh({ apps: [(_req, res) => res.end('plain')], policyYaml: PUBLIC_ONLY_POLICY, lanes, recordBytes: true, ...(appHttp === undefined ? {} : { appHttp }) });
  mesh.apps[0]!.server.on('upgrade', (req: IncomingMessage, socket: Socket) => {
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: ${answerWith ?? String(req.headers.upgrade)}\r\n\r\n`);
    socket.pipe(socket);
  });
  return mesh;
}

/** Sends an upgrade to the outbound sidecar; after a 101, `after` goes through and the echo is awaited. */
function upgradeThroughOutbound(port: number, head: string, after: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = netConnect({ host: '127.0.0.1', port });
    let text = '';
    const timer = setTimeout(() => socket.destroy(), 3_000);
    socket.on('error', () => undefined);
    socket.on('data', (c: Buffer) => {
      text += c.toString('latin1');
      if (text.startsWith('HTTP/1.1 101') && text.includes('\r\n\r\n') && !text.endsWith(after) && !socket.destroyed) {
        if (!text.includes(after)) socket.write(after);
      }
      if (text.endsWith(after)) socket.destroy();
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(text);
    });
    socket.write(head);
  });
}

describe('the upgrade rules', () => {
  it('reads Upgrade lists (name/version, any case, empty elements) and refuses what is not a protocol', () => {
    expect(upgradeProtocolNames(' WebSocket , ,foo/1.1')).toEqual(['websocket', 'foo']);
    expect(upgradeProtocolNames(['a', 'b/2'])).toEqual(['a', 'b']);
    for (const bad of [undefined, '', ' , ', 'web socket', 'a/', '/1', 'a;b']) expect(upgradeProtocolNames(bad)).toBeNull();
  });

  it('never carries h2c, carries only listed protocols, and needs a 101 to a requested one', () => {
    const allowed = ['websocket'];
    expect(upgradeRequestProblem('websocket', false, allowed)).toBeUndefined();
    expect(upgradeRequestProblem('WebSocket/13', false, allowed)).toBeUndefined();
    expect(upgradeRequestProblem('h2c', false, undefined)).toMatch(/h2c/);
    expect(upgradeRequestProblem('H2C', false, ['h2c'])).toMatch(/h2c/);
    expect(upgradeRequestProblem('websocket', true, allowed)).toMatch(/HTTP2-Settings/);
    expect(upgradeRequestProblem('websocket, foo', false, allowed)).toMatch(/foo/);
    expect(upgradeRequestProblem('foo', false, undefined)).toBeUndefined();
    expect(upgradeRequestProblem(undefined, false, allowed)).toMatch(/no valid protocol/);
    expect(switchAccepted('websocket', 'WebSocket')).toBe(true);
    expect(switchAccepted('websocket, foo', 'foo/2')).toBe(true);
    expect(switchAccepted('websocket', 'h2c')).toBe(false);
    expect(switchAccepted('websocket', 'websocket, foo')).toBe(false);
    expect(switchAccepted('websocket', undefined)).toBe(false);
    expect(isConfigurableUpgradeProtocol('websocket')).toBe(true);
    for (const bad of ['h2c', 'h2', 'WebSocket', '', 'a b']) expect(isConfigurableUpgradeProtocol(bad)).toBe(false);
  });
});

describe.each([
  ['lanes', true],
  ['HTTP/2 requests', false],
])('h2c and unlisted upgrades (%s)', (_name, lanes) => {
  let mesh: TestMesh;
  let peer: ClientHttp2Session;
  beforeAll(async () => {
    mesh = await upgradingMesh(lanes);
    peer = await peerSession(mesh);
  });
  afterAll(async () => {
    peer?.destroy();
    await mesh?.close();
  });

  it('refuses h2c at the outbound sidecar with 400, before anything reaches the app', async () => {
    const answer = await rawRequest(mesh.outboundPort, `${H2C}GET /admin/secret HTTP/1.1\r\nHost: payments\r\n\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain('trellis-error: TRELLIS_HTTP_UPGRADE_REFUSED');
    expect(mesh.recorders[0]!.text()).toBe('');
  });

  it('refuses h2c from an allowed peer on a tunnelled upgrade with 400', async () => {
    const answer = await upgradeExchange(peer, H2C);
    expect(answer.status).toBe(400);
    expect(answer.headers['trellis-error']).toBe('TRELLIS_HTTP_UPGRADE_REFUSED');
    const settingsOnly = await upgradeExchange(peer, 'GET /public/x HTTP/1.1\r\nHost: payments\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nHTTP2-Settings: AAMAAABk\r\n\r\n');
    expect(settingsOnly.status).toBe(400);
    expect(mesh.recorders[0]!.text()).toBe('');
  });

  it('refuses a protocol the port does not list (400 from the inbound), on both ways in', async () => {
    const through = await rawRequest(mesh.outboundPort, upgradeTo('foo'));
    expect(through).toMatch(/^HTTP\/1\.1 400 /);
    expect(through).toContain('TRELLIS_HTTP_UPGRADE_REFUSED');
    const direct = await upgradeExchange(peer, upgradeTo('websocket, foo/2'));
    expect(direct.status).toBe(400);
    expect(mesh.recorders[0]!.text()).toBe('');
  });

  it('carries a WebSocket upgrade by default', async () => {
    const text = await upgradeThroughOutbound(mesh.outboundPort, upgradeTo('websocket'), 'ping');
    expect(text).toMatch(/^HTTP\/1\.1 101 /);
    expect(text.endsWith('ping')).toBe(true);
  });
});

describe('per-port upgrade protocols and the 101 check', () => {
  it('carries only the protocols the port lists', async () => {
    const mesh = await upgradingMesh(true, { upgradeProtocols: ['tls'] });
    try {
      expect(await upgradeThroughOutbound(mesh.outboundPort, upgradeTo('TLS/1.3'), 'ping')).toMatch(/^HTTP\/1\.1 101 [\s\S]*ping$/);
      const refused = await rawRequest(mesh.outboundPort, upgradeTo('websocket'));
      expect(refused).toMatch(/^HTTP\/1\.1 400 /);
      expect(refused).toContain('TRELLIS_HTTP_UPGRADE_REFUSED');
    } finally {
      await mesh.close();
    }
  });

  it('refuses a 101 to a protocol that was not requested (502), carrying nothing after it', async () => {
    const mesh = await upgradingMesh(true, undefined, 'h2c');
    try {
      const answer = await rawRequest(mesh.outboundPort, upgradeTo('websocket'));
      expect(answer).toMatch(/^HTTP\/1\.1 502 /);
      expect(answer).toContain('TRELLIS_HTTP_APP_BAD_RESPONSE');
    } finally {
      await mesh.close();
    }
  });
});
