/**
 * Helpers for injector tests: load fixture AdmissionReviews, decode a response's patch, apply it with
 * fast-json-patch (as the API server applies it), and validate a pod with kubernetes-models' published
 * Pod schema.
 */
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import jsonpatch from 'fast-json-patch';
import { Pod } from 'kubernetes-models/v1';
import { Registry } from 'prom-client';
import * as k8s from '@kubernetes/client-node';
import type { V1Container, V1Pod } from '@kubernetes/client-node';
import type { AdmissionReviewResponse } from '../../injector/admission-review.js';
import type { EventSink, SkipReport } from '../../injector/events.js';
import { createInjectorMetrics, type InjectorMetrics } from '../../injector/metrics.js';
import { silentLogger } from '../../common/log.js';
import type { AdmissionHandlerDeps } from '../../injector/admission-handler.js';
import type { InjectorConfig } from '../../injector/config.js';
import { namespaceFacts } from '../../injector/namespace-facts.js';

const FIXTURES = join(dirname(fileURLToPath(import.meta.url)), 'fixtures');

export interface Review {
  apiVersion: string;
  kind: string;
  request: { uid: string; namespace?: string; dryRun?: boolean; operation: string; object: V1Pod; [key: string]: unknown };
}

export function loadReview(name: string): Review {
  return JSON.parse(readFileSync(join(FIXTURES, name), 'utf8')) as Review;
}

export function decodePatch(review: AdmissionReviewResponse): jsonpatch.Operation[] {
  const patch = review.response.patch;
  if (patch === undefined) return [];
  return JSON.parse(Buffer.from(patch, 'base64').toString('utf8')) as jsonpatch.Operation[];
}

/** Applies the patch as the API server would (validating each operation) to a copy of the pod. */
export function applyPatch(pod: V1Pod, ops: readonly jsonpatch.Operation[]): V1Pod {
  return jsonpatch.applyPatch(structuredClone(pod), [...ops], true, false).newDocument;
}

type AttributeMap = { name: string; baseName: string; type: string }[];
const MODELS = k8s as unknown as Record<string, { getAttributeTypeMap?: () => AttributeMap } | undefined>;

/**
 * Unknown fields, found by walking the API's type map as published in @kubernetes/client-node's models
 * (the OpenAPI definitions it is generated from). kubernetes-models' schemas allow unknown fields, which
 * the API server drops silently (or refuses, with kubectl's default strict field validation).
 */
export function unknownFields(value: unknown, type: string, path = '$'): string[] {
  if (value === null || value === undefined) return [];
  const array = /^Array<(.+)>$/.exec(type);
  if (array !== null) return Array.isArray(value) ? value.flatMap((item, i) => unknownFields(item, array[1] as string, `${path}[${i}]`)) : [];
  const map = /^\{ \[key: string\]: (.+); \}$/.exec(type);
  if (map !== null) return Object.entries(value as Record<string, unknown>).flatMap(([k, v]) => unknownFields(v, map[1] as string, `${path}.${k}`));
  const model = MODELS[type]?.getAttributeTypeMap;
  if (model === undefined || typeof value !== 'object') return [];
  const attributes = model.call(MODELS[type]);
  const out: string[] = [];
  for (const [key, child] of Object.entries(value as Record<string, unknown>)) {
    const attribute = attributes.find((a) => a.baseName === key);
    if (attribute === undefined) out.push(`${path}.${key}`);
    else out.push(...unknownFields(child, attribute.type, `${path}.${key}`));
  }
  return out;
}

/** Throws with the schema's errors when the pod is not a valid Kubernetes Pod, or has unknown fields. */
export function validatePod(pod: V1Pod): void {
  new Pod(pod as ConstructorParameters<typeof Pod>[0]).validate();
  const unknown = unknownFields(pod, 'V1Pod');
  if (unknown.length > 0) throw new Error(`unknown fields in the pod: ${unknown.join(', ')}`);
}

export class CollectingSink implements EventSink {
  readonly reports: SkipReport[] = [];
  report(event: SkipReport): void {
    this.reports.push(event);
  }
}

export interface TestDeps extends AdmissionHandlerDeps {
  readonly registry: Registry;
  readonly sink: CollectingSink;
  readonly metrics: InjectorMetrics;
}

export function testDeps(config: InjectorConfig, namespaceLabels: Readonly<Record<string, string>> = {}): TestDeps {
  const registry = new Registry();
  const sink = new CollectingSink();
  const namespaces = { facts: () => Promise.resolve(namespaceFacts(namespaceLabels)) };
  return { config: () => config, metrics: createInjectorMetrics(registry), events: sink, logger: silentLogger(), registry, sink, namespaces };
}

export async function metricValue(registry: Registry, name: string, labels: Record<string, string>): Promise<number> {
  const metric = (await registry.getMetricsAsJSON()).find((m) => m.name === name);
  const value = (metric?.values ?? []).find((v) => Object.entries(labels).every(([k, l]) => (v.labels as Record<string, unknown>)[k] === l));
  return value?.value ?? 0;
}

export function container(pod: V1Pod, name: string): V1Container | undefined {
  return [...(pod.spec?.initContainers ?? []), ...(pod.spec?.containers ?? [])].find((c) => c.name === name);
}

/** The review the API server sends on reinvocation or for a pod created from an injected template. */
export function resubmit(review: Review, pod: V1Pod): Review {
  return { ...review, request: { ...review.request, uid: `${review.request.uid}-again`, object: pod } };
}
