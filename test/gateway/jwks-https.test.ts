/**
 * A JWT provider's keys from an HTTPS URL, against a real HTTPS server on loopback whose certificate a
 * test CA issued (named by `jwks.caFile`): fetched and used; refreshed on the interval and on an unknown
 * key id (at most once per cooldown however many bogus ids come); the keys kept while the server is down,
 * answers 500, serves a document that is not a usable key set, a body over the size limit, or never
 * answers within the timeout; a server the CA did not issue is refused; the config's rules for `url`,
 * `caFile` and `refresh`.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SignJWT, exportJWK, generateKeyPair } from 'jose';
import { configIssuesOf, formatConfigIssue } from '../../common/config-issues.js';
import { silentLogger } from '../../common/log.js';
import { parseGatewayConfig } from '../../gateway/config-reader.js';
import type { JwtProviderSpec } from '../../gateway/config-types.js';
import { JwtVerifier } from '../../gateway/jwt-verifier.js';
import type { RemoteJwksOptions } from '../../gateway/jwks-remote.js';

type KeyLike = Parameters<SignJWT['sign']>[0];

let dir: string;
let caFile: string;
let otherCaFile: string;
let serverCert: { cert: string; key: string };
let k1: { priv: KeyLike; jwk: object };
let k2: { priv: KeyLike; jwk: object };

/** What the JWKS server does now, changed by each test. */
let serve: (res: ServerResponse) => void;
let hits = 0;
let server: Server;
let url: string;
const verifiers: JwtVerifier[] = [];

function openssl(args: string[]): void {
  execFileSync('openssl', args, { stdio: 'ignore' });
}

/** A CA, and a server certificate for 127.0.0.1 it issued. */
function testCa(name: string): { caFile: string; cert: string; key: string } {
  const ca = join(dir, `${name}-ca.crt`);
  const caKey = join(dir, `${name}-ca.key`);
  openssl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-days', '2', '-subj', `/CN=${name} test CA`, '-keyout', caKey, '-out', ca]);
  const key = join(dir, `${name}-server.key`);
  const csr = join(dir, `${name}-server.csr`);
  const cert = join(dir, `${name}-server.crt`);
  const ext = join(dir, `${name}-ext.cnf`);
  writeFileSync(ext, 'subjectAltName=IP:127.0.0.1,DNS:localhost\n');
  openssl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-subj', '/CN=localhost', '-keyout', key, '-out', csr]);
  openssl(['x509', '-req', '-in', csr, '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-days', '2', '-extfile', ext, '-out', cert]);
  return { caFile: ca, cert: readFileSync(cert, 'utf8'), key: readFileSync(key, 'utf8') };
}

async function keyPair(kid: string): Promise<{ priv: KeyLike; jwk: object }> {
  const pair = await generateKeyPair('ES256', { extractable: true });
  return { priv: pair.privateKey, jwk: { ...(await exportJWK(pair.publicKey)), kid, alg: 'ES256', use: 'sig' } };
}

const keySet = (...keys: { jwk: object }[]): string => JSON.stringify({ keys: keys.map((k) => k.jwk) });
const json = (body: string) => (res: ServerResponse): void => {
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end(body);
};

function token(key: { priv: KeyLike }, kid: string): Promise<string> {
  return new SignJWT({ sub: 'alice' }).setProtectedHeader({ alg: 'ES256', kid }).setIssuer('https://idp.test').setAudience('shop').setExpirationTime('5m').sign(key.priv);
}

