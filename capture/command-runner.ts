/**
 * How the redirect runs iptables: a small interface so the same installer works on this host, inside a
 * named network namespace (`ip netns exec`, for a container's namespace and for the tests), or against a
 * recorded fake. Every command has a time limit: iptables waits for the xtables lock, and a stuck lock
 * must end in an error, not a hung agent.
 */
import { spawn } from 'node:child_process';

export interface CommandResult {
  /** Exit code; 127 when the program does not exist, -1 when killed by the time limit. */
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface CommandRunner {
  /** Where commands run, for messages ("this host", "network namespace pod-a"). */
  readonly where: string;
  run(file: string, args: readonly string[], input?: string): Promise<CommandResult>;
}

export const COMMAND_TIMEOUT_MS = 30_000;
/** iptables-save of a big ruleset is a few MB at most; anything larger is a runaway. */
const MAX_OUTPUT_BYTES = 64 * 1024 * 1024;

function runProcess(file: string, args: readonly string[], input: string | undefined, timeoutMs: number): Promise<CommandResult> {
  return new Promise((resolve) => {
    const child = spawn(file, [...args], { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let size = 0;
    let settled = false;
    const finish = (result: CommandResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      resolve(result);
    };
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      finish({ code: -1, stdout: Buffer.concat(out).toString(), stderr: `${file} did not finish within ${timeoutMs} ms and was killed` });
    }, timeoutMs);
    const collect = (into: Buffer[]) => (chunk: Buffer) => {
      size += chunk.length;
      if (size > MAX_OUTPUT_BYTES) {
        child.kill('SIGKILL');
        finish({ code: -1, stdout: '', stderr: `${file} wrote more than ${MAX_OUTPUT_BYTES} bytes and was killed` });
        return;
      }
      into.push(chunk);
    };
    child.stdout.on('data', collect(out));
    child.stderr.on('data', collect(err));
    child.on('error', (error: NodeJS.ErrnoException) => {
      finish({ code: error.code === 'ENOENT' ? 127 : 126, stdout: '', stderr: `${file}: ${error.message}` });
    });
    child.on('close', (code, signal) => {
      finish({ code: code ?? (signal === null ? 1 : -1), stdout: Buffer.concat(out).toString(), stderr: Buffer.concat(err).toString() });
    });
    // A program that exits before reading its input closes the pipe; that is reported by its exit code.
    child.stdin.on('error', () => undefined);
    child.stdin.end(input ?? '');
  });
}

/** Runs commands on this host (in the caller's own network namespace). */
export function hostRunner(timeoutMs = COMMAND_TIMEOUT_MS): CommandRunner {
  return Object.freeze({
    where: 'this host',
    run: (file: string, args: readonly string[], input?: string) => runProcess(file, args, input, timeoutMs),
  });
}

/** Runs commands inside the named network namespace (`ip netns exec NAME ...`). */
export function netnsRunner(netns: string, timeoutMs = COMMAND_TIMEOUT_MS): CommandRunner {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(netns)) throw new Error(`"${netns}" is not a network namespace name`);
  return Object.freeze({
    where: `network namespace ${netns}`,
    run: (file: string, args: readonly string[], input?: string) => runProcess('ip', ['netns', 'exec', netns, file, ...args], input, timeoutMs),
  });
}
