/**
 * A small lab of hosts made of network namespaces, for tests that need real iptables and real routing.
 *
 *   [host a: eth0 198.18.0.11] ──veth──┐
 *   [host b: eth0 198.18.0.12] ──veth──┼── br0 in its own "switch" namespace
 *   [host c: eth0 198.18.0.13] ──veth──┘
 *
 * Nothing touches the machine's real network: the bridge and the switch ends of the veth pairs live in a
 * namespace of their own (never the root one), and the addresses (198.18.0.0/24, the RFC 2544 test range,
 * and fd00:7e11:15::/64) exist only inside the lab. Names carry the creating process id and a random tag,
 * so parallel runs never collide, and a later run removes the leftovers of a run that was killed.
 *
 * cleanup() stops every process the lab started (and anything else still running in its namespaces) and
 * deletes the namespaces, which takes their links, addresses and iptables rules with them. It also runs on
 * process exit and on SIGINT/SIGTERM/SIGHUP, so an interrupted or failing test leaves nothing behind.
 *
 *   const need = netnsRequirements();
 *   describe.skipIf(need.skip)('...', () => { let lab: NetnsLab; beforeAll(async () => { lab = await createNetnsLab(); }); afterAll(() => lab?.cleanup()); });
 */
import { execFileSync, spawn as spawnProcess, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { netnsRunner, type CommandResult } from '../../capture/command-runner.js';
import { requires, type RequirementCheck } from './requirements.js';

export const LAB_PREFIX = 'trl-';
const IPV4_PREFIX = '198.18.0.';
const IPV6_PREFIX = 'fd00:7e11:15::';
const MAX_HOSTS = 200;
const MAX_OUTPUT_CHARS = 256 * 1024;

export interface LabHost {
  /** The test's name for the host ("client", "server"). */
  readonly name: string;
  /** The network namespace holding it (`ip netns exec <netns> ...`). */
  readonly netns: string;
  readonly ipv4: string;
  /** Set when the lab was created with ipv6: true and the kernel supports IPv6 here. */
  readonly ipv6: string | null;
}

export interface ExecOptions {
  readonly input?: string;
  /** Run as this user id (and group, default the same number) with setpriv, clearing supplementary groups. */
  readonly uid?: number;
  readonly gid?: number;
  /** Extra environment variables (on top of this process's environment). */
  readonly env?: Readonly<Record<string, string>>;
  /** Resolve with the result instead of rejecting when the command exits non-zero. */
  readonly allowFailure?: boolean;
}

export interface LabProcess {
  readonly child: ChildProcess;
  /** stdout and stderr so far (the last 256 KiB). */
  output(): string;
  /** Resolves with the output once it matches; rejects if the process exits first or time runs out. */
  waitForOutput(pattern: RegExp, timeoutMs?: number): Promise<string>;
  /** SIGTERM, then SIGKILL after a grace period; resolves when the process is gone. */
  stop(): Promise<void>;
}

export interface NetnsLab {
  readonly runId: string;
  readonly hosts: readonly LabHost[];
  /** Whether hosts get IPv6 addresses (requested and supported by this kernel). */
  readonly ipv6: boolean;
  /** Why IPv6 is off, when it was requested but is not available. */
  readonly ipv6Problem: string | null;
  addHost(name: string): Promise<LabHost>;
  exec(host: LabHost, command: readonly string[], options?: ExecOptions): Promise<CommandResult>;
  spawn(host: LabHost, command: readonly string[], options?: Omit<ExecOptions, 'input' | 'allowFailure'>): LabProcess;
  cleanup(): Promise<void>;
}

/** The gate for suites that use a lab: root, `ip`, `iptables`, and namespaces that can actually be made. */
export function netnsRequirements(extraTools: readonly string[] = []): RequirementCheck {
  const need = requires({ root: true, tools: ['ip', 'iptables', 'ip6tables', 'setpriv', ...extraTools] });
  if (need.skip) return need;
  // Named like a lab, so a run killed between the two commands is swept like any other leftover.
  const probe = `${LAB_PREFIX}${process.pid}x0-probe`;
  try {
    execFileSync('ip', ['netns', 'add', probe], { stdio: 'pipe' });
    execFileSync('ip', ['netns', 'del', probe], { stdio: 'pipe' });
    return need;
  } catch (err) {
    const reason = `cannot create network namespaces here: ${(err as { stderr?: Buffer }).stderr?.toString().trim() ?? String(err)}`;
    if (process.env.CI === 'true') throw new Error(`CI=true and ${reason}`);
    console.warn(`SKIPPED (${reason})`);
    return { skip: true, reason };
  }
}

function ip(args: readonly string[]): void {
  execFileSync('ip', [...args], { stdio: 'pipe', timeout: 10_000 });
}

function tryIp(args: readonly string[]): string {
  try {
    return execFileSync('ip', [...args], { stdio: 'pipe', timeout: 10_000 }).toString();
  } catch {
    return '';
  }
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Kills whatever still runs in the namespace, then deletes it (its links and rules go with it). */
function destroyNamespace(netns: string): void {
  for (const pid of tryIp(['netns', 'pids', netns]).split('\n').map(Number).filter((p) => p > 0)) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
  tryIp(['netns', 'del', netns]);
}

/** Namespaces named by a lab whose creating process no longer exists: leftovers of a killed run. */
function sweepLeftovers(): void {
  for (const line of tryIp(['netns', 'list']).split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const match = /^trl-(\d+)x[0-9a-f]+-/.exec(name);
    if (match !== null && !isAlive(Number(match[1]))) destroyNamespace(name);
  }
}

const liveLabs = new Set<() => void>();
let handlersInstalled = false;

function installExitHandlers(): void {
  if (handlersInstalled) return;
  handlersInstalled = true;
  const cleanAll = (): void => {
    for (const clean of [...liveLabs]) clean();
  };
  process.once('exit', cleanAll);
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      cleanAll();
      process.removeListener(signal, onSignal);
      // Let whoever else listens decide; alone, behave as if we had not caught it.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    };
    process.on(signal, onSignal);
  }
}

/**
 * `node` as a command (first, or right after setpriv's `--`) is the Node running the tests: the project's
 * own runtime (the `node` devDependency), not whatever `node` a namespace's PATH would find first.
 */
function thisNode(command: readonly string[]): string[] {
  return command.map((word, i) => (word === 'node' && (i === 0 || command[i - 1] === '--') ? process.execPath : word));
}

function wrap(command: readonly string[], options: { uid?: number; gid?: number; env?: Readonly<Record<string, string>> }): string[] {
  const env = Object.entries(options.env ?? {});
  const withEnv = env.length === 0 ? thisNode(command) : ['env', ...env.map(([k, v]) => `${k}=${v}`), ...thisNode(command)];
  if (options.uid === undefined && options.gid === undefined) return withEnv;
  const uid = options.uid ?? 0;
  const gid = options.gid ?? uid;
  return ['setpriv', `--reuid=${uid}`, `--regid=${gid}`, '--clear-groups', '--', ...withEnv];
}

function ipv6Supported(netns: string): string | null {
  try {
    const value = execFileSync('ip', ['netns', 'exec', netns, 'cat', '/proc/sys/net/ipv6/conf/all/disable_ipv6'], { stdio: 'pipe' }).toString().trim();
    return value === '0' ? null : 'IPv6 is disabled in this kernel (net.ipv6.conf.all.disable_ipv6=1)';
  } catch {
    return 'this kernel has no IPv6 (/proc/sys/net/ipv6 is missing)';
  }
}

export async function createNetnsLab(options: { ipv6?: boolean } = {}): Promise<NetnsLab> {
  sweepLeftovers();
  installExitHandlers();
  const runId = `${process.pid}x${randomBytes(3).toString('hex')}`;
  const switchNs = `${LAB_PREFIX}${runId}-switch`;
  const namespaces: string[] = [];
  const processes = new Set<LabProcess>();
  const hosts: LabHost[] = [];
  let cleaned = false;

  const cleanSync = (): void => {
    if (cleaned) return;
    cleaned = true;
    liveLabs.delete(cleanSync);
    for (const p of processes) {
      const pid = p.child.pid;
      if (pid !== undefined && p.child.exitCode === null && p.child.signalCode === null) {
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // already gone
        }
      }
    }
    for (const netns of [...namespaces].reverse()) destroyNamespace(netns);
  };
  liveLabs.add(cleanSync);

  let ipv6Problem: string | null = options.ipv6 === true ? null : 'not requested';
  try {
    ip(['netns', 'add', switchNs]);
    namespaces.push(switchNs);
    ip(['-n', switchNs, 'link', 'add', 'br0', 'type', 'bridge']);
    ip(['-n', switchNs, 'link', 'set', 'br0', 'up']);
    if (options.ipv6 === true) ipv6Problem = ipv6Supported(switchNs);
  } catch (err) {
    cleanSync();
    throw err;
  }
  const ipv6 = ipv6Problem === null;

  async function addHost(name: string): Promise<LabHost> {
    if (cleaned) throw new Error('the lab was already cleaned up');
    if (!/^[a-z][a-z0-9-]{0,15}$/.test(name)) throw new Error(`host name "${name}": use 1-16 lower-case letters, digits and dashes`);
    if (hosts.some((h) => h.name === name)) throw new Error(`host "${name}" already exists in this lab`);
    if (hosts.length >= MAX_HOSTS) throw new Error(`a lab holds at most ${MAX_HOSTS} hosts`);
    const index = hosts.length + 11;
    const netns = `${LAB_PREFIX}${runId}-${name}`;
    const port = `p${index}`;
    ip(['netns', 'add', netns]);
    namespaces.push(netns);
    // Both ends are created directly in their namespaces: the root namespace never sees either.
    ip(['-n', switchNs, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', netns]);
    ip(['-n', switchNs, 'link', 'set', port, 'master', 'br0', 'up']);
    ip(['-n', netns, 'link', 'set', 'lo', 'up']);
    const ipv4 = `${IPV4_PREFIX}${index}`;
    ip(['-n', netns, 'addr', 'add', `${ipv4}/24`, 'dev', 'eth0']);
    let ipv6Address: string | null = null;
    if (ipv6) {
      ipv6Address = `${IPV6_PREFIX}${index.toString(16)}`;
      // nodad: the address is usable at once instead of after duplicate detection (about two seconds).
      ip(['-n', netns, 'addr', 'add', `${ipv6Address}/64`, 'dev', 'eth0', 'nodad']);
    }
    ip(['-n', netns, 'link', 'set', 'eth0', 'up']);
    const host = Object.freeze({ name, netns, ipv4, ipv6: ipv6Address });
    hosts.push(host);
    return host;
  }

  async function exec(host: LabHost, command: readonly string[], execOptions: ExecOptions = {}): Promise<CommandResult> {
    const [file, ...args] = wrap(command, execOptions);
    if (file === undefined) throw new Error('exec: empty command');
    const result = await netnsRunner(host.netns).run(file, args, execOptions.input);
    if (result.code !== 0 && execOptions.allowFailure !== true) {
      throw new Error(`${command.join(' ')} in ${host.name} exited ${result.code}: ${result.stderr.trim() || result.stdout.trim()}`);
    }
    return result;
  }

  function spawn(host: LabHost, command: readonly string[], spawnOptions: Omit<ExecOptions, 'input' | 'allowFailure'> = {}): LabProcess {
    if (cleaned) throw new Error('the lab was already cleaned up');
    // detached: its own process group, so stop() reaches anything it started too.
    const child = spawnProcess('ip', ['netns', 'exec', host.netns, ...wrap(command, spawnOptions)], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
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
    const labProcess: LabProcess = {
      child,
      output: () => output,
      waitForOutput(pattern: RegExp, timeoutMs = 10_000): Promise<string> {
        return new Promise((resolve, reject) => {
          const timer = setTimeout(() => {
            waiters.delete(check);
            reject(new Error(`${command.join(' ')} in ${host.name}: no output matching ${pattern} within ${timeoutMs} ms; output so far:\n${output}`));
          }, timeoutMs);
          const check = (): void => {
            if (pattern.test(output)) {
              clearTimeout(timer);
              waiters.delete(check);
              resolve(output);
            } else if (child.exitCode !== null || child.signalCode !== null) {
              clearTimeout(timer);
              waiters.delete(check);
              reject(new Error(`${command.join(' ')} in ${host.name} exited (${child.exitCode ?? child.signalCode}) before printing ${pattern}; output:\n${output}`));
            }
          };
          waiters.add(check);
          check();
        });
      },
      async stop(): Promise<void> {
        const pid = child.pid;
        if (pid === undefined || child.exitCode !== null || child.signalCode !== null) return;
        try {
          process.kill(-pid, 'SIGTERM');
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
    processes.add(labProcess);
    return labProcess;
  }

  async function cleanup(): Promise<void> {
    if (cleaned) return;
    await Promise.all([...processes].map((p) => p.stop()));
    cleanSync();
  }

  return {
    runId,
    get hosts() {
      return [...hosts];
    },
    ipv6,
    ipv6Problem,
    addHost,
    exec,
    spawn,
    cleanup,
  };
}

/** Every lab namespace that currently exists (for tests asserting that cleanup left nothing behind). */
export function listLabNamespaces(runId?: string): string[] {
  const prefix = runId === undefined ? LAB_PREFIX : `${LAB_PREFIX}${runId}-`;
  return tryIp(['netns', 'list'])
    .split('\n')
    .map((line) => line.split(' ')[0] ?? '')
    .filter((name) => name.startsWith(prefix));
}
