/**
 * A process a network-namespace lab started (test/helpers/netns.ts): its output kept for assertions and
 * waits, and a stop that reaches its whole process group (it is spawned detached, as its own group).
 */
import type { ChildProcess } from 'node:child_process';

const MAX_OUTPUT_CHARS = 256 * 1024;

export interface LabProcess {
  readonly child: ChildProcess;
  /** stdout and stderr so far (the last 256 KiB). */
  output(): string;
  /** Resolves with the output once it matches; rejects if the process exits first or time runs out. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** `signal` (default SIGTERM), then SIGKILL after a grace period; resolves when the process is gone. */
  stop(signal?: NodeJS.Signals): Promise<void>;
}

/** Wraps a child spawned with `detached: true` and piped stdout/stderr; `label` names it in errors. */
export function watchProcess(child: ChildProcess, label: string): LabProcess {
  let output = '';
  const waiters = new Set<() => void>();
  const onData = (chunk: Buffer): void => {
    output = (output + chunk.toString()).slice(-MAX_OUTPUT_CHARS);
    for (const w of [...waiters]) w();
  };
  child.stdout?.on('data', onData);
  child.stderr?.on('data', onData);
  const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
  child.once('close', () => {
    for (const w of [...waiters]) w();
  });
  child.once('error', () => undefined);
  return {
    child,
    output: () => output,
    waitForOutput(pattern: RegExp, timeoutMs = 10_000): Promise<string> {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`${label}: no output matching ${pattern} within ${timeoutMs} ms; output so far:\n${output}`));
        }, timeoutMs);
        const check = (): void => {
          if (pattern.test(output)) {
            clearTimeout(timer);
            waiters.delete(check);
            resolve(output);
          } else if (child.exitCode !== null || child.signalCode !== null) {
            clearTimeout(timer);
            waiters.delete(check);
            reject(new Error(`${label} exited (${child.exitCode ?? child.signalCode}) before printing ${pattern}; output:\n${output}`));
          }
        };
        waiters.add(check);
        check();
      });
    },
    async stop(signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
      const pid = child.pid;
      if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
      try {
        process.kill(-pid, signal);
      } catch {
        return;
      }
      const grace = setTimeout(() => {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // gone meanwhile
        }
      }, 2_000);
      await exited;
      clearTimeout(grace);
    },
  };
}
