/**
 * The UI's files and JSON on an admin port: the security headers, the 503 of an unbuilt checkout, and the
 * admin credential an exposed port demands (Basic with the token as password, or Bearer; nothing else).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createAdminHttpServer, jsonReply } from '../../../common/admin-http.js';
import { adminCredentialCheck, isLoopback, uiRoutes } from '../../../control/golden/ui-static.js';

let server: Server | undefined;
afterEach(async () => {
  await new Promise((r) => server?.close(r) ?? r(undefined));
  server = undefined;
});

async function serve(routes: ReturnType<typeof uiRoutes>): Promise<string> {
  server = createAdminHttpServer({ routes, methodNotAllowed: jsonReply(405, {}), notFound: () => jsonReply(404, {}) });
  await new Promise<void>((r) => server?.listen(0, '127.0.0.1', r));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

function builtDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'trellis-ui-'));
  for (const f of ['index.html', 'app.js', 'style.css']) writeFileSync(join(dir, f), `/* ${f} */`);
  return dir;
}

describe('the UI on the admin port', () => {
  it('serves the built files with a same-origin-only content security policy', async () => {
    const base = await serve(uiRoutes({}, { dir: builtDir() }));
    const page = await fetch(`${base}/ui/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-security-policy')).toContain("connect-src 'self'");
    expect(page.headers.get('content-security-policy')).toContain("frame-ancestors 'none'");
    expect(page.headers.get('x-content-type-options')).toBe('nosniff');
    expect((await fetch(`${base}/ui/app.js`)).headers.get('content-type')).toContain('text/javascript');
  });

  it('says the UI is not built rather than serving half of it', async () => {
    const base = await serve(uiRoutes({}, { dir: mkdtempSync(join(tmpdir(), 'trellis-ui-empty-')) }));
    const page = await fetch(`${base}/ui/`);
    expect(page.status).toBe(503);
    expect(await page.text()).toContain('npm run build');
  });

  it('asks for the admin credential when exposed, and takes only the right one', async () => {
    const token = 'tok-' + 'x'.repeat(40);
    const base = await serve(uiRoutes({ '/ui/api/overview': () => jsonReply(200, { zone: 'east' }) }, { dir: builtDir(), guard: adminCredentialCheck(token) }));
    const none = await fetch(`${base}/ui/api/overview`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toContain('Basic');
    const basic = (password: string): Record<string, string> => ({ authorization: `Basic ${Buffer.from(`admin:${password}`).toString('base64')}` });
    expect((await fetch(`${base}/ui/api/overview`, { headers: basic('wrong') })).status).toBe(401);
    expect((await fetch(`${base}/ui/api/overview`, { headers: basic(`${token}x`) })).status).toBe(401);
    expect((await fetch(`${base}/ui/`, { headers: { authorization: 'Bearer nope' } })).status).toBe(401);
    expect((await fetch(`${base}/ui/api/overview`, { headers: basic(token) })).status).toBe(200);
    expect((await fetch(`${base}/ui/`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(200);
  });

  it('counts only loopback as loopback', () => {
    expect(['127.0.0.1', '127.1.2.3', '::1', 'localhost'].every(isLoopback)).toBe(true);
    expect(['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', 'example.com'].some(isLoopback)).toBe(false);
  });
});
