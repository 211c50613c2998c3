/**
 * The injector's limits in one schema (common/limit-schema.ts): the webhook listener's defaults, and the
 * bounds `createInjectorConfig` checks the token lifetime and the classic layout's wait against.
 */
import { defineLimits, limitDefaults } from '../common/limit-schema.js';

export const INJECTOR_LIMIT_SCHEMA = defineLimits({
  // A webhook with `failurePolicy: Fail` that hangs blocks every pod in the mesh: everything is bounded.
  webhookMaxBodyBytes: { default: 4 * 1024 * 1024, min: 64 * 1024, max: 64 * 1024 * 1024, unit: 'bytes', doc: 'largest AdmissionReview body (413 beyond)' },
  webhookMaxHeaderBytes: { default: 16 * 1024, min: 1024, max: 65_536, unit: 'bytes', doc: 'largest request head on the webhook (431 beyond)' },
  // The API server gives up at the webhook's `timeoutSeconds` (at most 10).
  webhookRequestTimeoutMs: { default: 10_000, min: 1, max: 60_000, unit: 'ms', doc: 'a whole webhook request must arrive within this' },
  webhookHandshakeTimeoutMs: { default: 10_000, min: 1, max: 60_000, unit: 'ms', doc: 'a TLS handshake on the webhook must finish within this' },
  webhookKeepAliveTimeoutMs: { default: 60_000, min: 1, max: 600_000, unit: 'ms', doc: 'an idle kept-alive webhook connection is closed after this' },
  webhookMaxConnections: { default: 512, min: 1, max: 65_536, unit: 'count', doc: 'concurrent connections to the webhook' },
  // 600 s is the API server's minimum; the kubelet refreshes the token at 80 %.
  tokenExpirationSeconds: { default: 43_200, min: 600, max: 86_400, unit: 's', doc: 'lifetime of the projected service-account token (`--token-ttl`)' },
  readyWaitSeconds: { default: 120, min: 1, max: 3_600, unit: 's', doc: "the classic layout's post-start hook waits this long for the proxy" },
});

export const INJECTOR_LIMITS = limitDefaults(INJECTOR_LIMIT_SCHEMA);
