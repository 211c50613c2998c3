/**
 * The HTTP lane path's per-request JavaScript that runs once per request at each sidecar, timed in process:
 * parsing the bench's request head and nginx's response head, and recording the request's metrics.
 *
 * Why in process: on a shared machine the pair benchmark's CPU per request moves by 2–3× with other load,
 * so a change of a few microseconds cannot be seen there. A loop over the same function in one process,
 * repeated and taking the minimum, is steady to a few percent. With `--compare DIST` another build's
 * modules (its `dist/`) run interleaved with this build's, so both see the same machine.
 *
 *   node dist/bench/http-hot-path.js [--compare OTHER/dist] [--repeats 15] [--iterations 200000]
 */
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { Registry } from 'prom-client';
import { isEntryPoint } from '../common/entry-point.js';

const LIMITS = Object.freeze({ maxHeadBytes: 16 * 1024, maxHeaderCount: 256 });
const REQUEST = Buffer.from('GET / HTTP/1.1\r\nHost: 127.0.0.1:41729\r\nUser-Agent: wrk\r\nx-request-id: 4f1c2b\r\n\r\n', 'latin1');
const RESPONSE = Buffer.from(
  'HTTP/1.1 200 OK\r\nServer: nginx/1.22.1\r\nDate: Mon, 07 Dec 2026 18:30:00 GMT\r\nContent-Type: application/octet-stream\r\n' +
    'Content-Length: 41\r\nLast-Modified: Mon, 07 Dec 2026 18:00:00 GMT\r\nConnection: keep-alive\r\nETag: "6750a0e0-29"\r\n' +
    'Accept-Ranges: bytes\r\n\r\nhello from the trellis benchmark backend\n',
  'latin1',
);

interface Build {
  readonly dist: string;
  readonly parseRequestHead: (buf: Buffer, start: number, end: number, limits: typeof LIMITS) => { ok: boolean };
  readonly parseResponseHead: (buf: Buffer, start: number, end: number, method: string, limits: typeof LIMITS) => { ok: boolean };
  readonly record: (direction: 'inbound', source: string, destination: string, status: number, seconds: number) => void;
}

async function load(dist: string): Promise<Build> {
  const url = (path: string): string => pathToFileURL(resolve(dist, path)).href;
  const head = (await import(url('proxy/http1/head.js'))) as Pick<Build, 'parseRequestHead' | 'parseResponseHead'>;
  const metrics = (await import(url('proxy/http/metrics.js'))) as { createHttpMetrics(registry: Registry): { record: Build['record'] } };
  const recorder = metrics.createHttpMetrics(new Registry());
  return { dist, parseRequestHead: head.parseRequestHead, parseResponseHead: head.parseResponseHead, record: (...a) => recorder.record(...a) };
}

/** Nanoseconds per call of `fn` over `iterations` calls. */
function time(fn: (i: number) => void, iterations: number): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < iterations; i++) fn(i);
  return Number(process.hrtime.bigint() - start) / iterations;
}

export async function hotPathMain(argv: readonly string[], out: NodeJS.WritableStream): Promise<number> {
  const { values } = parseArgs({
    args: [...argv],
    options: { compare: { type: 'string' }, repeats: { type: 'string', default: '15' }, iterations: { type: 'string', default: '200000' } },
  });
  const repeats = Number(values.repeats);
  const iterations = Number(values.iterations);
  if (!Number.isInteger(repeats) || repeats < 1 || !Number.isInteger(iterations) || iterations < 1) {
    out.write('usage: node dist/bench/http-hot-path.js [--compare OTHER/dist] [--repeats N] [--iterations N]\n');
    return 2;
  }
  const own = resolve(import.meta.dirname, '..');
  const builds = [await load(own), ...(values.compare === undefined ? [] : [await load(values.compare)])];
  const best = builds.map(() => ({ request: Infinity, response: Infinity, record: Infinity }));
  let ok = 0;
  for (let r = 0; r < repeats; r++) {
    builds.forEach((b, k) => {
      const m = best[k] as { request: number; response: number; record: number };
      m.request = Math.min(m.request, time(() => (ok += b.parseRequestHead(REQUEST, 0, REQUEST.length, LIMITS).ok ? 1 : 0), iterations));
      m.response = Math.min(m.response, time(() => (ok += b.parseResponseHead(RESPONSE, 0, RESPONSE.length, 'GET', LIMITS).ok ? 1 : 0), iterations));
      m.record = Math.min(m.record, time((i) => b.record('inbound', 'bench/loadgen', 'bench/backend', 200, 0.0001 * (i & 63)), iterations));
    });
  }
  if (ok !== 2 * repeats * iterations * builds.length) throw new Error('a head of the benchmark did not parse');
  out.write(`ns per call, minimum of ${repeats} × ${iterations}:\n`);
  builds.forEach((b, k) => {
    const m = best[k] as { request: number; response: number; record: number };
    out.write(`  ${b.dist}: request head ${m.request.toFixed(0)}, response head ${m.response.toFixed(0)}, metrics record ${m.record.toFixed(0)}\n`);
  });
  return 0;
}

if (isEntryPoint(import.meta.url)) {
  hotPathMain(process.argv.slice(2), process.stdout).then(
    (code) => {
      process.exitCode = code;
    },
    (err: unknown) => {
      process.stderr.write(`http-hot-path: ${(err as Error).message}\n`);
      process.exitCode = 1;
    },
  );
}
