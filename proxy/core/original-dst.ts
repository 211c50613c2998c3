/**
 * The original destination of a connection that iptables redirected to the sidecar.
 *
 * Node cannot read it: the address lives in the kernel's connection-tracking entry and only
 * getsockopt(SO_ORIGINAL_DST) / getsockopt(IP6T_SO_ORIGINAL_DST) return it. The small N-API addon in
 * native/original_dst.c does that; `npm ci` builds it with node-gyp into build/Release/original_dst.node.
 * When the build failed (no compiler, not Linux), installation still succeeded: this loader then reports
 * exactly why transparent capture is unavailable, and explicit capture (a local port per service) works.
 *
 * The addon is loaded lazily on first use, once, so importing this module costs nothing and a
 * process that never captures transparently never touches it.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Socket } from 'node:net';
import { fileURLToPath } from 'node:url';
import { TrellisError } from '../../common/errors.js';
import { CODE } from '../../common/error-codes.js';

/** Where a redirected connection was going before the REDIRECT rule sent it to the sidecar. */
export interface OriginalDestination {
  /** Dotted IPv4 or RFC 5952 IPv6 text; IPv4 clients of a dual-stack listener come back as IPv4. */
  readonly address: string;
  readonly port: number;
  readonly family: 4 | 6;
}

export interface OriginalDstReader {
  /** null when the addon is loaded; otherwise the reason transparent capture cannot work here. */
  readonly unavailableReason: string | null;
  /** Throws TRELLIS_CAPTURE_UNAVAILABLE, TRELLIS_CAPTURE_NOT_REDIRECTED or TRELLIS_CAPTURE_ORIGINAL_DST_FAILED. */
  getOriginalDst(fd: number): OriginalDestination;
}

interface OriginalDstAddon {
  getOriginalDst(fd: number): { address: string; port: number; family: number };
}

const ADDON_FILE = join('build', 'Release', 'original_dst.node');
const FAILURE_FILE = join('build', 'original_dst-unavailable.txt');

/**
 * The package root: the nearest directory above this module that holds binding.gyp. The module runs from
 * proxy/core/ (tests) or dist/proxy/core/ (the built CLI), so the depth differs; searching covers both.
 */
export function packageRoot(): string | null {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let depth = 0; depth < 6; depth++) {
    if (existsSync(join(dir, 'binding.gyp'))) return dir;
    const parent = dirname(dir);
    if (parent === dir) break;
    dir = parent;
  }
  return null;
}

function recordedBuildFailure(root: string): string | null {
  try {
    const text = readFileSync(join(root, FAILURE_FILE), 'utf8').trim();
    return text === '' ? null : text;
  } catch {
    return null;
  }
}

export interface OriginalDstReaderOptions {
  /** Load exactly this file (tests, unusual layouts). */
  readonly addonPath?: string;
  /** The package directory holding build/; by default the nearest directory above this module with binding.gyp. */
  readonly packageRoot?: string;
}

function loadAddon(options: OriginalDstReaderOptions): { addon: OriginalDstAddon } | { reason: string } {
  if (process.platform !== 'linux') {
    return { reason: `transparent capture needs Linux (iptables and SO_ORIGINAL_DST); this platform is ${process.platform}` };
  }
  let path = options.addonPath;
  if (path === undefined) {
    const root = options.packageRoot ?? packageRoot();
    if (root === null) return { reason: 'the original-destination addon was not found: no binding.gyp above the proxy module (broken installation)' };
    path = join(root, ADDON_FILE);
    if (!existsSync(path)) {
      const recorded = recordedBuildFailure(root);
      return {
        reason:
          recorded ??
          `the original-destination addon ${path} is missing (it is built by \`npm ci\`; run \`npm rebuild\` in ${root} with python3, make and a C compiler installed)`,
      };
    }
  }
  try {
    const required: unknown = createRequire(import.meta.url)(path);
    const fn = (required as Partial<OriginalDstAddon> | null)?.getOriginalDst;
    if (typeof fn !== 'function') return { reason: `${path} does not export getOriginalDst (a stale or foreign build; run \`npm rebuild\`)` };
    return { addon: required as OriginalDstAddon };
  } catch (err) {
    return { reason: `the original-destination addon ${path} could not be loaded: ${(err as Error).message}` };
  }
}

