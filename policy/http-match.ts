/**
 * HTTP conditions of a rule: methods and paths.
 *
 * A path pattern is exact (`/charge`) or a prefix written with a trailing `/*` (`/refunds/*` matches
 * `/refunds/` and everything below it, not `/refunds` itself, as in Istio). Request paths are compared after
 * `normalizeRequestPath`, so `/refunds/../admin`, `//admin` or `/%61dmin` cannot slip past a rule about
 * `/admin`. The proxy forwards the normalised path, so the app sees the path the policy judged.
 */

/** Uppercase HTTP method tokens (GET, POST, PROPFIND, ...); HTTP methods are case-sensitive. */
export const METHOD_PATTERN = /^[A-Z][A-Z0-9_-]{0,31}$/;
export const MAX_PATH_PATTERN_LENGTH = 1024;

const UNRESERVED = /^[A-Za-z0-9\-._~]$/;
const HEX = /^[0-9A-Fa-f]{2}$/;
// Anything that normalisation would change or refuse: escapes, backslashes, empty and dot segments, bytes
// outside visible ASCII (the lane parser refuses those already; an HTTP/2 `:path` is checked here).
const NEEDS_WORK = /[%\\]|\/\/|\/\.|[^\x21-\x7e]/;
// A dot segment with parameters (`..;x`, `.;x`, also `;` escaped): servlet containers strip the parameter
// and then resolve the dot segment, so `/public/..;/admin` is `/admin` to them.
const DOT_WITH_PARAMETERS = /^\.\.?(?:;|%3B)/;

/**
 * The path part of a request target, normalised: query and fragment dropped, escapes of unreserved
 * characters decoded (others uppercased; `%2F` and `%5C` stay encoded), `.` and `..` segments resolved,
 * repeated slashes merged. Returns null for a target that is not an absolute path, has a broken escape
 * (`%zz`, `%4`), an escaped control byte (`%00`-`%1F`, `%7F`), a raw backslash, a byte outside visible
 * ASCII, or a dot segment with parameters (`/..;/`): each means something else to some app (WHATWG URL
 * and most Windows servers read `\` as `/`; servlet containers resolve `..;`), so none can be judged.
 * Idempotent: a normalised path normalises to itself.
 */
export function normalizeRequestPath(target: string): string | null {
  let end = target.length;
  const q = target.indexOf('?');
  if (q >= 0) end = q;
  const h = target.indexOf('#');
  if (h >= 0 && h < end) end = h;
  const path = end === target.length ? target : target.slice(0, end);
  if (path.charCodeAt(0) !== 0x2f /* / */) return null;
  if (!NEEDS_WORK.test(path)) return path;
  const decoded = decodeUnreserved(path);
  if (decoded === null) return null;
  const segments = decoded.split('/');
  const out: string[] = [];
  let trailingSlash = false;
  for (let i = 1; i < segments.length; i++) {
    const seg = segments[i] as string;
    const last = i === segments.length - 1;
    if (seg === '' || seg === '.') {
      trailingSlash = last;
    } else if (seg === '..') {
      out.pop();
      trailingSlash = last;
    } else if (seg.charCodeAt(0) === 0x2e /* . */ && DOT_WITH_PARAMETERS.test(seg)) {
      return null;
    } else {
      out.push(seg);
      trailingSlash = false;
    }
  }
  if (out.length === 0) return '/';
  return `/${out.join('/')}${trailingSlash ? '/' : ''}`;
}

function decodeUnreserved(path: string): string | null {
  let out = '';
  let i = 0;
  while (i < path.length) {
    const pct = path.indexOf('%', i);
    const stop = pct < 0 ? path.length : pct;
    for (let j = i; j < stop; j++) {
      const c = path.charCodeAt(j);
      if (c === 0x5c /* \ */ || c < 0x21 || c > 0x7e) return null;
    }
    out += path.slice(i, stop);
    if (pct < 0) break;
    const hex = path.slice(pct + 1, pct + 3);
    if (!HEX.test(hex)) return null;
    const code = parseInt(hex, 16);
    if (code < 0x20 || code === 0x7f) return null;
    const ch = String.fromCharCode(code);
    out += UNRESERVED.test(ch) ? ch : `%${hex.toUpperCase()}`;
    i = pct + 3;
  }
  return out;
}

/** Why a path pattern is not acceptable, or undefined when it is. */
export function pathPatternProblem(pattern: string): string | undefined {
  if (pattern.length > MAX_PATH_PATTERN_LENGTH) return `must be at most ${MAX_PATH_PATTERN_LENGTH} characters`;
  if (!pattern.startsWith('/')) return `expected a path starting with "/", got ${JSON.stringify(pattern)}`;
  if (/[\s?#]/.test(pattern) || hasControlCharacter(pattern)) return `must not contain spaces, "?", "#" or control characters, got ${JSON.stringify(pattern)}`;
  const star = pattern.indexOf('*');
  if (star >= 0 && (star !== pattern.length - 1 || !pattern.endsWith('/*'))) {
    return `"*" is only allowed as a trailing "/*" (a prefix), got ${JSON.stringify(pattern)}`;
  }
  const literal = star >= 0 ? pattern.slice(0, -1) : pattern;
  const normal = normalizeRequestPath(literal);
  if (normal === null) return `has a malformed %-escape: ${JSON.stringify(pattern)}`;
  if (normal !== literal) return `is not in normal form (requests are matched after normalisation), write ${JSON.stringify(star >= 0 ? `${normal}*` : normal)}`;
  return undefined;
}

function hasControlCharacter(text: string): boolean {
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return true;
  }
  return false;
}

/** A rule's HTTP conditions, compiled: set lookups for methods and exact paths, a short prefix list. */
export class HttpMatcher {
  private readonly methods: ReadonlySet<string> | null;
  private readonly exactPaths: ReadonlySet<string> | null;
  private readonly prefixes: readonly string[];
  /** Whether matching needs the request's path (so the caller normalises it only then). */
  readonly needsPath: boolean;

  constructor(methods: readonly string[] | undefined, paths: readonly string[] | undefined) {
    this.methods = methods === undefined ? null : new Set(methods);
    if (paths === undefined) {
      this.exactPaths = null;
      this.prefixes = [];
    } else {
      this.exactPaths = new Set(paths.filter((p) => !p.endsWith('/*')));
      this.prefixes = Object.freeze(paths.filter((p) => p.endsWith('/*')).map((p) => p.slice(0, -1)));
    }
    this.needsPath = paths !== undefined;
    Object.freeze(this);
  }

  /** `path` is already normalised; ignored when the rule has no path condition. */
  matches(method: string, path: string): boolean {
    if (this.methods !== null && !this.methods.has(method)) return false;
    if (this.exactPaths === null) return true;
    if (this.exactPaths.has(path)) return true;
    for (const prefix of this.prefixes) if (path.startsWith(prefix)) return true;
    return false;
  }
}
