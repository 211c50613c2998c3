/**
 * Every `trellis` subcommand, in the order `trellis --help` lists them. Each is imported only when it runs
 * (see CommandEntry); add a command with its name, its one-line summary and a loader.
 */
import type { CommandEntry } from './command.js';

export const commands: readonly CommandEntry[] = [
  { name: 'demo', summary: 'start a whole mesh on loopback and show allowed and denied calls', load: async () => (await import('./demo.js')).demoCommand },
  { name: 'ca', summary: 'mesh CA: create roots and zone intermediates, issue and inspect SPIFFE certificates, rotate roots', load: async () => (await import('./ca.js')).caCommand },
  { name: 'control', summary: 'run a zone control plane (CA, join tokens, registry, policy distribution) or the global one (--mode global)', load: async () => (await import('./control.js')).controlCommand },
  { name: 'zone', summary: 'multi-zone: zone tokens, and the zones a global control plane knows (list, describe)', load: async () => (await import('./zone.js')).zoneCommand },
  { name: 'token', summary: 'create, list and revoke join tokens for VM workloads', load: async () => (await import('./token.js')).tokenCommand },
  { name: 'agent', summary: 'run beside a workload: identity, config, proxy, traffic redirect', load: async () => (await import('./agent.js')).agentCommand },
  { name: 'ingress', summary: "run a zone ingress: the way into this zone for other zones' sidecars (nested mTLS, typed refusals)", load: async () => (await import('./ingress.js')).ingressCommand },
  { name: 'gateway', summary: 'run the mesh gateway: clients outside the mesh in, by host and path, with JWT, rate limits, CORS (trellis gateway run --config FILE)', load: async () => (await import('./gateway.js')).gatewayCommand },
  { name: 'proxy', summary: 'run the sidecar proxy from a static config (trellis proxy run --config FILE)', load: async () => (await import('./proxy.js')).proxyCommand },
  { name: 'policy', summary: 'validate TrafficPermission policy files (trellis policy check FILE...)', load: async () => (await import('./policy.js')).policyCommand },
  { name: 'explain', summary: 'may service A call service B? evaluate policy files and name the deciding rule', load: async () => (await import('./explain.js')).explainCommand },
  { name: 'check', summary: 'check a mesh (control plane, certificates, policies, agents; Kubernetes admission) and say how to fix it', load: async () => (await import('./check.js')).checkCommand },
  { name: 'cni', summary: 'Kubernetes CNI capture: the chained plugin, its node install and the repairing node agent', load: async () => (await import('./cni.js')).cniCommand },
  { name: 'injector', summary: 'Kubernetes admission webhook that injects the sidecar into new pods', load: async () => (await import('./injector.js')).injectorCommand },
];
