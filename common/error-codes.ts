/**
 * Every error code Trellis raises, defined once.
 *
 * A code is a stable string (operators grep for it, tests assert on it, peers read it in `trellis-error`
 * and in control API error bodies). Here each code also states the HTTP status a peer is answered with,
 * the side it blames by default, whether retrying elsewhere is safe, and a one-line summary. Source files
 * use `CODE.X` (a string-literal type, so `err.code === CODE.X` narrows) and never spell a code out;
 * test/common/error-codes.test.ts fails when one does.
 *
 * What a peer or a user sees is decided here too: `httpStatusOf` turns any thrown value into the status of
 * a reply (the control API and the HTTP proxy path use it), and the CLI exits 2 for side `input`.
 * What a peer of the proxy sees is derived from these entries in one place (proxy/http/errors.ts): an HTTP
 * failure's status, `trellis-error` code and text, and a refused tunnel stream's too, whose `trellis-reason`
 * is its `STREAM_*` code's tail in lower case (`policy-denied`, `app-refused`, ...).
 */
import { TrellisError, type ErrorSide } from './errors.js';

export interface ErrorCodeInfo<C extends string = string> {
  readonly code: C;
  /** The HTTP status a peer is answered with when this error ends a request. */
  readonly status: number;
  /** Whom the error blames by default (a raising site may say more precisely). */
  readonly side: ErrorSide;
  /** Safe to retry the same operation (elsewhere or later): nothing was changed. */
  readonly retryable: boolean;
  /** One line for people; for HTTP failures it is the text a peer reads. */
  readonly summary: string;
}

function def<const C extends string>(code: C, status: number, side: ErrorSide, retryable: boolean, summary: string): ErrorCodeInfo<C> {
  return Object.freeze({ code, status, side, retryable, summary });
}

