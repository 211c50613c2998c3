/**
 * AdmissionReview `admission.k8s.io/v1`: the request the API server sends and the response it expects.
 * Parsing checks only what the webhook relies on and says exactly what is missing; the response always
 * echoes the request's `uid` (the API server rejects a response with another uid) and carries the patch
 * as base64 JSON with `patchType: JSONPatch`.
 */
import type { V1Pod } from '@kubernetes/client-node';
import { TrellisError } from '../common/errors.js';
import type { JsonPatchOperation } from './json-patch.js';
import { CODE } from '../common/error-codes.js';

export const ADMISSION_API_VERSION = 'admission.k8s.io/v1';

export interface GroupVersionResource {
  readonly group: string;
  readonly version: string;
  readonly resource: string;
}

export interface AdmissionRequest {
  readonly uid: string;
  readonly kind: { readonly group: string; readonly version: string; readonly kind: string };
  readonly resource: GroupVersionResource;
  readonly subResource?: string;
  readonly name?: string;
  readonly namespace?: string;
  readonly operation: 'CREATE' | 'UPDATE' | 'DELETE' | 'CONNECT';
  readonly object?: unknown;
  readonly dryRun?: boolean;
}

export interface AdmissionReviewRequest {
  readonly apiVersion: typeof ADMISSION_API_VERSION;
  readonly kind: 'AdmissionReview';
  readonly request: AdmissionRequest;
}

export interface AdmissionResponse {
  readonly uid: string;
  readonly allowed: boolean;
  readonly patchType?: 'JSONPatch';
  readonly patch?: string;
  readonly status?: { readonly code: number; readonly reason: string; readonly message: string };
  readonly warnings?: readonly string[];
}

export interface AdmissionReviewResponse {
  readonly apiVersion: typeof ADMISSION_API_VERSION;
  readonly kind: 'AdmissionReview';
  readonly response: AdmissionResponse;
}

/** The API server shows at most this many warnings, each at most 120 characters of "useful" length. */
const MAX_WARNINGS = 10;

function malformed(message: string): TrellisError {
  return new TrellisError(CODE.INJECTOR_REVIEW_MALFORMED, `malformed AdmissionReview: ${message}`, { side: 'downstream' });
}

function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** Validates the parts of a parsed JSON body the webhook uses; throws TRELLIS_INJECTOR_REVIEW_MALFORMED. */
export function parseAdmissionReview(body: unknown): AdmissionReviewRequest {
  if (!isObject(body)) throw malformed('the body is not a JSON object');
  if (body.apiVersion !== ADMISSION_API_VERSION) throw malformed(`apiVersion is ${JSON.stringify(body.apiVersion)}, expected "${ADMISSION_API_VERSION}"`);
  if (body.kind !== 'AdmissionReview') throw malformed(`kind is ${JSON.stringify(body.kind)}, expected "AdmissionReview"`);
  const request = body.request;
  if (!isObject(request)) throw malformed('"request" is missing');
  if (typeof request.uid !== 'string' || request.uid === '') throw malformed('request.uid is missing');
  if (!isObject(request.kind) || typeof request.kind.kind !== 'string') throw malformed('request.kind is missing');
  if (!isObject(request.resource) || typeof request.resource.resource !== 'string') throw malformed('request.resource is missing');
  if (!['CREATE', 'UPDATE', 'DELETE', 'CONNECT'].includes(request.operation as string)) throw malformed(`request.operation ${JSON.stringify(request.operation)} is not one of CREATE, UPDATE, DELETE, CONNECT`);
  if (request.dryRun !== undefined && typeof request.dryRun !== 'boolean') throw malformed('request.dryRun must be a boolean');
  if (request.namespace !== undefined && typeof request.namespace !== 'string') throw malformed('request.namespace must be a string');
  return body as unknown as AdmissionReviewRequest;
}

/** True for a pod creation, the only request this webhook mutates. */
export function isPodCreate(request: AdmissionRequest): boolean {
  return request.operation === 'CREATE' && request.resource.group === '' && request.resource.resource === 'pods' && (request.subResource ?? '') === '';
}

/** Checks the pod object's shape enough that the mutation can index it safely. */
export function podOf(request: AdmissionRequest): V1Pod {
  const object = request.object;
  if (!isObject(object)) throw malformed('request.object is missing for a pod CREATE');
  const spec = object.spec;
  if (!isObject(spec)) throw malformed('request.object.spec is missing');
  for (const field of ['containers', 'initContainers'] as const) {
    const list = spec[field];
    if (list == null && field === 'initContainers') continue;
    if (!Array.isArray(list)) throw malformed(`request.object.spec.${field} must be a list`);
    list.forEach((c: unknown, i) => {
      if (!isObject(c) || typeof c.name !== 'string') throw malformed(`request.object.spec.${field}[${i}] has no name`);
    });
  }
  if (spec.volumes != null && !Array.isArray(spec.volumes)) throw malformed('request.object.spec.volumes must be a list');
  if (object.metadata != null && !isObject(object.metadata)) throw malformed('request.object.metadata must be an object');
  return object as V1Pod;
}

function review(response: AdmissionResponse): AdmissionReviewResponse {
  return { apiVersion: ADMISSION_API_VERSION, kind: 'AdmissionReview', response };
}

function capWarnings(warnings: readonly string[] | undefined): { warnings?: readonly string[] } {
  if (warnings === undefined || warnings.length === 0) return {};
  return { warnings: warnings.slice(0, MAX_WARNINGS) };
}

export function allowResponse(uid: string, patch?: readonly JsonPatchOperation[], warnings?: readonly string[]): AdmissionReviewResponse {
  if (patch === undefined || patch.length === 0) return review({ uid, allowed: true, ...capWarnings(warnings) });
  return review({ uid, allowed: true, patchType: 'JSONPatch', patch: Buffer.from(JSON.stringify(patch)).toString('base64'), ...capWarnings(warnings) });
}

export function denyResponse(uid: string, message: string): AdmissionReviewResponse {
  return review({ uid, allowed: false, status: { code: 403, reason: 'Forbidden', message } });
}