function verifier(overrides: Partial<JwtProviderSpec> = {}, options: RemoteJwksOptions = {}, jwks: JwtProviderSpec['jwks'] = { url, caFile }): JwtVerifier {
  const spec: JwtProviderSpec = { name: 'idp', issuer: 'https://idp.test', audiences: ['shop'], jwks, refreshMs: 3_600_000, clockSkewMs: 0, algorithms: ['ES256'], ...overrides };
  const v = new JwtVerifier(spec, silentLogger(), options);
  verifiers.push(v);
  return v;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'trellis-jwks-'));
  const ca = testCa('idp');
  caFile = ca.caFile;
  serverCert = { cert: ca.cert, key: ca.key };
  otherCaFile = testCa('other').caFile;
  k1 = await keyPair('k1');
  k2 = await keyPair('k2');
  server = createServer(serverCert, (_req, res) => {
    hits += 1;
    serve(res);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/jwks.json`;
});

afterEach(() => {
  for (const v of verifiers.splice(0)) v.close();
  hits = 0;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  rmSync(dir, { recursive: true, force: true });
});

describe('JWKS from an HTTPS URL', () => {
  it('fetches the key set from a server the named CA issued, and verifies with it', async () => {
    serve = json(keySet(k1));
    const v = verifier();
    expect(await v.verify(await token(k1, 'k1'))).toMatchObject({ ok: true, claims: { sub: 'alice' } });
    expect(hits).toBe(1);
  });

  it('refuses a server the CA did not issue: the provider has no keys, and says why', async () => {
    serve = json(keySet(k1));
    const v = verifier({}, {}, { url, caFile: otherCaFile });
    const outcome = await v.verify(await token(k1, 'k1'));
    expect(outcome).toMatchObject({ ok: false, keysUnavailable: true });
    expect(outcome.ok ? '' : outcome.reason).toMatch(/certificate|issuer/i);
  });

  it('fetches again on the refresh interval and picks up a rotated key', async () => {
    serve = json(keySet(k1));
    const v = verifier({ refreshMs: 1_000 }, { limits: { unknownKeyCooldownMs: 3_600_000 } });
    expect((await v.verify(await token(k1, 'k1'))).ok).toBe(true);
    // The unknown-key fetch is spent once, within the (long) cooldown, before the rotation: only the interval can bring k2.
    expect((await v.verify(await token(k2, 'k2'))).ok).toBe(false);
    const before = hits;
    serve = json(keySet(k2));
    await sleep(1_500);
    expect(hits).toBeGreaterThan(before);
    expect((await v.verify(await token(k2, 'k2'))).ok).toBe(true);
    expect((await v.verify(await token(k1, 'k1'))).ok).toBe(false);
  });

  it('fetches at once for an unknown key id, at most once per cooldown however many bogus ids come', async () => {
    serve = json(keySet(k1));
    const v = verifier();
    expect((await v.verify(await token(k1, 'k1'))).ok).toBe(true);
    serve = json(keySet(k1, k2));
    expect((await v.verify(await token(k2, 'k2'))).ok).toBe(true);
    expect(hits).toBe(2);
    const bogus = await Promise.all(Array.from({ length: 50 }, async (_, i) => v.verify(await token(k2, `made-up-${i}`))));
    expect(bogus.every((o) => !o.ok)).toBe(true);
    expect(hits).toBe(2);
  });

  it('keeps the keys in force while the server answers 500, serves a bad document, a body over the size limit, or nothing in time', async () => {
    serve = json(keySet(k1));
    const fetches: string[] = [];
    const v = verifier({ refreshMs: 1_000 }, { limits: { fetchTimeoutMs: 400, maxBytes: 4096 }, onFetch: (o, d) => fetches.push(`${o} ${d ?? ''}`) });
    const good = await token(k1, 'k1');
    expect((await v.verify(good)).ok).toBe(true);
    const bad: [string, (res: ServerResponse) => void, RegExp][] = [
      ['500', (res) => res.writeHead(500).end(), /answered 500/],
      ['not JSON', json('<html>'), /not JSON/],
      ['no keys list', json('{"keys":"k1"}'), /no "keys" list/],
      ['symmetric key', json(JSON.stringify({ keys: [{ kty: 'oct', k: 'c2VjcmV0', kid: 'h' }] })), /symmetric/],
      ['private key', json(JSON.stringify({ keys: [{ ...k1.jwk, d: 'AAAA' }] })), /private key/],
      ['oversized', json(JSON.stringify({ keys: [k1.jwk], pad: 'x'.repeat(8192) })), /over the limit of 4096/],
      ['silent', () => undefined, /400 ms/],
    ];
    for (const [name, how, expected] of bad) {
      serve = how;
      fetches.length = 0;
      const seen = hits;
      await sleep(name === 'silent' ? 1_700 : 1_200);
      expect(hits, name).toBeGreaterThan(seen);
      expect(fetches.join('\n'), name).toMatch(expected);
      expect(fetches.every((f) => f.startsWith('failed')), name).toBe(true);
      expect((await v.verify(good)).ok, name).toBe(true);
    }
  }, 20_000);

  it('keeps the keys in force while the server is down, and a provider that never fetched says so', async () => {
    const downServer = createServer(serverCert, (_req, res) => json(keySet(k1))(res));
    await new Promise<void>((r) => downServer.listen(0, '127.0.0.1', r));
    const downUrl = `https://127.0.0.1:${(downServer.address() as AddressInfo).port}/jwks.json`;
    const v = verifier({ refreshMs: 1_000 }, {}, { url: downUrl, caFile });
    const good = await token(k1, 'k1');
    expect((await v.verify(good)).ok).toBe(true);
    downServer.closeAllConnections();
    await new Promise((r) => downServer.close(r));
    await sleep(1_300);
    expect((await v.verify(good)).ok).toBe(true);
    const never = verifier({}, {}, { url: downUrl, caFile });
    const outcome = await never.verify(good);
    expect(outcome).toMatchObject({ ok: false, keysUnavailable: true });
    expect(outcome.ok ? '' : outcome.reason).toMatch(/ECONNREFUSED/);
  });

  it('does not follow a redirect to another key set', async () => {
    serve = (res) => res.writeHead(302, { location: 'https://127.0.0.1:1/evil.json' }).end();
    const outcome = await verifier().verify(await token(k1, 'k1'));
    expect(outcome).toMatchObject({ ok: false, keysUnavailable: true });
    expect(outcome.ok ? '' : outcome.reason).toMatch(/answered 302/);
  });
});

