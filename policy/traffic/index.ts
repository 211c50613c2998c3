/**
 * Traffic management: the resource kinds (TrafficRoute, RetryPolicy, TimeoutPolicy, OutlierDetection,
 * CircuitBreaker, ZoneFailover), their validator, and the pure logic the outbound paths run (route matching, weighted
 * backends, retry rules and budgets, outlier detection, circuit breaking). No sockets here: the proxy
 * wires these into its paths, the control plane validates and distributes the resources.
 */
export * from './types.js';
export { parseTrafficFiles, validateTrafficObjects, isTrafficKind, writtenForm } from './validator.js';
export { compileTraffic, CompiledTraffic, DEFAULT_TRAFFIC, type CompileOptions, type DestinationSettings } from './compiled-traffic.js';
export { effectiveOrder, FailoverRules, type FailoverChoice } from './failover-rules.js';
export { labelsMatch, pickBackend, DEFAULT_RULE, type CompiledRule, type TrafficRequest } from './route-match.js';
export { RetryBudget, methodRetriable, statusRetryReason, failureRetriable, type RetryReason } from './retry-rules.js';
export { OutlierDetector, type EjectionReason, type TryOutcome } from './outlier-detector.js';
export { CircuitBreaker, type BreakerOverflow, type BreakerSlot } from './circuit-breaker.js';
export { unsafeRegexReason } from './safe-regex.js';
