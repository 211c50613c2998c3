/**
 * Transparent capture's traffic redirect: options, the generated nat rules, and the installer that applies
 * them through iptables (see docs/architecture.md, "Transparent capture"). Only the CLI imports it
 * (`trellis agent redirect`, which the Kubernetes init container also runs); nothing here runs iptables
 * until an installer is asked to.
 */
export {
  DEFAULT_ADMIN_PORT,
  DEFAULT_INBOUND_PORT,
  DEFAULT_OUTBOUND_PORT,
  DEFAULT_TUNNEL_PORT,
  INBOUND_HANDOFF_SOURCE_V4,
  INBOUND_HANDOFF_SOURCE_V6,
  validateRedirectOptions,
  type RedirectConfig,
  type RedirectOptionsInput,
  type RedirectPlatform,
} from './options.js';
export { buildNatRules, renderRuleSet, type AddressFamily, type NatRuleSet } from './rules.js';
export { createRedirectInstaller, formatStatus, type InstallResult, type RedirectInstaller, type RedirectStatus, type UninstallResult } from './installer.js';
export { detectBackend, type BackendKind, type IptablesBackend } from './backend.js';
export { hostRunner, netnsRunner, type CommandResult, type CommandRunner } from './command-runner.js';
