/**
 * The web UI's files (built by `npm run build` into dist/ui: index.html, app.js, style.css) served from
 * memory by the admin port under /ui/, with headers that keep the page to its own origin: a content
 * security policy allowing scripts, styles and fetches from 'self' only (the bundle fetches nothing
 * else), no framing, no sniffing. Read once at start; a checkout that was not built answers 503 saying so.
 *
 * Exposure: the admin port binds to loopback by default. When it is bound elsewhere, every /ui/ path
 * needs the admin credential (`<data-dir>/admin-token`), as HTTP Basic (any user name, the token as the
 * password: the browser asks for it) or `Authorization: Bearer`; it is compared in constant time.
 */
import { timingSafeEqual } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { IncomingMessage } from 'node:http';
import { isIP } from 'node:net';
import { fileURLToPath } from 'node:url';
import { jsonReply, textReply, type AdminReply, type AdminRoute } from '../../common/admin-http.js';

/** dist/ui beside dist/control/golden; from the sources (tests), ui/ holds no app.js and the UI is 503. */
export const DEFAULT_UI_DIR = fileURLToPath(new URL('../../ui/', import.meta.url));

const FILES = { 'index.html': 'text/html; charset=utf-8', 'app.js': 'text/javascript; charset=utf-8', 'style.css': 'text/css; charset=utf-8' } as const;
const SECURITY_HEADERS = Object.freeze({
  'content-security-policy': "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
});

export function isLoopback(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIP(host) === 4) return host.startsWith('127.');
  return host === '::1';
}

function loadFiles(dir: string): Map<string, AdminReply> | string {
  const replies = new Map<string, AdminReply>();
  for (const [name, contentType] of Object.entries(FILES)) {
    try {
      replies.set(name, { status: 200, contentType, body: readFileSync(`${dir}/${name}`, 'utf8'), headers: SECURITY_HEADERS });
    } catch {
      return `the web UI is not built (no ${name} in ${dir}): run npm run build`;
    }
  }
  return replies;
}

/** The credential check for an exposed admin port; `undefined` when the request may pass. */
export function adminCredentialCheck(adminToken: string): (req: IncomingMessage) => AdminReply | undefined {
  const expected = Buffer.from(adminToken);
  const matches = (given: string): boolean => {
    const g = Buffer.from(given);
    return g.length === expected.length && timingSafeEqual(g, expected);
  };
  return (req) => {
    const header = req.headers.authorization ?? '';
    const bearer = /^Bearer\s+(\S+)\s*$/i.exec(header)?.[1];
    const basic = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header)?.[1];
    const password = basic === undefined ? undefined : Buffer.from(basic, 'base64').toString('utf8').split(':').slice(1).join(':');
    if ((bearer !== undefined && matches(bearer)) || (password !== undefined && matches(password))) return undefined;
    return { ...jsonReply(401, { error: 'the UI on an exposed admin port needs the admin credential (<data-dir>/admin-token) as the password' }), headers: { 'www-authenticate': 'Basic realm="trellis", charset="UTF-8"' } };
  };
}

/** `/ui/` and its files, and the given JSON routes, each behind `guard` when one is given. */
export function uiRoutes(api: Readonly<Record<string, AdminRoute>>, options: { readonly dir?: string; readonly guard?: (req: IncomingMessage) => AdminReply | undefined }): Record<string, AdminRoute> {
  const files = loadFiles(options.dir ?? DEFAULT_UI_DIR);
  const file = (name: keyof typeof FILES): AdminRoute => () => (typeof files === 'string' ? textReply(503, `${files}\n`) : (files.get(name) as AdminReply));
  const routes: Record<string, AdminRoute> = {
    '/ui': () => ({ ...textReply(308, ''), headers: { location: '/ui/' } }),
    '/ui/': file('index.html'),
    '/ui/index.html': file('index.html'),
    '/ui/app.js': file('app.js'),
    '/ui/style.css': file('style.css'),
    ...api,
  };
  const guard = options.guard;
  if (guard === undefined) return routes;
  return Object.fromEntries(Object.entries(routes).map(([path, route]) => [path, (req: IncomingMessage) => guard(req) ?? route(req)]));
}
