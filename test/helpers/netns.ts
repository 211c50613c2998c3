/**
 * A small lab of hosts made of network namespaces, for tests that need real iptables and real routing.
 *
 *   [host a: eth0 198.18.0.11] ──veth──┐
 *   [host b: eth0 198.18.0.12] ──veth──┼── br0 in its own "switch" namespace
 *   [host c: eth0 198.18.0.13] ──veth──┘
 *
 * More networks (each one more bridge in the switch namespace, `addNetwork`) and more interfaces per host
 * (`attach`) build routed topologies: test/helpers/netns-zones.ts makes zones behind NAT routers of them.
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
import { execFileSync, spawn as spawnProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { netnsRunner, type CommandResult } from '../../capture/command-runner.js';
import { watchProcess, type LabProcess } from './lab-process.js';
import { requires, type RequirementCheck } from './requirements.js';

export type { LabProcess } from './lab-process.js';

export const LAB_PREFIX = 'trl-';
const IPV4_PREFIX = '198.18.0.';
const IPV6_PREFIX = 'fd00:7e11:15::';
const MAX_HOSTS = 200;

export interface LabHost {
  /** The test's name for the host ("client", "server"). */
  readonly name: string;
  /** The network namespace holding it (`ip netns exec <netns> ...`). */
  readonly netns: string;
  readonly ipv4: string;
  /** Set when the lab was created with ipv6: true and the kernel supports IPv6 here. */
  readonly ipv6: string | null;
}

/** A bridge of the lab and its IPv4 /24 (hosts get .11 upwards; `addNetwork` networks may give any address). */
export interface LabNetwork {
  readonly name: string;
  /** The bridge's name inside the switch namespace. */
  readonly bridge: string;
  /** The first three octets and a dot, e.g. `10.1.0.`. */
  readonly prefix: string;
  /** `prefix` + `0/24`. */
  readonly cidr: string;
}

/** Where a command runs: a host, or the switch namespace holding the bridges (e.g. for tcpdump on one). */
export type LabPlace = Pick<LabHost, 'name' | 'netns'>;

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


export interface NetnsLab {
  readonly runId: string;
  readonly hosts: readonly LabHost[];
  /** Whether hosts get IPv6 addresses (requested and supported by this kernel). */
  readonly ipv6: boolean;
  /** Why IPv6 is off, when it was requested but is not available. */
  readonly ipv6Problem: string | null;
  /** The network every host joins unless told otherwise: br0, 198.18.0.0/24. */
  readonly network: LabNetwork;
  /** The switch namespace, for commands that watch a bridge (`tcpdump -i <network.bridge>`). */
  readonly switch: LabPlace;
  /** A host whose eth0 is on `options.network` (default `network`), with a default route via `options.gateway` if given. */
  addHost(name: string, options?: { network?: LabNetwork; gateway?: string }): Promise<LabHost>;
  /** One more bridge, `name` 1-12 letters/digits, on the /24 of `prefix` (`10.1.0.`); nothing routes to it unless a test says so. */
  addNetwork(name: string, prefix: string): LabNetwork;
  /** One more interface `ifname` of `host` on `network`, at `address` (default the network's next one); returns the address. */
  attach(host: LabHost, network: LabNetwork, ifname: string, address?: string): string;
  exec(host: LabPlace, command: readonly string[], options?: ExecOptions): Promise<CommandResult>;
  spawn(host: LabPlace, command: readonly string[], options?: Omit<ExecOptions, 'input' | 'allowFailure'>): LabProcess;
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

  const defaultNetwork: LabNetwork = Object.freeze({ name: 'lab', bridge: 'br0', prefix: IPV4_PREFIX, cidr: `${IPV4_PREFIX}0/24` });
  const networks: LabNetwork[] = [defaultNetwork];
  /** Next host number per network, and the count of switch ports (their names). */
  const nextAddress = new Map<string, number>([['br0', 11]]);
  let ports = 0;

  function addNetwork(name: string, prefix: string): LabNetwork {
    if (cleaned) throw new Error('the lab was already cleaned up');
    if (!/^[a-z][a-z0-9]{0,11}$/.test(name)) throw new Error(`network name "${name}": use 1-12 lower-case letters and digits`);
    if (!/^(\d{1,3}\.){3}$/.test(prefix)) throw new Error(`network prefix "${prefix}": three octets and a dot, e.g. 10.1.0.`);
    if (networks.some((n) => n.name === name || n.prefix === prefix)) throw new Error(`network "${name}" (${prefix}0/24) overlaps one of this lab`);
    const network = Object.freeze({ name, bridge: `br-${name}`, prefix, cidr: `${prefix}0/24` });
    ip(['-n', switchNs, 'link', 'add', network.bridge, 'type', 'bridge']);
    ip(['-n', switchNs, 'link', 'set', network.bridge, 'up']);
    networks.push(network);
    nextAddress.set(network.bridge, 11);
    return network;
  }

