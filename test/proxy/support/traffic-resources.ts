/**
 * What the traffic-management tests share: a resource of one kind for one destination of `shop` as YAML,
 * and the sum of a metric's values whose labels include the given ones.
 */
import type { Registry } from 'prom-client';

export function trafficResource(kind: string, destination: string, spec: string): string {
  return `---
apiVersion: trellis.dev/v1alpha1
kind: ${kind}
metadata: { name: ${destination}-${kind.toLowerCase()}, namespace: shop }
spec:
  destination: ${destination}
${spec}`;
}

export async function metricSum(registry: Registry, name: string, labels: Record<string, string> = {}): Promise<number> {
  const all = await registry.getMetricsAsJSON();
  const m = all.find((x) => x.name === name) as { values: { value: number; labels: Record<string, string | number> }[] } | undefined;
  let sum = 0;
  for (const v of m?.values ?? []) if (Object.entries(labels).every(([k, val]) => String(v.labels[k]) === val)) sum += v.value;
  return sum;
}
