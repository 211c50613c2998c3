/**
 * The embedded store: records survive reopening, a damaged file is named in a clear error and left as
 * found, nothing else is touched; damaged registrations are reported and skipped.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { FileStore } from '../../control/file-store.js';
import { TokenService } from '../../control/token-service.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'trellis-store-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const registration = (id: string) => ({ instanceId: id, service: 'orders', namespace: 'shop', zone: 'z', address: '10.0.0.1', tunnelPort: 15008, ports: [], upstreams: [], healthy: true, updatedAt: new Date().toISOString() });

describe('FileStore', () => {
  it('keeps secrets (mode 0600), tokens and registrations across reopening', async () => {
    const store = await FileStore.open(dir);
    const secret = await store.secret('admin-token');
    expect(statSync(join(dir, 'admin-token')).mode & 0o777).toBe(0o600);
    const tokens = new TokenService(store, 'example.org');
    const { record } = await tokens.create('orders', 'shop', 60_000);
    await store.putRegistration(registration('a'));
    const again = await FileStore.open(dir);
    expect(await again.secret('admin-token')).toBe(secret);
    expect((await again.getToken(record.id))?.service).toBe('orders');
    expect((await again.listRegistrations()).map((r) => r.instanceId)).toEqual(['a']);
    await again.check();
  });

  it('names a damaged token record in a clear error, changes nothing, and loses nothing else', async () => {
    const store = await FileStore.open(dir);
    const tokens = new TokenService(store, 'example.org');
    const good = await tokens.create('orders', 'shop', 60_000);
    const bad = await tokens.create('payments', 'shop', 60_000);
    const badFile = join(dir, 'tokens', `${bad.record.id}.json`);
    writeFileSync(badFile, '{"id": "trunc');
    const before = readdirSync(join(dir, 'tokens')).sort();
    const err = await store.check().then(() => undefined, (e: unknown) => e as { code: string; message: string });
    expect(err?.code).toBe('TRELLIS_STORE_CORRUPT');
    expect(err?.message).toContain(badFile);
    expect(err?.message).toContain('not valid JSON');
    expect(readFileSync(badFile, 'utf8')).toBe('{"id": "trunc');
    expect(readdirSync(join(dir, 'tokens')).sort()).toEqual(before);
    expect((await store.getToken(good.record.id))?.service).toBe('orders');
    // The good token still authenticates; the damaged one is refused with the file named.
    expect((await tokens.authenticate(good.token)).service).toBe('orders');
    await expect(tokens.authenticate(bad.token)).rejects.toThrow(badFile);
  });

  it('reports a damaged secret by name', async () => {
    const store = await FileStore.open(dir);
    await store.secret('token-signing-key');
    writeFileSync(join(dir, 'token-signing-key'), 'short\n');
    await expect(store.check()).rejects.toThrow(/token-signing-key is damaged \(expected 43 base64url characters\)/);
  });

  it('skips and reports a damaged registration, keeping the others', async () => {
    const store = await FileStore.open(dir);
    await store.putRegistration(registration('a'));
    await store.putRegistration(registration('b'));
    writeFileSync(join(dir, 'registrations', 'b.json'), '{"instanceId": 3}');
    const damaged: string[] = [];
    const list = await store.listRegistrations((file) => damaged.push(file));
    expect(list.map((r) => r.instanceId)).toEqual(['a']);
    expect(damaged).toEqual([join(dir, 'registrations', 'b.json')]);
  });

  it("keeps a registration's export word, and skips one whose word is not true or false", async () => {
    const store = await FileStore.open(dir);
    await store.putRegistration({ ...registration('a'), export: false });
    await store.putRegistration(registration('b'));
    writeFileSync(join(dir, 'registrations', 'b.json'), JSON.stringify({ ...registration('b'), export: 'yes' }));
    const damaged: string[] = [];
    const list = await store.listRegistrations((file, reason) => damaged.push(reason));
    expect(list.map((r) => [r.instanceId, r.export])).toEqual([['a', false]]);
    expect(damaged.join()).toMatch(/"export" should be true or false/);
  });

  it('refuses ids that could escape the folder', async () => {
    const store = await FileStore.open(dir);
    await expect(store.putRegistration(registration('../x'))).rejects.toThrow(/instance id/);
    expect(await store.getToken('../../admin-token')).toBeUndefined();
  });
});