/** The registry, keyed by the code without its `TRELLIS_` prefix and grouped by the area that raises it. */
export const ERRORS = Object.freeze({
  // ── common/: config files and durations
  CONFIG_INVALID: def('TRELLIS_CONFIG_INVALID', 400, 'input', false, 'the config is invalid (every issue is listed)'),
  CONFIG_UNREADABLE: def('TRELLIS_CONFIG_UNREADABLE', 400, 'input', false, 'a config file cannot be read'),
  DURATION_INVALID: def('TRELLIS_DURATION_INVALID', 400, 'input', false, 'not a positive duration (e.g. 30s, 15m, 24h, 7d)'),
  LIMIT_INVALID: def('TRELLIS_LIMIT_INVALID', 400, 'input', false, 'a limit is not a number within its bounds'),

  // ── ca/: keys, certificates, bundles, CSRs, signing and peer/chain verification
  BUNDLE_EMPTY: def('TRELLIS_BUNDLE_EMPTY', 400, 'input', false, 'the trust bundle would hold no root'),
  BUNDLE_INVALID: def('TRELLIS_BUNDLE_INVALID', 400, 'input', false, 'the trust bundle is malformed'),
  BUNDLE_NOT_CA: def('TRELLIS_BUNDLE_NOT_CA', 400, 'input', false, 'a trust bundle root is not a CA certificate'),
  BUNDLE_ROOT_UNKNOWN: def('TRELLIS_BUNDLE_ROOT_UNKNOWN', 400, 'input', false, 'no root with that fingerprint in the trust bundle'),
  BUNDLE_STALE: def('TRELLIS_BUNDLE_STALE', 400, 'input', false, 'the bundle update is not newer than the current bundle'),
  BUNDLE_TOO_LARGE: def('TRELLIS_BUNDLE_TOO_LARGE', 400, 'input', false, 'the trust bundle holds more roots than the limit'),
  BUNDLE_TRUST_DOMAIN: def('TRELLIS_BUNDLE_TRUST_DOMAIN', 400, 'input', false, 'the bundle update is for another trust domain'),
  CA_CHAIN_INVALID: def('TRELLIS_CA_CHAIN_INVALID', 400, 'input', false, 'the CA certificate does not chain to the trust bundle'),
  CA_CSR_DUPLICATE_EXTENSION: def('TRELLIS_CA_CSR_DUPLICATE_EXTENSION', 400, 'input', false, 'the certificate signing request repeats an extension'),
  CA_CSR_INVALID: def('TRELLIS_CA_CSR_INVALID', 400, 'input', false, 'the certificate signing request is malformed or too large'),
  CA_CSR_SAN_MISMATCH: def('TRELLIS_CA_CSR_SAN_MISMATCH', 400, 'input', false, 'the certificate signing request asks for more than its identity'),
  CA_CSR_SIGNATURE: def('TRELLIS_CA_CSR_SIGNATURE', 400, 'input', false, 'the CSR signature does not match its public key'),
  CA_CURVE_UNSUPPORTED: def('TRELLIS_CA_CURVE_UNSUPPORTED', 400, 'input', false, 'unsupported curve (expected P-256 or P-384)'),
  CA_EXISTS: def('TRELLIS_CA_EXISTS', 400, 'input', false, 'a CA already exists there; nothing is overwritten'),
  CA_FILE_MISSING: def('TRELLIS_CA_FILE_MISSING', 400, 'input', false, 'a CA file cannot be read'),
  CA_FOREIGN_TRUST_DOMAIN: def('TRELLIS_CA_FOREIGN_TRUST_DOMAIN', 400, 'input', false, 'the identity is outside this CA\'s trust domain'),
  CA_INTERNAL: def('TRELLIS_CA_INTERNAL', 500, 'internal', false, 'an unexpected failure while signing (metrics label only)'),
  CA_ISSUER_EXPIRED: def('TRELLIS_CA_ISSUER_EXPIRED', 400, 'input', false, 'the CA certificate has expired'),
  CA_ISSUER_NOT_YET_VALID: def('TRELLIS_CA_ISSUER_NOT_YET_VALID', 400, 'input', false, 'the CA certificate is not valid yet'),
  CA_KEY_INVALID: def('TRELLIS_CA_KEY_INVALID', 400, 'input', false, 'not a readable PEM private key'),
  CA_KEY_MISMATCH: def('TRELLIS_CA_KEY_MISMATCH', 400, 'input', false, 'the private key does not belong to the CA certificate'),
  CA_KEY_PERMISSIONS: def('TRELLIS_CA_KEY_PERMISSIONS', 400, 'input', false, 'the CA key file is readable by others'),
  CA_KEY_UNSUPPORTED: def('TRELLIS_CA_KEY_UNSUPPORTED', 400, 'input', false, 'unsupported key type or size'),
  CA_KEY_WEAK: def('TRELLIS_CA_KEY_WEAK', 400, 'input', false, 'the RSA key is too weak'),
  CA_NAME_INVALID: def('TRELLIS_CA_NAME_INVALID', 400, 'input', false, 'the CA name must be 1-64 printable characters'),
  CA_NOT_A_CA: def('TRELLIS_CA_NOT_A_CA', 400, 'input', false, 'the certificate is not a CA certificate'),
  CA_PATH_LENGTH: def('TRELLIS_CA_PATH_LENGTH', 400, 'input', false, 'the CA pathLen does not allow signing another CA'),
  CA_TRUST_DOMAIN_UNKNOWN: def('TRELLIS_CA_TRUST_DOMAIN_UNKNOWN', 400, 'input', false, 'the CA certificate names no trust domain'),
  CA_TTL_INVALID: def('TRELLIS_CA_TTL_INVALID', 400, 'input', false, 'the certificate lifetime is not positive'),
  CA_TTL_TOO_LONG: def('TRELLIS_CA_TTL_TOO_LONG', 400, 'input', false, 'the certificate lifetime exceeds the CA\'s maximum'),
  CERT_INVALID: def('TRELLIS_CERT_INVALID', 400, 'input', false, 'not a valid X.509 certificate'),
  CHAIN_EXPIRED: def('TRELLIS_CHAIN_EXPIRED', 403, 'downstream', false, 'an issuer in the chain has expired'),
  CHAIN_INVALID: def('TRELLIS_CHAIN_INVALID', 403, 'downstream', false, 'the certificate chain is malformed'),
  CHAIN_ISSUER_NOT_CA: def('TRELLIS_CHAIN_ISSUER_NOT_CA', 403, 'downstream', false, 'an issuer in the chain is not a CA'),
  CHAIN_NOT_YET_VALID: def('TRELLIS_CHAIN_NOT_YET_VALID', 403, 'downstream', false, 'an issuer in the chain is not valid yet'),
  CHAIN_PATH_LENGTH: def('TRELLIS_CHAIN_PATH_LENGTH', 403, 'downstream', false, 'the chain exceeds an issuer pathLen'),
  CHAIN_TOO_LONG: def('TRELLIS_CHAIN_TOO_LONG', 403, 'downstream', false, 'the certificate chain is longer than the limit'),
  CHAIN_TRUST_DOMAIN: def('TRELLIS_CHAIN_TRUST_DOMAIN', 403, 'downstream', false, 'an issuer in the chain belongs to another trust domain'),
  CHAIN_UNTRUSTED: def('TRELLIS_CHAIN_UNTRUSTED', 403, 'downstream', false, 'the certificate chain does not end at a trusted root'),
  DER_MALFORMED: def('TRELLIS_DER_MALFORMED', 400, 'input', false, 'malformed DER'),
  PEER_CERT_INVALID: def('TRELLIS_PEER_CERT_INVALID', 403, 'downstream', false, 'peer certificate could not be parsed'),
  PEER_EXPIRED: def('TRELLIS_PEER_EXPIRED', 403, 'downstream', false, 'the peer certificate has expired'),
  PEER_IS_CA: def('TRELLIS_PEER_IS_CA', 403, 'downstream', false, 'peer presented a CA certificate as its leaf'),
  PEER_KEY_USAGE: def('TRELLIS_PEER_KEY_USAGE', 403, 'downstream', false, 'peer leaf certificate does not allow digitalSignature'),
  PEER_NOT_SVID: def('TRELLIS_PEER_NOT_SVID', 403, 'downstream', false, 'the peer certificate is not an X.509 SVID of a workload'),
  PEER_NOT_YET_VALID: def('TRELLIS_PEER_NOT_YET_VALID', 403, 'downstream', false, 'the peer certificate is not valid yet'),
  PEER_TRUST_DOMAIN: def('TRELLIS_PEER_TRUST_DOMAIN', 403, 'downstream', false, 'the peer belongs to another trust domain'),
  PEM_INVALID: def('TRELLIS_PEM_INVALID', 400, 'input', false, 'not a well-formed PEM block'),
  SPIFFE_ID_INVALID: def('TRELLIS_SPIFFE_ID_INVALID', 400, 'input', false, 'not a valid workload SPIFFE ID'),

  // ── api/: SNI names and the control client
  SNI_INVALID: def('TRELLIS_SNI_INVALID', 400, 'downstream', false, 'the server name is not a Trellis name'),
  SNI_UNENCODABLE: def('TRELLIS_SNI_UNENCODABLE', 400, 'input', false, 'the destination cannot be named in SNI'),
  SNI_VERSION: def('TRELLIS_SNI_VERSION', 400, 'downstream', false, 'the server name has a version this build does not understand'),

  // ── control/: the control API, join tokens, the store and Kubernetes
  CONTROL_ADDRESS_TAKEN: def('TRELLIS_CONTROL_ADDRESS_TAKEN', 409, 'downstream', false, 'the address is held by a connected instance of another workload'),
  CONTROL_ADMIN_REQUIRED: def('TRELLIS_CONTROL_ADMIN_REQUIRED', 401, 'downstream', false, 'token administration needs the admin credential (<data-dir>/admin-token)'),
  CONTROL_BAD_HEALTH: def('TRELLIS_CONTROL_BAD_HEALTH', 400, 'downstream', false, 'the health report is malformed'),
  CONTROL_BAD_REGISTRATION: def('TRELLIS_CONTROL_BAD_REGISTRATION', 400, 'downstream', false, 'the registration is missing or invalid'),
  CONTROL_BAD_REQUEST: def('TRELLIS_CONTROL_BAD_REQUEST', 400, 'downstream', false, 'the request body is missing or malformed'),
  CONTROL_BAD_RESPONSE: def('TRELLIS_CONTROL_BAD_RESPONSE', 500, 'upstream', false, 'the control plane sent a reply that cannot be used'),
  CONTROL_BODY_TOO_LARGE: def('TRELLIS_CONTROL_BODY_TOO_LARGE', 413, 'downstream', false, 'the request body exceeds the limit'),
  CONTROL_BOOTSTRAP_RATE_LIMITED: def('TRELLIS_CONTROL_BOOTSTRAP_RATE_LIMITED', 429, 'downstream', false, 'too many refused bootstrap attempts from this source'),
  CONTROL_CA_UNUSABLE: def('TRELLIS_CONTROL_CA_UNUSABLE', 400, 'input', false, 'the --ca-dir CA cannot be used by this control plane'),
  CONTROL_CLIENT_CERT_REQUIRED: def('TRELLIS_CONTROL_CLIENT_CERT_REQUIRED', 401, 'downstream', false, 'this path needs the workload certificate (mutual TLS)'),
  CONTROL_CLIENT_CERT_UNTRUSTED: def('TRELLIS_CONTROL_CLIENT_CERT_UNTRUSTED', 403, 'downstream', false, 'the client certificate is not issued by this mesh'),
  CONTROL_CREDENTIAL_REQUIRED: def('TRELLIS_CONTROL_CREDENTIAL_REQUIRED', 401, 'downstream', false, 'issuance needs "Authorization: Bearer <join token>"'),
  CONTROL_CREDENTIAL_UNKNOWN: def('TRELLIS_CONTROL_CREDENTIAL_UNKNOWN', 401, 'downstream', false, 'the bearer credential is of no kind this control plane accepts'),
  CONTROL_DATA_DIR_MISMATCH: def('TRELLIS_CONTROL_DATA_DIR_MISMATCH', 400, 'input', false, 'the data directory belongs to another trust domain or zone'),
  CONTROL_HTTP_ERROR: def('TRELLIS_CONTROL_HTTP_ERROR', 500, 'upstream', false, 'the control plane answered with an error status'),
  CONTROL_INSTANCE_LIMIT: def('TRELLIS_CONTROL_INSTANCE_LIMIT', 429, 'downstream', false, 'this certificate holds the most instances one workload may register'),
  CONTROL_INSTANCE_TAKEN: def('TRELLIS_CONTROL_INSTANCE_TAKEN', 403, 'downstream', false, 'the instance belongs to another workload'),
  CONTROL_INTERNAL: def('TRELLIS_CONTROL_INTERNAL', 500, 'internal', false, 'internal error (see the control plane log)'),
  CONTROL_METHOD_NOT_ALLOWED: def('TRELLIS_CONTROL_METHOD_NOT_ALLOWED', 405, 'downstream', false, 'method not supported on this path'),
  CONTROL_NOT_FOUND: def('TRELLIS_CONTROL_NOT_FOUND', 404, 'downstream', false, 'no such control API path'),
  CONTROL_PROTOCOL_UNSUPPORTED: def('TRELLIS_CONTROL_PROTOCOL_UNSUPPORTED', 400, 'downstream', false, 'the control protocol version is not supported'),
  CONTROL_RESPONSE_TOO_LARGE: def('TRELLIS_CONTROL_RESPONSE_TOO_LARGE', 500, 'upstream', false, 'the control plane response exceeds the limit'),
  CONTROL_SERVICE_INSTANCE_LIMIT: def('TRELLIS_CONTROL_SERVICE_INSTANCE_LIMIT', 429, 'downstream', false, 'the service holds the most instances one identity may register'),
  CONTROL_SUMMARY_FOREIGN: def('TRELLIS_CONTROL_SUMMARY_FOREIGN', 403, 'downstream', false, 'a golden-metrics summary reports for another identity or instance than the caller\'s'),
  CONTROL_SUMMARY_INVALID: def('TRELLIS_CONTROL_SUMMARY_INVALID', 400, 'downstream', false, 'the golden-metrics summary is malformed or over its limits'),
  CONTROL_SUMMARY_TOO_FREQUENT: def('TRELLIS_CONTROL_SUMMARY_TOO_FREQUENT', 429, 'downstream', true, 'golden-metrics summaries from this instance arrive faster than allowed'),
  CONTROL_SUMMARY_TOO_LARGE: def('TRELLIS_CONTROL_SUMMARY_TOO_LARGE', 413, 'downstream', false, 'the golden-metrics summary exceeds its byte limit'),
  CONTROL_TIMEOUT: def('TRELLIS_CONTROL_TIMEOUT', 500, 'upstream', false, 'no response from the control plane in time'),
  CONTROL_UNKNOWN_INSTANCE: def('TRELLIS_CONTROL_UNKNOWN_INSTANCE', 404, 'downstream', false, 'no such registered instance'),
  CONTROL_UNREACHABLE: def('TRELLIS_CONTROL_UNREACHABLE', 500, 'upstream', false, 'the control plane cannot be reached'),
  CONTROL_WRONG_ZONE: def('TRELLIS_CONTROL_WRONG_ZONE', 400, 'downstream', false, 'the agent names another zone than this control plane serves'),
  CSR_MISSING: def('TRELLIS_CSR_MISSING', 400, 'input', false, 'the request needs "csrPem": a PEM certificate signing request'),
  CSR_TOO_LARGE: def('TRELLIS_CSR_TOO_LARGE', 400, 'input', false, 'the CSR exceeds the size limit'),
  IDENTITY_RESERVED: def('TRELLIS_IDENTITY_RESERVED', 403, 'downstream', false, 'the identity is in a namespace reserved for the mesh'),
  K8S_BAD_EXPORT_LABEL: def('TRELLIS_K8S_BAD_EXPORT_LABEL', 400, 'input', false, 'a Service or Namespace trellis.dev/export label or annotation is not "true" or "false" (the service is not exported)'),
  K8S_KUBECONFIG_INVALID: def('TRELLIS_K8S_KUBECONFIG_INVALID', 400, 'input', false, 'the kubeconfig cannot be loaded or has no usable context'),
  K8S_NO_API: def('TRELLIS_K8S_NO_API', 500, 'internal', false, 'TokenReviewAuthenticator needs a kubeConfig or a review function'),
  K8S_NO_CREDENTIALS: def('TRELLIS_K8S_NO_CREDENTIALS', 400, 'input', false, 'no in-cluster service-account token'),
  K8S_SYNC_TIMEOUT: def('TRELLIS_K8S_SYNC_TIMEOUT', 500, 'upstream', true, 'the Kubernetes API did not list the watched resources in time'),
  K8S_TOKEN_REVIEW_FAILED: def('TRELLIS_K8S_TOKEN_REVIEW_FAILED', 500, 'upstream', true, 'the service-account token cannot be checked (TokenReview failed)'),
  STORE_BAD_ID: def('TRELLIS_STORE_BAD_ID', 400, 'input', false, 'a record id holds characters outside A-Z, a-z, 0-9, "_" and "-"'),
  STORE_CORRUPT: def('TRELLIS_STORE_CORRUPT', 500, 'internal', false, 'a store file is damaged (left as found)'),
  TOKEN_BAD_SIGNATURE: def('TRELLIS_TOKEN_BAD_SIGNATURE', 403, 'downstream', false, 'the join token was not signed by this control plane'),
  TOKEN_EXPIRED: def('TRELLIS_TOKEN_EXPIRED', 403, 'downstream', false, 'the join token has expired'),
  TOKEN_K8S_NAME_UNSUPPORTED: def('TRELLIS_TOKEN_K8S_NAME_UNSUPPORTED', 403, 'downstream', false, 'the service account name is not a DNS label'),
  TOKEN_K8S_NOT_SERVICE_ACCOUNT: def('TRELLIS_TOKEN_K8S_NOT_SERVICE_ACCOUNT', 403, 'downstream', false, 'the token does not belong to a service account'),
  TOKEN_K8S_UNAUTHENTICATED: def('TRELLIS_TOKEN_K8S_UNAUTHENTICATED', 403, 'downstream', false, 'the Kubernetes API did not authenticate the service-account token'),
  TOKEN_K8S_WRONG_AUDIENCE: def('TRELLIS_TOKEN_K8S_WRONG_AUDIENCE', 403, 'downstream', false, 'the service-account token is not for the Trellis audience'),
  TOKEN_MALFORMED: def('TRELLIS_TOKEN_MALFORMED', 403, 'downstream', false, 'not a well-formed Trellis join token'),
  TOKEN_MISMATCH: def('TRELLIS_TOKEN_MISMATCH', 403, 'downstream', false, 'the join token does not match its record'),
  TOKEN_REVOKED: def('TRELLIS_TOKEN_REVOKED', 403, 'downstream', false, 'the join token was revoked'),
  TOKEN_SPENT: def('TRELLIS_TOKEN_SPENT', 403, 'downstream', false, 'the join token has been used as often as it allows'),
  TOKEN_TTL_INVALID: def('TRELLIS_TOKEN_TTL_INVALID', 400, 'input', false, 'token TTL must be between 1s and 365d'),
  TOKEN_UNKNOWN: def('TRELLIS_TOKEN_UNKNOWN', 403, 'downstream', false, 'the join token is not known to this control plane'),
  TOKEN_WRONG_SERVICE: def('TRELLIS_TOKEN_WRONG_SERVICE', 403, 'downstream', false, 'the credential is for another service'),
  TOKEN_WRONG_TRUST_DOMAIN: def('TRELLIS_TOKEN_WRONG_TRUST_DOMAIN', 403, 'downstream', false, 'the join token is for another trust domain'),

  // ── control/zone-sync/, control/global/: the global control plane and zone sync
  ZONE_CONFLICT: def('TRELLIS_ZONE_CONFLICT', 409, 'downstream', true, 'another control plane holds this zone name on the global control plane right now'),
  ZONE_EXPORT_CONFLICT: def('TRELLIS_ZONE_EXPORT_CONFLICT', 409, 'downstream', false, 'instances of one service disagree on --export / --no-export; the service is not exported until they agree'),
  ZONE_GOLDEN_TOO_FREQUENT: def('TRELLIS_ZONE_GOLDEN_TOO_FREQUENT', 429, 'downstream', true, 'a zone sent its golden-metrics edge view more often than the global accepts'),
  ZONE_NAME_MISMATCH: def('TRELLIS_ZONE_NAME_MISMATCH', 403, 'downstream', false, 'the zone names another zone than its certificate or token'),
  ZONE_NOT_CONNECTED: def('TRELLIS_ZONE_NOT_CONNECTED', 503, 'upstream', true, 'the zone is not connected to its global control plane'),
  ZONE_SYNC_FOREIGN_RECORD: def('TRELLIS_ZONE_SYNC_FOREIGN_RECORD', 403, 'downstream', false, 'a zone sent or removed a record another zone owns'),
  ZONE_SYNC_MALFORMED: def('TRELLIS_ZONE_SYNC_MALFORMED', 400, 'downstream', false, 'a zone sync message is malformed'),
  ZONE_SYNC_OUT_OF_ORDER: def('TRELLIS_ZONE_SYNC_OUT_OF_ORDER', 409, 'downstream', true, 'a zone sync delta does not follow the version its receiver holds'),
  ZONE_SYNC_PROTOCOL: def('TRELLIS_ZONE_SYNC_PROTOCOL', 400, 'downstream', false, 'the zone sync protocol version is not supported'),
  ZONE_SYNC_TOO_LARGE: def('TRELLIS_ZONE_SYNC_TOO_LARGE', 413, 'downstream', false, 'a zone sync record or message exceeds the limit (the resource is named)'),
  ZONE_STORE_UNAVAILABLE: def('TRELLIS_ZONE_STORE_UNAVAILABLE', 503, 'upstream', true, 'the global control plane\'s store (PostgreSQL) cannot be reached or written'),
  ZONE_TOKEN_INVALID: def('TRELLIS_ZONE_TOKEN_INVALID', 403, 'downstream', false, 'the zone token is malformed, forged, expired, spent or revoked'),
  ZONE_UNKNOWN: def('TRELLIS_ZONE_UNKNOWN', 404, 'downstream', false, 'no zone or zone token by that name or id'),

  // ── agent/: bootstrap, identity, config watch, probes and the iptables redirect
  AGENT_APP_PROBES_INVALID: def('TRELLIS_AGENT_APP_PROBES_INVALID', 400, 'input', false, 'the app probes file is not a valid probe map'),
  AGENT_APP_PROBES_UNREADABLE: def('TRELLIS_AGENT_APP_PROBES_UNREADABLE', 400, 'input', false, 'the app probes file cannot be read'),
  AGENT_BOOTSTRAP_REFUSED: def('TRELLIS_AGENT_BOOTSTRAP_REFUSED', 400, 'input', false, 'the control plane refused this workload\'s bootstrap credential'),
  AGENT_BUNDLE_REFUSED: def('TRELLIS_AGENT_BUNDLE_REFUSED', 500, 'upstream', false, 'the trust bundle from the control plane does not fit this identity'),
  AGENT_CONTROL_UNTRUSTED: def('TRELLIS_AGENT_CONTROL_UNTRUSTED', 400, 'input', false, 'the control plane\'s certificate does not verify against --ca-file'),
  AGENT_DELTA_REFUSED: def('TRELLIS_AGENT_DELTA_REFUSED', 500, 'upstream', true, 'a config delta from the control plane does not fit; nothing changed'),
  AGENT_IDENTITY_CHANGED: def('TRELLIS_AGENT_IDENTITY_CHANGED', 500, 'upstream', false, 'the control plane issued a different SPIFFE ID than this agent holds'),
  AGENT_KEY_MISMATCH: def('TRELLIS_AGENT_KEY_MISMATCH', 500, 'internal', false, 'the private key does not belong to the certificate'),
  AGENT_NO_SPIFFE_ID: def('TRELLIS_AGENT_NO_SPIFFE_ID', 500, 'upstream', false, 'the certificate carries no SPIFFE ID'),
  AGENT_NO_TOKEN: def('TRELLIS_AGENT_NO_TOKEN', 400, 'input', false, 'no join token to bootstrap with (--token-file)'),
  AGENT_NO_TRUST: def('TRELLIS_AGENT_NO_TRUST', 400, 'input', false, 'no trust bundle for the first contact with the control plane: give --ca-file'),
  AGENT_NO_TRUST_DOMAIN: def('TRELLIS_AGENT_NO_TRUST_DOMAIN', 400, 'input', false, 'the trust domain cannot be learned from --ca-file or the credential'),
  AGENT_START_ABORTED: def('TRELLIS_AGENT_START_ABORTED', 500, 'internal', false, 'stopped before the first certificate arrived'),
  AGENT_TOKEN_FILE: def('TRELLIS_AGENT_TOKEN_FILE', 400, 'input', false, 'the --token-file cannot be read'),
  REDIRECT_APPLY_FAILED: def('TRELLIS_REDIRECT_APPLY_FAILED', 500, 'internal', false, 'iptables refused the redirect rules'),
  REDIRECT_BACKEND_MISSING: def('TRELLIS_REDIRECT_BACKEND_MISSING', 400, 'input', false, 'no usable iptables backend'),
  REDIRECT_CAPTURE_UNAVAILABLE: def('TRELLIS_REDIRECT_CAPTURE_UNAVAILABLE', 500, 'internal', false, 'this build cannot read the original destination, so the redirect is not installed'),
  REDIRECT_OPTIONS_INVALID: def('TRELLIS_REDIRECT_OPTIONS_INVALID', 400, 'input', false, 'invalid redirect options'),
  REDIRECT_READ_FAILED: def('TRELLIS_REDIRECT_READ_FAILED', 500, 'internal', false, 'the nat table cannot be read'),
  REDIRECT_ROLLBACK_FAILED: def('TRELLIS_REDIRECT_ROLLBACK_FAILED', 500, 'internal', false, 'installing the redirect failed and could not be rolled back'),

  // ── proxy/: HTTP failures a peer sees (trellis-error), tunnels, capture and listeners
  ADMIN_LISTEN_FAILED: def('TRELLIS_ADMIN_LISTEN_FAILED', 400, 'input', false, 'cannot listen on the admin port'),
  CAPTURE_NOT_REDIRECTED: def('TRELLIS_CAPTURE_NOT_REDIRECTED', 400, 'downstream', false, 'the connection was not redirected, so it has no original destination'),
  CAPTURE_ORIGINAL_DST_FAILED: def('TRELLIS_CAPTURE_ORIGINAL_DST_FAILED', 500, 'internal', false, 'the original destination cannot be read'),
  CAPTURE_UNAVAILABLE: def('TRELLIS_CAPTURE_UNAVAILABLE', 400, 'input', false, 'transparent capture is unavailable'),
  HTTP_APP_BAD_RESPONSE: def('TRELLIS_HTTP_APP_BAD_RESPONSE', 502, 'upstream', false, 'the app sent a malformed response'),
  HTTP_APP_CONNECT_TIMEOUT: def('TRELLIS_HTTP_APP_CONNECT_TIMEOUT', 504, 'upstream', false, 'connecting to the app timed out'),
  HTTP_APP_OVERLOADED: def('TRELLIS_HTTP_APP_OVERLOADED', 503, 'upstream', true, 'too many requests are waiting for an app connection'),
  HTTP_APP_RESET: def('TRELLIS_HTTP_APP_RESET', 502, 'upstream', false, 'the app closed the connection before responding'),
  HTTP_APP_TIMEOUT: def('TRELLIS_HTTP_APP_TIMEOUT', 504, 'upstream', false, 'the app sent nothing within the idle timeout'),
  HTTP_APP_UNAVAILABLE: def('TRELLIS_HTTP_APP_UNAVAILABLE', 503, 'upstream', false, 'the app refused the connection'),
  HTTP_BAD_PATH: def('TRELLIS_HTTP_BAD_PATH', 400, 'downstream', false, 'request path is not one the mesh can judge (see the path policy)'),
  HTTP_BAD_REQUEST: def('TRELLIS_HTTP_BAD_REQUEST', 400, 'downstream', false, 'malformed request'),
  HTTP_CIRCUIT_BREAKER_OPEN: def('TRELLIS_HTTP_CIRCUIT_BREAKER_OPEN', 503, 'upstream', false, 'a circuit-breaker limit of the destination is reached (the limit is named)'),
  HTTP_DEADLINE_EXCEEDED: def('TRELLIS_HTTP_DEADLINE_EXCEEDED', 504, 'downstream', false, 'the request\'s deadline (grpc-timeout) passed'),
  HTTP_DENIED: def('TRELLIS_HTTP_DENIED', 403, 'policy', false, 'denied by mesh policy'),
  HTTP_HEAD_TOO_LARGE: def('TRELLIS_HTTP_HEAD_TOO_LARGE', 431, 'downstream', false, 'request head exceeds the limit'),
  HTTP_LANE_UNAVAILABLE: def('TRELLIS_HTTP_LANE_UNAVAILABLE', 500, 'upstream', true, 'no HTTP lane to the destination'),
  HTTP_NOT_HTTP2: def('TRELLIS_HTTP_NOT_HTTP2', 505, 'downstream', false, 'this port is declared http2 or grpc: speak HTTP/2 with prior knowledge (h2c)'),
  HTTP_NO_ENDPOINT: def('TRELLIS_HTTP_NO_ENDPOINT', 503, 'upstream', false, 'the destination service has no endpoint'),
  HTTP_REQUEST_TIMEOUT: def('TRELLIS_HTTP_REQUEST_TIMEOUT', 408, 'downstream', false, 'the request was not received in time'),
  HTTP_UNKNOWN_DESTINATION: def('TRELLIS_HTTP_UNKNOWN_DESTINATION', 502, 'internal', false, 'no destination is known for this connection'),
  HTTP_UPGRADE_REFUSED: def('TRELLIS_HTTP_UPGRADE_REFUSED', 400, 'downstream', false, 'this upgrade protocol is not carried to this port'),
  HTTP_UPSTREAM_CONNECT_FAILED: def('TRELLIS_HTTP_UPSTREAM_CONNECT_FAILED', 503, 'upstream', true, 'no endpoint of the destination could be reached'),
  HTTP_UPSTREAM_RESET: def('TRELLIS_HTTP_UPSTREAM_RESET', 502, 'upstream', false, 'the destination sidecar reset the request'),
  HTTP_UPSTREAM_TIMEOUT: def('TRELLIS_HTTP_UPSTREAM_TIMEOUT', 504, 'upstream', false, 'the destination sent nothing within the idle timeout'),
  POLICY_UNREADABLE: def('TRELLIS_POLICY_UNREADABLE', 400, 'input', false, 'a policy file cannot be read'),
  // Refusals of a tunnel stream before an app byte moved; `trellis-reason` on the wire is the code's tail
  // in lower case (`TRELLIS_STREAM_POLICY_DENIED` → `policy-denied`, proxy/http/errors.ts `streamReason`).
  STREAM_APP_CONNECT_TIMEOUT: def('TRELLIS_STREAM_APP_CONNECT_TIMEOUT', 504, 'upstream', true, 'the app did not accept the connection in time'),
  STREAM_APP_REFUSED: def('TRELLIS_STREAM_APP_REFUSED', 503, 'upstream', true, 'the app refused the connection'),
  STREAM_APP_UNREACHABLE: def('TRELLIS_STREAM_APP_UNREACHABLE', 502, 'upstream', true, 'the app cannot be reached'),
  STREAM_BAD_TARGET: def('TRELLIS_STREAM_BAD_TARGET', 400, 'downstream', false, 'the tunnel stream names no destination'),
  STREAM_HTTP_NOT_SUPPORTED: def('TRELLIS_STREAM_HTTP_NOT_SUPPORTED', 501, 'downstream', false, 'this app port takes no HTTP requests'),
  STREAM_MISDIRECTED: def('TRELLIS_STREAM_MISDIRECTED', 421, 'downstream', false, 'this sidecar does not serve the destination'),
  STREAM_POLICY_DENIED: def('TRELLIS_STREAM_POLICY_DENIED', 403, 'policy', false, 'denied by mesh policy'),
  STREAM_UNKNOWN_PORT: def('TRELLIS_STREAM_UNKNOWN_PORT', 404, 'downstream', false, 'the destination has no such app port'),
  // Refusals of a zone ingress (proxy/ingress/): the caller's sidecar reads the reason and fails over.
  STREAM_NO_HEALTHY_ENDPOINT: def('TRELLIS_STREAM_NO_HEALTHY_ENDPOINT', 503, 'upstream', true, 'the zone has no healthy endpoint of the destination'),
  STREAM_UNKNOWN_SERVICE: def('TRELLIS_STREAM_UNKNOWN_SERVICE', 404, 'downstream', true, 'the zone serves no such service on that port'),
  STREAM_ZONE_NOT_ADMITTED: def('TRELLIS_STREAM_ZONE_NOT_ADMITTED', 403, 'policy', false, "the caller's zone is not admitted by this zone ingress"),
  STREAM_IDENTITY_REFUSED: def('TRELLIS_STREAM_IDENTITY_REFUSED', 403, 'policy', false, 'the caller is refused by this zone ingress'),
  PROXY_ALREADY_STARTED: def('TRELLIS_PROXY_ALREADY_STARTED', 500, 'internal', false, 'the sidecar was already started'),
  PROXY_IDENTITY_INVALID: def('TRELLIS_PROXY_IDENTITY_INVALID', 400, 'input', false, 'the workload identity cannot be used for TLS'),
  PROXY_FEDERATION_INVALID: def('TRELLIS_PROXY_FEDERATION_INVALID', 400, 'input', false, 'the federated trust bundles cannot be used'),
  PROXY_IDENTITY_UNREADABLE: def('TRELLIS_PROXY_IDENTITY_UNREADABLE', 400, 'input', false, 'the workload identity files cannot be read'),
  PROXY_LISTEN_FAILED: def('TRELLIS_PROXY_LISTEN_FAILED', 400, 'input', false, 'cannot listen on a proxy port'),
  PROXY_PORT_INVALID: def('TRELLIS_PROXY_PORT_INVALID', 400, 'input', false, 'not a port (1-65535)'),
  PROXY_STOPPED: def('TRELLIS_PROXY_STOPPED', 500, 'internal', false, 'the sidecar is stopped'),
  TUNNEL_CONNECT_TIMEOUT: def('TRELLIS_TUNNEL_CONNECT_TIMEOUT', 500, 'upstream', true, 'no tunnel session within the connect timeout'),
  TUNNEL_ENDPOINT_REMOVED: def('TRELLIS_TUNNEL_ENDPOINT_REMOVED', 500, 'upstream', true, 'the endpoint was removed from config'),
  TUNNEL_KEEPALIVE_TIMEOUT: def('TRELLIS_TUNNEL_KEEPALIVE_TIMEOUT', 500, 'upstream', false, 'no PING answer within the keepalive timeout'),
  TUNNEL_LISTEN_FAILED: def('TRELLIS_TUNNEL_LISTEN_FAILED', 400, 'input', false, 'cannot listen on the tunnel port'),
  TUNNEL_POOL_CLOSED: def('TRELLIS_TUNNEL_POOL_CLOSED', 500, 'internal', false, 'the tunnel pool is shutting down'),
  TUNNEL_UNREACHABLE: def('TRELLIS_TUNNEL_UNREACHABLE', 500, 'upstream', true, 'cannot open a tunnel session to the endpoint'),
  TUNNEL_INGRESS_REFUSED: def('TRELLIS_TUNNEL_INGRESS_REFUSED', 500, 'upstream', true, 'the zone ingress refused the stream (its trellis-reason says why)'),

  // ── gateway/: the mesh gateway's answers to clients outside the mesh, and its own files
  GATEWAY_BAD_REQUEST: def('TRELLIS_GATEWAY_BAD_REQUEST', 400, 'downstream', false, 'the request\'s host, path or framing cannot be routed safely'),
  GATEWAY_BODY_TOO_LARGE: def('TRELLIS_GATEWAY_BODY_TOO_LARGE', 413, 'downstream', false, 'the request body exceeds the route\'s limit'),
  GATEWAY_CERT_INVALID: def('TRELLIS_GATEWAY_CERT_INVALID', 400, 'input', false, 'a listener certificate or key cannot be read or used'),
  GATEWAY_CORS_REFUSED: def('TRELLIS_GATEWAY_CORS_REFUSED', 403, 'downstream', false, 'the origin, method or headers of a CORS preflight are not allowed by the route'),
  GATEWAY_DESTINATION_UNAVAILABLE: def('TRELLIS_GATEWAY_DESTINATION_UNAVAILABLE', 503, 'upstream', true, 'the route\'s mesh service is not known or has no instance yet'),
  GATEWAY_JWT_FORBIDDEN: def('TRELLIS_GATEWAY_JWT_FORBIDDEN', 403, 'downstream', false, 'the token is valid but lacks a claim the route requires'),
  GATEWAY_JWT_INVALID: def('TRELLIS_GATEWAY_JWT_INVALID', 401, 'downstream', false, 'the bearer token is missing, malformed, expired or not signed by a trusted key'),
  GATEWAY_JWKS_UNAVAILABLE: def('TRELLIS_GATEWAY_JWKS_UNAVAILABLE', 503, 'upstream', true, 'the keys that verify tokens for this route could not be loaded'),
  GATEWAY_NO_ROUTE: def('TRELLIS_GATEWAY_NO_ROUTE', 404, 'downstream', false, 'no route of this gateway matches the host and path'),
  GATEWAY_RELOAD_REFUSED: def('TRELLIS_GATEWAY_RELOAD_REFUSED', 409, 'input', false, 'a new gateway config cannot be put in force (a listener cannot bind, or the change needs a restart); the one in force stays'),
  GATEWAY_RATE_LIMITED: def('TRELLIS_GATEWAY_RATE_LIMITED', 429, 'downstream', true, 'the route\'s rate limit is reached; retry after the time given'),
  GATEWAY_TIMEOUT: def('TRELLIS_GATEWAY_TIMEOUT', 504, 'upstream', false, 'the mesh service did not answer within the route\'s timeout'),
  GATEWAY_UPSTREAM_FAILED: def('TRELLIS_GATEWAY_UPSTREAM_FAILED', 502, 'upstream', false, 'the gateway\'s sidecar path to the mesh failed'),

  // ── injector/: the admission webhook and its serving certificate
  INJECTOR_CERT_FILE: def('TRELLIS_INJECTOR_CERT_FILE', 400, 'input', false, 'a serving certificate file cannot be read or is too large'),
  INJECTOR_CERT_INVALID: def('TRELLIS_INJECTOR_CERT_INVALID', 400, 'input', false, 'the serving certificate, key or CA bundle is unusable'),
  INJECTOR_CONFIG_INVALID: def('TRELLIS_INJECTOR_CONFIG_INVALID', 400, 'input', false, 'invalid injector configuration'),
  INJECTOR_ISSUER_EXPIRED: def('TRELLIS_INJECTOR_ISSUER_EXPIRED', 400, 'input', false, 'the issuing CA expires before a serving certificate could be valid'),
  INJECTOR_KUBERNETES_VERSION: def('TRELLIS_INJECTOR_KUBERNETES_VERSION', 400, 'input', false, 'not a Kubernetes version (e.g. 1.30 or v1.30.2)'),
  INJECTOR_NAMESPACE_READ: def('TRELLIS_INJECTOR_NAMESPACE_READ', 500, 'upstream', true, "the pod's namespace cannot be read (Pod Security level, capture mode)"),
  INJECTOR_REVIEW_MALFORMED: def('TRELLIS_INJECTOR_REVIEW_MALFORMED', 400, 'downstream', false, 'malformed AdmissionReview'),
  INJECTOR_SERVING_NAME: def('TRELLIS_INJECTOR_SERVING_NAME', 400, 'input', false, 'not a usable serving certificate name'),
  INJECTOR_VERSION_UNKNOWN: def('TRELLIS_INJECTOR_VERSION_UNKNOWN', 500, 'upstream', true, 'the API server\'s version cannot be read'),
  INJECTOR_WEBHOOK_EMPTY: def('TRELLIS_INJECTOR_WEBHOOK_EMPTY', 500, 'upstream', false, 'the MutatingWebhookConfiguration has no webhooks'),
  INJECTOR_WEBHOOK_PATCH: def('TRELLIS_INJECTOR_WEBHOOK_PATCH', 500, 'upstream', true, 'the caBundle of the MutatingWebhookConfiguration cannot be updated'),
  INJECTOR_WEBHOOK_READ: def('TRELLIS_INJECTOR_WEBHOOK_READ', 500, 'upstream', true, 'the MutatingWebhookConfiguration cannot be read'),

  // ── policy/: policy files
  POLICY_INVALID: def('TRELLIS_POLICY_INVALID', 400, 'input', false, 'a policy is invalid or duplicated'),

  // ── cli/: command lines
  AGENT_PROXY_USER: def('TRELLIS_AGENT_PROXY_USER', 400, 'input', false, '--proxy-uid needs the agent to run as root'),
  CLI_BAD_ADDRESS: def('TRELLIS_CLI_BAD_ADDRESS', 400, 'input', false, 'not HOST:PORT'),
  CLI_BAD_ADMIN_TOKEN: def('TRELLIS_CLI_BAD_ADMIN_TOKEN', 400, 'input', false, 'the file does not hold an admin credential'),
  CLI_BAD_LOG_LEVEL: def('TRELLIS_CLI_BAD_LOG_LEVEL', 400, 'input', false, 'not a log level'),
  CLI_BAD_LABEL: def('TRELLIS_CLI_BAD_LABEL', 400, 'input', false, 'a --label is not KEY=VALUE with a Kubernetes label key and value'),
  CLI_BAD_UPSTREAM: def('TRELLIS_CLI_BAD_UPSTREAM', 400, 'input', false, 'an --upstream is not NAME=LOCALPORT or NS/NAME:PORT=HOST:LOCALPORT'),
  CLI_BAD_URL: def('TRELLIS_CLI_BAD_URL', 400, 'input', false, 'not a URL of the expected scheme'),
  CLI_EXISTS: def('TRELLIS_CLI_EXISTS', 400, 'input', false, 'the output file exists; nothing is overwritten'),
  CLI_INJECTOR_OPTIONS: def('TRELLIS_CLI_INJECTOR_OPTIONS', 400, 'input', false, 'invalid injector options'),
  CLI_NO_DIR: def('TRELLIS_CLI_NO_DIR', 400, 'input', false, 'the output directory does not exist'),
  CLI_NOT_A_DATA_DIR: def('TRELLIS_CLI_NOT_A_DATA_DIR', 400, 'input', false, 'the directory is not a control plane data directory'),
  CLI_UNREADABLE: def('TRELLIS_CLI_UNREADABLE', 400, 'input', false, 'a file named on the command line cannot be read'),
  CLI_USAGE: def('TRELLIS_CLI_USAGE', 400, 'input', false, 'the command line is not one this command accepts'),
  POLICY_DIR_UNREADABLE: def('TRELLIS_POLICY_DIR_UNREADABLE', 400, 'input', false, 'the policy directory cannot be read or holds too many files'),
  TOKEN_USES_INVALID: def('TRELLIS_TOKEN_USES_INVALID', 400, 'input', false, 'token uses must be a whole number within the limit'),

  // ── bench/
  BENCH_OPTIONS: def('TRELLIS_BENCH_OPTIONS', 400, 'input', false, 'invalid benchmark options'),
});

