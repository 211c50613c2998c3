/**
 * Hands memory the C allocator keeps free back to the kernel, on a timer: glibc's `malloc_trim(0)`
 * through the small addon native/memory_trim.c.
 *
 * Why: a burst of large transfers passes thousands of 16–64 KiB buffers through malloc; once freed, glibc
 * keeps most of them in its arenas, so a sidecar's RSS stayed at ~85–100 MiB long after the burst (the
 * benchmark's "RSS after the run", against a 64 MiB budget). Trimming every few seconds brought it back to
 * ~66–70 MiB, measured on the same runs. One call walks the arenas' free lists: ~2.5 µs when there is
 * little to give back (measured), longer only right after a burst; it runs every `intervalMs`, off the
 * request path (a timer, unref'd).
 *
 * Under load it is put off: with traffic flowing, the pages a trim hands back are faulted in again within
 * milliseconds, and the trim itself blocks the event loop. CPU profiles of the benchmark's keep-alive HTTP
 * run (Node 24) showed `trimMemory` at 0.6–2.8 % of a sidecar's busy time, 7–27 ms per call: a stall
 * every 2 s that every request in flight waits out. So while the loop was busy for more than
 * `BUSY_UTILIZATION` of the last interval a trim waits, at most `MAX_DEFERRED` intervals in a row (a
 * sidecar that stays busy is still trimmed every ~10 s); the first quiet interval after a burst trims.
 *
 * Without the addon (its build failed at install, or another C library than glibc) nothing happens: the
 * sidecar works the same and keeps what the allocator keeps.
 */
import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import { join } from 'node:path';
import type { Logger } from 'pino';
import { packageRoot } from './original-dst.js';

/** Default period; 0 turns trimming off. */
export const DEFAULT_MEMORY_TRIM_INTERVAL_MS = 2_000;
/** Event-loop utilisation (0–1) over an interval above which that interval's trim is put off. */
export const BUSY_UTILIZATION = 0.2;
/** Trims put off in a row, at most. */
export const MAX_DEFERRED = 4;

/** Whether to trim now, given the loop's utilisation over the last interval and the trims put off before. */
export function trimDue(utilization: number, deferred: number): boolean {
  return utilization <= BUSY_UTILIZATION || deferred >= MAX_DEFERRED;
}

interface MemoryTrimAddon {
  trim(): boolean | undefined;
}

let addon: MemoryTrimAddon | null | undefined;

function loadAddon(): MemoryTrimAddon | null {
  if (addon !== undefined) return addon;
  addon = null;
  const root = process.platform === 'linux' ? packageRoot() : null;
  const path = root === null ? undefined : join(root, 'build', 'Release', 'memory_trim.node');
  if (path === undefined || !existsSync(path)) return addon;
  try {
    const loaded = createRequire(import.meta.url)(path) as Partial<MemoryTrimAddon> | null;
    if (typeof loaded?.trim === 'function') addon = loaded as MemoryTrimAddon;
  } catch {
    // A stale or foreign build: trimming is an optimisation, so the sidecar goes on without it.
  }
  return addon;
}

/**
 * Returns free allocator memory to the kernel now: true when some was released, false when there was
 * nothing to release, undefined when trimming is unavailable here.
 */
export function trimMemory(): boolean | undefined {
  const loaded = loadAddon();
  return loaded === null ? undefined : loaded.trim();
}

/** Trims every `intervalMs` until the returned function is called; does nothing when unavailable or 0. */
export function startMemoryTrim(intervalMs: number, logger: Logger): () => void {
  if (intervalMs <= 0 || loadAddon() === null) {
    logger.debug({ intervalMs }, 'memory trimming off (interval 0, or no glibc memory_trim addon)');
    return () => undefined;
  }
  let last = performance.eventLoopUtilization();
  let deferred = 0;
  const timer = setInterval(() => {
    const now = performance.eventLoopUtilization();
    const utilization = performance.eventLoopUtilization(now, last).utilization;
    last = now;
    if (!trimDue(utilization, deferred)) {
      deferred += 1;
      return;
    }
    deferred = 0;
    if (trimMemory() === undefined) clearInterval(timer);
  }, intervalMs);
  timer.unref();
  return () => clearInterval(timer);
}