function toTrellisError(err: unknown, fd: number): TrellisError {
  const code = (err as { code?: unknown }).code;
  const errno = (err as { errno?: unknown }).errno;
  const message = err instanceof Error ? err.message : String(err);
  const details = { fd, errno: typeof code === 'string' ? code : undefined, errnoNumber: typeof errno === 'number' ? errno : undefined };
  if (code === 'ENOENT' || code === 'ERR_NOT_REDIRECTED') {
    // Someone dialled the capture port directly (or conntrack has no entry): there is no other destination.
    return new TrellisError(CODE.CAPTURE_NOT_REDIRECTED, `no original destination for fd ${fd}: ${message}`, { side: 'downstream', cause: err, details });
  }
  return new TrellisError(CODE.CAPTURE_ORIGINAL_DST_FAILED, `cannot read the original destination of fd ${fd}: ${message}`, {
    side: 'internal',
    cause: err,
    details,
  });
}

/** A reader bound to one addon file, loaded on first use; the default finds it in the package. */
export function createOriginalDstReader(options: OriginalDstReaderOptions = {}): OriginalDstReader {
  let loaded: { addon: OriginalDstAddon } | { reason: string } | undefined;
  const load = (): { addon: OriginalDstAddon } | { reason: string } => (loaded ??= loadAddon(options));
  return Object.freeze({
    get unavailableReason(): string | null {
      const state = load();
      return 'reason' in state ? state.reason : null;
    },
    getOriginalDst(fd: number): OriginalDestination {
      const state = load();
      if ('reason' in state) {
        throw new TrellisError(CODE.CAPTURE_UNAVAILABLE, `transparent capture is unavailable: ${state.reason}`, { side: 'internal' });
      }
      if (!Number.isInteger(fd) || fd < 0) {
        throw new TrellisError(CODE.CAPTURE_ORIGINAL_DST_FAILED, `getOriginalDst: fd must be a non-negative integer, got ${String(fd)}`);
      }
      let raw: { address: string; port: number; family: number };
      try {
        raw = state.addon.getOriginalDst(fd);
      } catch (err) {
        throw toTrellisError(err, fd);
      }
      return Object.freeze({ address: raw.address, port: raw.port, family: raw.family === 6 ? 6 : 4 });
    },
  });
}

let defaultReader: OriginalDstReader | undefined;
const reader = (): OriginalDstReader => (defaultReader ??= createOriginalDstReader());

/** The original destination of the connected TCP socket `fd` (see OriginalDstReader.getOriginalDst for errors). */
export function getOriginalDst(fd: number): OriginalDestination {
  return reader().getOriginalDst(fd);
}

/** null when transparent capture can read original destinations; otherwise exactly why it cannot. */
export function originalDstUnavailableReason(): string | null {
  return reader().unavailableReason;
}

/**
 * The file descriptor of an accepted net.Socket.
 *
 * Node has no public API for it. `socket._handle` is the libuv TCP wrap; its `fd` getter returns
 * uv_fileno() on Unix (-1 on Windows or once closed). It is undocumented but has been stable since
 * Node 0.x and is what every native socket-option module relies on. It is checked here, so a future
 * Node that drops it fails with a clear error rather than a wrong answer. Call it while the socket is
 * open, right after accept: a closed fd number may already belong to another file.
 */
export function socketFd(socket: Socket): number {
  const handle = (socket as unknown as { _handle?: { fd?: unknown } | null })._handle;
  const fd = handle?.fd;
  if (typeof fd !== 'number' || !Number.isInteger(fd) || fd < 0) {
    throw new TrellisError(
      CODE.CAPTURE_ORIGINAL_DST_FAILED,
      handle == null ? 'the socket is closed (no libuv handle), so it has no file descriptor' : 'this Node version does not expose socket._handle.fd',
    );
  }
  return fd;
}

/** getOriginalDst(socketFd(socket)): the destination the app dialled before the redirect. */
export function getSocketOriginalDst(socket: Socket): OriginalDestination {
  return getOriginalDst(socketFd(socket));
}