  /** A veth from a new port of `network`'s bridge to `ifname` in `netns`; both ends made in their namespaces, never the root one. */
  function link(netns: string, network: LabNetwork, ifname: string, address: string): void {
    const port = `p${++ports}`;
    ip(['-n', switchNs, 'link', 'add', port, 'type', 'veth', 'peer', 'name', ifname, 'netns', netns]);
    ip(['-n', switchNs, 'link', 'set', port, 'master', network.bridge, 'up']);
    ip(['-n', netns, 'addr', 'add', `${address}/24`, 'dev', ifname]);
  }

  function nextAddressOn(network: LabNetwork): string {
    const n = nextAddress.get(network.bridge) ?? 11;
    if (n > 254) throw new Error(`network ${network.name} is full`);
    nextAddress.set(network.bridge, n + 1);
    return `${network.prefix}${n}`;
  }

  function attach(host: LabHost, network: LabNetwork, ifname: string, address?: string): string {
    if (cleaned) throw new Error('the lab was already cleaned up');
    if (!networks.includes(network)) throw new Error(`network ${network.name} is not of this lab`);
    const at = address ?? nextAddressOn(network);
    if (!at.startsWith(network.prefix)) throw new Error(`${at} is not on ${network.cidr}`);
    link(host.netns, network, ifname, at);
    ip(['-n', host.netns, 'link', 'set', ifname, 'up']);
    return at;
  }

  async function addHost(name: string, hostOptions: { network?: LabNetwork; gateway?: string } = {}): Promise<LabHost> {
    if (cleaned) throw new Error('the lab was already cleaned up');
    if (!/^[a-z][a-z0-9-]{0,15}$/.test(name)) throw new Error(`host name "${name}": use 1-16 lower-case letters, digits and dashes`);
    if (hosts.some((h) => h.name === name)) throw new Error(`host "${name}" already exists in this lab`);
    if (hosts.length >= MAX_HOSTS) throw new Error(`a lab holds at most ${MAX_HOSTS} hosts`);
    const network = hostOptions.network ?? defaultNetwork;
    if (!networks.includes(network)) throw new Error(`network ${network.name} is not of this lab`);
    const netns = `${LAB_PREFIX}${runId}-${name}`;
    ip(['netns', 'add', netns]);
    namespaces.push(netns);
    const ipv4 = nextAddressOn(network);
    link(netns, network, 'eth0', ipv4);
    ip(['-n', netns, 'link', 'set', 'lo', 'up']);
    let ipv6Address: string | null = null;
    if (ipv6 && network === defaultNetwork) {
      ipv6Address = `${IPV6_PREFIX}${Number(ipv4.slice(IPV4_PREFIX.length)).toString(16)}`;
      // nodad: the address is usable at once instead of after duplicate detection (about two seconds).
      ip(['-n', netns, 'addr', 'add', `${ipv6Address}/64`, 'dev', 'eth0', 'nodad']);
    }
    ip(['-n', netns, 'link', 'set', 'eth0', 'up']);
    if (hostOptions.gateway !== undefined) ip(['-n', netns, 'route', 'add', 'default', 'via', hostOptions.gateway]);
    const host = Object.freeze({ name, netns, ipv4, ipv6: ipv6Address });
    hosts.push(host);
    return host;
  }

  async function exec(host: LabPlace, command: readonly string[], execOptions: ExecOptions = {}): Promise<CommandResult> {
    const [file, ...args] = wrap(command, execOptions);
    if (file === undefined) throw new Error('exec: empty command');
    const result = await netnsRunner(host.netns).run(file, args, execOptions.input);
    if (result.code !== 0 && execOptions.allowFailure !== true) {
      throw new Error(`${command.join(' ')} in ${host.name} exited ${result.code}: ${result.stderr.trim() || result.stdout.trim()}`);
    }
    return result;
  }

  function spawn(host: LabPlace, command: readonly string[], spawnOptions: Omit<ExecOptions, 'input' | 'allowFailure'> = {}): LabProcess {
    if (cleaned) throw new Error('the lab was already cleaned up');
    // detached: its own process group, so stop() reaches anything it started too.
    const child = spawnProcess('ip', ['netns', 'exec', host.netns, ...wrap(command, spawnOptions)], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    const labProcess = watchProcess(child, `${command.join(' ')} in ${host.name}`);
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
    network: defaultNetwork,
    switch: Object.freeze({ name: 'switch', netns: switchNs }),
    addHost,
    addNetwork,
    attach,
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
