/**
 * Every process the benchmark starts (backend, sidecars, load generators) belongs to one ProcessGroup,
 * so that a finished run, a failure or Ctrl-C stops all of them: SIGTERM first, SIGKILL after a grace
 * period. Output is kept in a bounded tail per process, enough to explain a crash without letting a
 * chatty process grow the benchmark's memory.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { connect } from 'node:net';

const OUTPUT_TAIL_BYTES = 16 * 1024;
const STOP_GRACE_MS = 3_000;

export interface StartOptions {
  /** Short name used in error messages ("haproxy client", "nginx"). */
  readonly name: string;
  readonly command: string;
  readonly args: readonly string[];
  readonly cwd?: string;
}

export interface ExitInfo {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

/** Bounded tail of a stream: keeps the last OUTPUT_TAIL_BYTES, drops the rest. */
class OutputTail {
  private chunks: Buffer[] = [];
  private size = 0;

  push(chunk: Buffer): void {
    this.chunks.push(chunk);
    this.size += chunk.length;
    while (this.size > OUTPUT_TAIL_BYTES && this.chunks.length > 1) {
      this.size -= (this.chunks.shift() as Buffer).length;
    }
  }

  text(): string {
    const all = Buffer.concat(this.chunks);
    return all.subarray(Math.max(0, all.length - OUTPUT_TAIL_BYTES)).toString('utf8');
  }
}

export class ManagedProcess {
  readonly name: string;
  readonly child: ChildProcess;
  readonly exited: Promise<ExitInfo>;
  private exitInfo: ExitInfo | undefined;
  private readonly stdoutTail = new OutputTail();
  private readonly stderrTail = new OutputTail();
  private readonly stdoutChunks: Buffer[] | undefined;

  constructor(options: StartOptions, keepStdout: boolean) {
    this.name = options.name;
    this.stdoutChunks = keepStdout ? [] : undefined;
    this.child = spawn(options.command, options.args, {
      cwd: options.cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    this.child.stdout?.on('data', (chunk: Buffer) => {
      if (this.stdoutChunks !== undefined) this.stdoutChunks.push(chunk);
      else this.stdoutTail.push(chunk);
    });
    this.child.stderr?.on('data', (chunk: Buffer) => this.stderrTail.push(chunk));
    this.exited = new Promise((resolve) => {
      this.child.on('error', (err) => {
        this.stderrTail.push(Buffer.from(`spawn failed: ${err.message}\n`));
        this.exitInfo = { code: -1, signal: null };
        resolve(this.exitInfo);
      });
      this.child.on('close', (code, signal) => {
        this.exitInfo ??= { code, signal };
        resolve(this.exitInfo);
      });
    });
  }

  get pid(): number {
    if (this.child.pid === undefined) throw new Error(`${this.name} has no pid (did it start?)`);
    return this.child.pid;
  }

  get running(): boolean {
    return this.exitInfo === undefined;
  }

  /** Whole stdout for processes started with keepStdout (load generators print a short summary). */
  stdout(): string {
    return this.stdoutChunks === undefined ? this.stdoutTail.text() : Buffer.concat(this.stdoutChunks).toString('utf8');
  }

  stderr(): string {
    return this.stderrTail.text();
  }

  /** A one-paragraph account of how the process ended, for error messages. */
  describeExit(): string {
    const info = this.exitInfo;
    const how = info === undefined ? 'still running' : info.signal !== null ? `killed by ${info.signal}` : `exited with code ${String(info.code)}`;
    const tail = (this.stderr() || this.stdoutTail.text()).trim().split('\n').slice(-12).join('\n');
    return `${this.name} ${how}${tail === '' ? '' : `:\n${tail}`}`;
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => {
      if (this.running) this.child.kill('SIGKILL');
    }, STOP_GRACE_MS);
    try {
      await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

export class ProcessGroup {
  private readonly members = new Set<ManagedProcess>();

  /** A long-running process (server, sidecar): stopped by stopAll. */
  start(options: StartOptions): ManagedProcess {
    const managed = new ManagedProcess(options, false);
    this.members.add(managed);
    void managed.exited.then(() => this.members.delete(managed));
    return managed;
  }

  /** A process that ends by itself (load generator): resolves with it, its stdout kept whole. */
  async run(options: StartOptions, timeoutMs: number): Promise<ManagedProcess> {
    const managed = new ManagedProcess(options, true);
    this.members.add(managed);
    const timer = setTimeout(() => void managed.stop(), timeoutMs);
    try {
      await managed.exited;
    } finally {
      clearTimeout(timer);
      this.members.delete(managed);
    }
    return managed;
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.members].map((m) => m.stop()));
    this.members.clear();
  }

  get size(): number {
    return this.members.size;
  }
}

function tryConnect(host: string, port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port });
    socket.setTimeout(500);
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('timeout', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', () => resolve(false));
  });
}

/**
 * Waits until every port accepts a TCP connection, failing early with the process's own words when it
 * exits first (a config error in haproxy or nginx ends the process within milliseconds).
 */
export async function waitForPorts(proc: ManagedProcess, ports: readonly number[], timeoutMs = 15_000, host = '127.0.0.1'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (const port of ports) {
    for (;;) {
      if (!proc.running) throw new Error(`${proc.name} stopped before it listened on ${host}:${port}: ${proc.describeExit()}`);
      if (await tryConnect(host, port)) break;
      if (Date.now() > deadline) throw new Error(`${proc.name} did not listen on ${host}:${port} within ${timeoutMs} ms: ${proc.describeExit()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  }
}
