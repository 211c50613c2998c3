/**
 * Memory and CPU of a running process, read from /proc the way `ps` and `top` do. The benchmark reads
 * each sidecar before and after every measured run: CPU seconds as a difference, peak RSS (VmHWM) after
 * resetting the high-water mark through /proc/PID/clear_refs, so that each run reports its own peak
 * rather than the largest one since the process started.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';

export interface ProcessStats {
  /** Peak resident set size since start or since the last resetPeakRss (VmHWM). */
  readonly peakRssBytes: number;
  /** Resident set size now (VmRSS). */
  readonly rssBytes: number;
  /** User plus system CPU time since the process started. */
  readonly cpuSeconds: number;
  /**
   * VmRSS split into anonymous memory (heap, buffers: what the process allocated) and file-backed pages
   * (mostly the executable's code, shared with every other process running it): a Node process is ~35 MiB
   * of file-backed RSS before it runs a line, so the split says which part a change can move. Absent on
   * kernels before 4.5. Reported alongside RSS, never instead of it: the targets stay on VmRSS/VmHWM.
   */
  readonly rssAnonBytes?: number;
  readonly rssFileBytes?: number;
}

/** Kernel clock ticks per second for /proc/PID/stat; 100 on every Linux we know, asked once anyway. */
let ticksPerSecond: number | undefined;
function clockTicks(): number {
  if (ticksPerSecond === undefined) {
    try {
      const value = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim());
      ticksPerSecond = Number.isInteger(value) && value > 0 ? value : 100;
    } catch {
      ticksPerSecond = 100;
    }
  }
  return ticksPerSecond;
}

function optionalStatusKilobytes(status: string, field: string): number | undefined {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
  return match === null ? undefined : Number(match[1]) * 1024;
}

function statusKilobytes(status: string, field: string, pid: number): number {
  const match = new RegExp(`^${field}:\\s+(\\d+) kB$`, 'm').exec(status);
  if (match === null) throw new Error(`/proc/${pid}/status has no ${field} line`);
  return Number(match[1]) * 1024;
}

/** utime and stime are fields 14 and 15 of /proc/PID/stat, counted after the parenthesised command name. */
export function parseCpuSeconds(stat: string, ticks: number): number {
  const end = stat.lastIndexOf(')');
  if (end < 0) throw new Error('malformed /proc/PID/stat');
  const fields = stat.slice(end + 2).split(' ');
  // fields[0] is field 3 (state), so utime (14) is fields[11] and stime (15) is fields[12].
  const utime = Number(fields[11]);
  const stime = Number(fields[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) throw new Error('malformed /proc/PID/stat');
  return (utime + stime) / ticks;
}

export function readProcessStats(pid: number): ProcessStats {
  const status = readFileSync(`/proc/${pid}/status`, 'utf8');
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return {
    peakRssBytes: statusKilobytes(status, 'VmHWM', pid),
    rssBytes: statusKilobytes(status, 'VmRSS', pid),
    cpuSeconds: parseCpuSeconds(stat, clockTicks()),
    rssAnonBytes: optionalStatusKilobytes(status, 'RssAnon'),
    rssFileBytes: optionalStatusKilobytes(status, 'RssFile'),
  };
}

/**
 * Resets VmHWM to the current RSS (Linux ≥ 4.0, "5" in clear_refs). Returns false where the kernel or
 * the permissions refuse; the peak is then the peak since the process started, and the report says so.
 */
export function resetPeakRss(pid: number): boolean {
  try {
    writeFileSync(`/proc/${pid}/clear_refs`, '5');
    return true;
  } catch {
    return false;
  }
}