export type ErrorKey = keyof typeof ERRORS;
/** Every code as a string-literal union. */
export type ErrorCode = (typeof ERRORS)[ErrorKey]['code'];

/** `CODE.HTTP_DENIED === 'TRELLIS_HTTP_DENIED'`, typed as that literal. */
export const CODE: { readonly [K in ErrorKey]: (typeof ERRORS)[K]['code'] } = Object.freeze(
  Object.fromEntries(Object.entries(ERRORS).map(([key, info]) => [key, info.code])),
) as { readonly [K in ErrorKey]: (typeof ERRORS)[K]['code'] };

const BY_CODE: ReadonlyMap<string, ErrorCodeInfo> = new Map(Object.values(ERRORS).map((info) => [info.code, info]));

/** Every registered code, in registry order. */
export function allErrorCodes(): readonly ErrorCodeInfo[] {
  return [...BY_CODE.values()];
}

/** The registry entry of a code, or undefined for a code that is not ours (e.g. relayed from a peer). */
export function errorCodeInfo(code: string): ErrorCodeInfo | undefined {
  return BY_CODE.get(code);
}

/**
 * The one translation from a thrown value to the HTTP status a peer sees. Bad input (side `input`) is 400
 * whatever its code: a code raised both as bad input and as a refusal (IDENTITY_RESERVED when an operator
 * asks for a token, and when a workload asks for a certificate) keeps both answers. Otherwise the registry's
 * status of its code, else one chosen by its side (downstream 400, policy 403, anything else 500). Values
 * that are not coded errors are 500: a bug, whose details stay in the log. (A control API reply may
 * override the status of one response, e.g. 404 for an unknown token on the admin path; control/http-io.ts.)
 */
export function httpStatusOf(err: unknown): number {
  if (!(err instanceof TrellisError)) return 500;
  if (err.side === 'input') return 400;
  const info = BY_CODE.get(err.code);
  if (info !== undefined) return info.status;
  return err.side === 'downstream' ? 400 : err.side === 'policy' ? 403 : 500;
}
