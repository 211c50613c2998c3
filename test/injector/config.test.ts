/**
 * Parsers at the injector's edges: its configuration (every error at once), Kubernetes versions as
 * clusters report them, the pod annotations, and port-name protocols.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { createInjectorConfig, parseKubernetesVersion, supportsNativeSidecars } from '../../injector/config.js';
import { parseCidr, parsePodInjectionOptions } from '../../injector/annotations.js';
import { protocolFromName } from '../../injector/app-ports.js';
import { escapePointerSegment, pointer } from '../../injector/json-patch.js';

const PEM = '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n';

describe('injector configuration', () => {
  it('reports every problem in one error', () => {
    try {
      createInjectorConfig({ image: '', controlUrl: 'http://x', trustBundlePem: '', proxyUid: 0, tokenExpirationSeconds: 172_800, ports: { status: 15001 }, sidecarResources: { requests: { cpu: 'lots' } } });
      expect.unreachable();
    } catch (err) {
      const message = (err as Error).message;
      expect((err as { code: string }).code).toBe('TRELLIS_INJECTOR_CONFIG_INVALID');
      for (const part of ['image: required', 'must be an https:// URL', 'trustBundlePem', 'proxyUid: 0', 'tokenExpirationSeconds: 172800', 'must all differ', '"lots" is not a Kubernetes quantity']) {
        expect(message).toContain(part);
      }
    }
  });

  it('applies defaults and freezes', () => {
    const config = createInjectorConfig({ image: 'trellis:1', controlUrl: 'https://c:15012', trustBundlePem: PEM });
    expect(config.proxyUid).toBe(1337);
    expect(config.tokenExpirationSeconds).toBe(43_200);
    expect(config.excludedNamespaces.has('kube-system')).toBe(true);
    expect(Object.isFrozen(config)).toBe(true);
    expect(Object.isFrozen(config.ports)).toBe(true);
  });
});

describe('Kubernetes versions', () => {
  it('parses what operators and API servers write', () => {
    expect(parseKubernetesVersion('1.29')).toEqual({ major: 1, minor: 29 });
    expect(parseKubernetesVersion('v1.30.2')).toEqual({ major: 1, minor: 30 });
    expect(parseKubernetesVersion('v1.28.9-eks-036c24b')).toEqual({ major: 1, minor: 28 });
    expect(parseKubernetesVersion('1', '31')).toEqual({ major: 1, minor: 31 });
    expect(() => parseKubernetesVersion('latest')).toThrow(/not a Kubernetes version/);
  });

  it('uses native sidecars from 1.29 on', () => {
    expect(supportsNativeSidecars({ major: 1, minor: 28 })).toBe(false);
    expect(supportsNativeSidecars({ major: 1, minor: 29 })).toBe(true);
    expect(supportsNativeSidecars({ major: 2, minor: 0 })).toBe(true);
  });
});

describe('pod annotations', () => {
  it('parses lists with spaces and duplicates', () => {
    const { options, errors } = parsePodInjectionOptions({
      'trellis.dev/exclude-inbound-ports': '8080, 8080,9090',
      'trellis.dev/exclude-outbound-cidrs': '10.0.0.0/8, 2001:db8::1',
      'trellis.dev/port-protocols': '8080=http, 9000=tcp',
      'trellis.dev/sidecar-mode': 'classic',
    });
    expect(errors).toEqual([]);
    expect(options.excludeInboundPorts).toEqual([8080, 9090]);
    expect(options.excludeOutboundCidrs).toEqual(['10.0.0.0/8', '2001:db8::1/128']);
    expect([...options.portProtocols]).toEqual([
      [8080, 'http'],
      [9000, 'tcp'],
    ]);
    expect(options.sidecarMode).toBe('classic');
  });

  it('reports each malformed value', () => {
    const { errors } = parsePodInjectionOptions({ 'trellis.dev/exclude-inbound-ports': '0,65536', 'trellis.dev/port-protocols': '80=udp', 'trellis.dev/sidecar-mode': 'ambient' });
    expect(errors).toHaveLength(4);
  });

  it('accepts exactly the valid CIDRs', () => {
    expect(parseCidr('192.168.0.0/16')).toBe('192.168.0.0/16');
    expect(parseCidr('fd00::/129')).toBeNull();
    expect(parseCidr('10.0.0.0/8/8')).toBeNull();
    expect(parseCidr('example.com')).toBeNull();
  });
});

describe('port protocols from names', () => {
  it('follows the http/http-* and tcp-* conventions; everything else is TCP', () => {
    expect(protocolFromName('http')).toBe('http');
    expect(protocolFromName('http-web')).toBe('http');
    expect(protocolFromName('HTTP-Admin')).toBe('http');
    expect(protocolFromName('http2')).toBe('http2');
    expect(protocolFromName('grpc')).toBe('grpc');
    expect(protocolFromName('tcp-db')).toBe('tcp');
    expect(protocolFromName(undefined)).toBe('tcp');
  });
});

describe('JSON pointers', () => {
  it('escape ~ and / and round-trip through unescaping', () => {
    expect(pointer('metadata', 'annotations', 'trellis.dev/status')).toBe('/metadata/annotations/trellis.dev~1status');
    expect(escapePointerSegment('a~/b')).toBe('a~0~1b');
    fc.assert(
      fc.property(fc.string(), (segment) => {
        const escaped = escapePointerSegment(segment);
        expect(escaped.includes('/')).toBe(false);
        expect(escaped.replace(/~1/g, '/').replace(/~0/g, '~')).toBe(segment);
      }),
    );
  });
});
