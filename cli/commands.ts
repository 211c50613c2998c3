/**
 * Every `trellis` subcommand, in the order `trellis --help` lists them. Each is imported only when it runs
 * (see CommandEntry); add a command with its name, its one-line summary and a loader.
 */
import type { CommandEntry } from './command.js';

export const commands: readonly CommandEntry[] = [
  { name: 'ca', summary: 'mesh CA: create roots and zone intermediates, issue and inspect SPIFFE certificates, rotate roots', load: async () => (await import('./ca.js')).caCommand },
  { name: 'agent', summary: 'run beside a workload: identity, config, proxy, traffic redirect', load: async () => (await import('./agent.js')).agentCommand },
  { name: 'proxy', summary: 'run the sidecar proxy from a static config (trellis proxy run --config FILE)', load: async () => (await import('./proxy.js')).proxyCommand },
  { name: 'policy', summary: 'validate TrafficPermission policy files (trellis policy check FILE...)', load: async () => (await import('./policy.js')).policyCommand },
  { name: 'explain', summary: 'may service A call service B? evaluate policy files and name the deciding rule', load: async () => (await import('./explain.js')).explainCommand },
];
