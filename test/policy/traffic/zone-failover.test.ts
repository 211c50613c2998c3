/**
 * ZoneFailover: validation (bad input refused with file:line:column, conflicting rules refused whole,
 * naming both) and resolution (service over namespace over mesh-wide, a rule for the caller's zone over
 * one for every zone, the caller's own zone first unless the order names it).
 */
import { describe, expect, it } from 'vitest';
import { configIssuesOf, formatConfigIssue } from '../../../common/config-issues.js';
import { compileTraffic, parseTrafficFiles, validateTrafficObjects, type ZoneFailover } from '../../../policy/traffic/index.js';
import { parsePolicyAndTraffic } from '../../../policy/policy-loader.js';

const doc = (name: string, namespace: string, spec: string): string => `apiVersion: trellis.dev/v1alpha1\nkind: ZoneFailover\nmetadata: { name: ${name}, namespace: ${namespace} }\nspec:\n${spec}`;
const rule = (spec: string): string => doc('f', 'shop', `  destination: orders\n${spec}`);

function errorsOf(...texts: string[]): string[] {
  try {
    parseTrafficFiles(texts.map((text, i) => ({ path: `f${i}.yaml`, text })));
  } catch (err) {
    const issues = configIssuesOf(err);
    if (issues.length === 0) throw err;
    return issues.map(formatConfigIssue);
  }
  return [];
}

describe('ZoneFailover validation', () => {
  it('parses into frozen data, threshold defaulted, that validates again as shipped', () => {
    const [f] = parseTrafficFiles([{ path: 'f.yaml', text: rule('  order: [east, west, "*"]\n  from: [east, north]\n') }]) as [ZoneFailover];
    expect(f.spec).toEqual({ destination: 'orders', order: ['east', 'west', '*'], threshold: '50%', from: ['east', 'north'] });
    expect(Object.isFrozen(f.spec.order)).toBe(true);
    expect(validateTrafficObjects(JSON.parse(JSON.stringify([f])) as unknown[], 'snapshot')).toEqual([f]);
  });

  it.each([
    ['no order', rule('  threshold: "50%"\n'), 'f0.yaml:4:1: spec: missing required field "order"'],
    ['an empty order', rule('  order: []\n'), 'f0.yaml:6:10: spec.order: must not be empty'],
    ['a zone twice', rule('  order: [east, west, east]\n'), 'f0.yaml:6:23: spec.order[2]: "east" is listed twice'],
    ['"*" twice', rule('  order: ["*", east, "*"]\n'), 'spec.order[2]: "*" is listed twice'],
    ['a zone that is no DNS label', rule('  order: [East_1]\n'), 'f0.yaml:6:11: spec.order[0]: expected a zone name (a DNS label) or "*", got "East_1"'],
    ['a threshold without %', rule('  order: [east]\n  threshold: "50"\n'), 'f0.yaml:7:14: spec.threshold: expected a percentage from "0%" to "100%", got "50"'],
    ['a threshold over 100%', rule('  order: [east]\n  threshold: "100.5%"\n'), 'spec.threshold: expected a percentage from "0%" to "100%", got "100.5%"'],
    ['a number for threshold', rule('  order: [east]\n  threshold: 50\n'), 'f0.yaml:7:14: spec.threshold: expected a percentage such as "50%", got the number 50'],
    ['"*" in from', rule('  order: [east]\n  from: ["*"]\n'), 'spec.from[0]: "*" is not a zone here'],
    ['an empty from', rule('  order: [east]\n  from: []\n'), 'spec.from: must not be empty'],
    ['too many zones', rule(`  order: [${Array.from({ length: 33 }, (_, i) => `z${i}`).join(', ')}]\n`), 'spec.order: expected at most 32 items, got 33'],
    ['an unknown field', rule('  order: [east]\n  failover: [west]\n'), 'f0.yaml:7:3: spec.failover: unknown field'],
    ['a destination in another namespace', doc('f', 'shop', '  destination: bank/orders\n  order: [east]\n'), 'spec.destination: expected a service of this namespace'],
  ])('refuses %s with file:line:column', (_name, text, expected) => {
    expect(errorsOf(text).join('\n')).toContain(expected);
  });

  it('refuses two rules for the same callers of one destination, naming both, and the whole set with them', () => {
    const a = rule('  order: [east, west]\n');
    const b = doc('g', 'shop', '  destination: orders\n  order: [west, east]\n');
    const errors = errorsOf(`${a}---\n${doc('ok', 'shop', '  destination: payments\n  order: [east]\n')}`, b);
    expect(errors).toEqual([
      'f1.yaml:3:19: metadata.name: ZoneFailover shop/g conflicts with ZoneFailover shop/f (f0.yaml:3:19): both set the failover of "orders" in shop for callers in every zone; give them different "from" zones or merge them',
    ]);
    // Overlapping "from" lists conflict on the zone they share; disjoint ones, or one with "from" and one without, do not.
    expect(errorsOf(rule('  order: [east]\n  from: [east, west]\n'), doc('g', 'shop', '  destination: orders\n  order: [west]\n  from: [north, west]\n')).join('\n')).toContain('for callers in zone west');
    expect(errorsOf(rule('  order: [east]\n  from: [east]\n'), doc('g', 'shop', '  destination: orders\n  order: [west]\n  from: [west]\n'), doc('h', 'shop', '  destination: orders\n  order: [north]\n'))).toEqual([]);
    // The same names in different namespaces, or a service rule beside the namespace's "*", do not either.
    expect(errorsOf(rule('  order: [east]\n'), doc('f', 'bank', '  destination: orders\n  order: [east]\n'), doc('all', 'shop', '  destination: "*"\n  order: [west]\n'))).toEqual([]);
  });

  it('refuses a conflict in objects sent as traffic resources (a snapshot), too', () => {
    const object = (name: string): unknown => ({ apiVersion: 'trellis.dev/v1alpha1', kind: 'ZoneFailover', metadata: { name, namespace: 'shop' }, spec: { destination: '*', order: ['east'], threshold: '50%' } });
    expect(() => validateTrafficObjects([object('a'), object('b')], 'snapshot')).toThrow(/snapshot: \[1\]\.metadata\.name: ZoneFailover shop\/b conflicts with ZoneFailover shop\/a/);
  });

  it('refuses a policy directory whole when its ZoneFailovers conflict (permissions included)', () => {
    const permission = 'apiVersion: trellis.dev/v1alpha1\nkind: TrafficPermission\nmetadata: { name: p, namespace: shop }\nspec:\n  destination: orders\n  rules: [{ action: allow, from: [frontend] }]\n';
    expect(() => parsePolicyAndTraffic([{ path: 'p.yaml', text: permission }, { path: 'f.yaml', text: `${rule('  order: [east]\n')}---\n${doc('g', 'shop', '  destination: orders\n  order: [west]\n')}` }])).toThrow(/conflicts with ZoneFailover shop\/f/);
    expect(parsePolicyAndTraffic([{ path: 'p.yaml', text: permission }, { path: 'f.yaml', text: rule('  order: [east]\n') }]).traffic).toHaveLength(1);
  });
});

