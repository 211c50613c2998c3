/**
 * The policy library: the TrafficPermission format, its validator and its compiled evaluator.
 * Used by the control plane (validate, distribute) and the proxy (compile, evaluate); neither imports the other.
 */
export * from './types.js';
export { parsePolicyFiles, validatePolicyObjects, POLICY_LIMITS } from './validator.js';
export { loadPolicyDir, loadPolicyAndTrafficDir, parsePolicyAndTraffic, isPolicyFileName } from './policy-loader.js';
export { compilePolicy, CompiledPolicy } from './compiled-policy.js';
export { normalizeRequestPath } from './http-match.js';
export { grpcMethodOfPath, GRPC_LIMITS } from './grpc-match.js';
export { parseSourceSelector, parseDestination, type NamePattern } from './selectors.js';
