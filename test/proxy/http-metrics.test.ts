import { describe, expect, it } from 'vitest';
import { Registry } from 'prom-client';
import { createHttpMetrics } from '../../proxy/http/metrics.js';

describe('HTTP metrics (plain per-route counts handed to prom-client)', () => {
  it('exposes counts per status class and a cumulative latency histogram in the Prometheus text format', async () => {
    const registry = new Registry();
    const metrics = createHttpMetrics(registry);
    metrics.record('outbound', 'ns/web', 'ns/api', 200, 0.0004);
    metrics.record('outbound', 'ns/web', 'ns/api', 204, 0.003);
    metrics.record('outbound', 'ns/web', 'ns/api', 503, 42);
    metrics.record('inbound', 'ns/web', 'ns/api', 404, 0.02);
    const text = await registry.metrics();
    expect(text).toContain('trellis_http_requests_total{direction="outbound",source="ns/web",destination="ns/api",status_class="2xx"} 2');
    expect(text).toContain('trellis_http_requests_total{direction="outbound",source="ns/web",destination="ns/api",status_class="5xx"} 1');
    expect(text).toContain('trellis_http_requests_total{direction="inbound",source="ns/web",destination="ns/api",status_class="4xx"} 1');
    expect(text).not.toMatch(/status_class="1xx"/);
    expect(text).toContain('# TYPE trellis_http_request_duration_seconds histogram');
    expect(text).toContain('trellis_http_request_duration_seconds_bucket{le="0.0005",direction="outbound",source="ns/web",destination="ns/api"} 1');
    expect(text).toContain('trellis_http_request_duration_seconds_bucket{le="0.005",direction="outbound",source="ns/web",destination="ns/api"} 2');
    expect(text).toContain('trellis_http_request_duration_seconds_bucket{le="30",direction="outbound",source="ns/web",destination="ns/api"} 2');
    expect(text).toContain('trellis_http_request_duration_seconds_bucket{le="+Inf",direction="outbound",source="ns/web",destination="ns/api"} 3');
    expect(text).toContain('trellis_http_request_duration_seconds_count{direction="outbound",source="ns/web",destination="ns/api"} 3');
    expect(text).toMatch(/trellis_http_request_duration_seconds_sum\{direction="outbound",source="ns\/web",destination="ns\/api"\} 42\.0034/);
  });

  it('counts what arrives between scrapes once, and adds on to what was scraped', async () => {
    const registry = new Registry();
    const metrics = createHttpMetrics(registry);
    metrics.record('outbound', 'a/b', 'c/d', 200, 0.001);
    await registry.metrics();
    expect(await registry.metrics()).toContain('status_class="2xx"} 1');
    metrics.record('outbound', 'a/b', 'c/d', 200, 0.001);
    const json = await registry.getMetricsAsJSON();
    const requests = json.find((m) => m.name === 'trellis_http_requests_total');
    expect(requests?.values.find((v) => v.labels.status_class === '2xx')?.value).toBe(2);
    const latency = json.find((m) => m.name === 'trellis_http_request_duration_seconds');
    expect(latency?.values.find((v) => (v as { metricName?: string }).metricName === 'trellis_http_request_duration_seconds_count')?.value).toBe(2);
  });

  it('ignores a duration that is not a finite number instead of poisoning the sum', async () => {
    const registry = new Registry();
    const metrics = createHttpMetrics(registry);
    metrics.record('inbound', 'a/b', 'c/d', 200, Number.NaN);
    metrics.record('inbound', 'a/b', 'c/d', 200, 0.5);
    const text = await registry.metrics();
    expect(text).toContain('trellis_http_request_duration_seconds_count{direction="inbound",source="a/b",destination="c/d"} 1');
    expect(text).toContain('status_class="2xx"} 2');
  });
});