describe('JWKS URL config', () => {
  const base = (jwks: string, extra = ''): string => `mesh: { control: "https://127.0.0.1:15012" }
listeners:
  - { name: web, port: 8080, protocol: http }
jwtProviders:
  - { name: idp, issuer: "https://idp.test", jwks: ${jwks}${extra} }
routes:
  - { name: shop, destination: { service: orders, namespace: shop }, jwt: { provider: idp } }
`;
  const problems = (text: string): string[] => {
    try {
      parseGatewayConfig(text, '/etc/gw/gw.yaml');
    } catch (err) {
      return configIssuesOf(err).map(formatConfigIssue);
    }
    return [];
  };

  it('reads a URL with a CA file, resolved from the config file\'s directory', () => {
    const c = parseGatewayConfig(base('{ url: "https://idp.test/jwks.json", caFile: idp-ca.pem }', ', refresh: 1m'), '/etc/gw/gw.yaml');
    expect(c.jwtProviders[0]?.jwks).toEqual({ url: 'https://idp.test/jwks.json', caFile: '/etc/gw/idp-ca.pem' });
    expect(c.jwtProviders[0]?.refreshMs).toBe(60_000);
  });

  it('refuses a clear-text URL, credentials in the URL, a CA file beside a key file, and a refresh out of bounds', () => {
    expect(problems(base('{ url: "http://idp.test/jwks.json" }')).join('\n')).toMatch(/gw\.yaml:5:\d+.*https only/);
    expect(problems(base('{ url: "https://u:p@idp.test/jwks.json" }')).join('\n')).toMatch(/credentials/);
    expect(problems(base('{ file: jwks.json, caFile: ca.pem }')).join('\n')).toMatch(/with "url" only/);
    expect(problems(base('{ url: "https://idp.test/jwks.json" }', ', refresh: 10ms')).join('\n')).toMatch(/from 1000 ms to 86400000 ms/);
  });
});