describe('ZoneFailover resolution', () => {
  const table = compileTraffic(
    parseTrafficFiles([
      {
        path: 'f.yaml',
        text: [
          doc('mesh', 'trellis-system', '  destination: "*"\n  order: [east, west, "*"]\n  threshold: "30%"\n'),
          doc('shop-all', 'shop', '  destination: "*"\n  order: [north, "*"]\n'),
          doc('orders', 'shop', '  destination: orders\n  order: [west, "*"]\n  threshold: "75%"\n'),
          doc('orders-from-north', 'shop', '  destination: orders\n  order: [south, north]\n  from: [north]\n'),
        ].join('---\n'),
      },
    ]),
  );

  it('takes the service rule, then the namespace rule, then the mesh-wide one', () => {
    expect(table.failover.resolve('east', 'shop', 'orders')).toEqual({ order: ['east', 'west', '*'], threshold: 0.75, source: 'shop/orders' });
    expect(table.failover.resolve('east', 'shop', 'payments')).toEqual({ order: ['east', 'north', '*'], threshold: 0.5, source: 'shop/shop-all' });
    expect(table.failover.resolve('central', 'bank', 'ledger')).toEqual({ order: ['central', 'east', 'west', '*'], threshold: 0.3, source: 'trellis-system/mesh' });
  });

  it('prefers the rule for the caller\'s zone, and keeps an order that names the caller\'s zone as written', () => {
    expect(table.failover.resolve('north', 'shop', 'orders')).toEqual({ order: ['south', 'north'], threshold: 0.5, source: 'shop/orders-from-north' });
    // The mesh-wide order names west: a caller in west tries east first, as the operator wrote it.
    expect(table.failover.resolve('west', 'bank', 'ledger')?.order).toEqual(['east', 'west', '*']);
  });

  it('has no rule without resources, and reads "*" in another root namespace as mesh-wide', () => {
    expect(compileTraffic([]).failover.resolve('east', 'shop', 'orders')).toBeUndefined();
    const other = compileTraffic(parseTrafficFiles([{ path: 'f.yaml', text: doc('mesh', 'mesh-root', '  destination: "*"\n  order: [west]\n') }]), { rootNamespace: 'mesh-root' });
    expect(other.failover.resolve('east', 'bank', 'ledger')?.source).toBe('mesh-root/mesh');
    expect(compileTraffic(other.resources).failover.resolve('east', 'bank', 'ledger')).toBeUndefined();
  });
});
