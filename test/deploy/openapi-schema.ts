/**
 * A small validator for the OpenAPI v3 subset that Kubernetes CRDs use (structural schemas), written for
 * these tests because no installed package validates CRD schemas the way the API server does: ajv would
 * need the Kubernetes extensions (`x-kubernetes-*`) and the special treatment of `metadata` taught to it.
 *
 * What it checks, as the API server does with `kubectl apply` (field validation Strict, the default):
 * type, properties, required, unknown fields (an error, not silently pruned), additionalProperties, items,
 * enum, pattern, min/maxLength, min/maxItems, min/maxProperties, minimum/maximum, nullable,
 * x-kubernetes-int-or-string, x-kubernetes-preserve-unknown-fields and x-kubernetes-list-type: set. At the root, `metadata` is
 * ObjectMeta: only the fields the schema restricts (name, generateName) are checked.
 * `structuralProblems` reports what makes a schema non-structural (a node without a type, ...).
 */

export interface JsonSchemaProps {
  readonly type?: 'object' | 'array' | 'string' | 'integer' | 'number' | 'boolean';
  readonly properties?: Readonly<Record<string, JsonSchemaProps>>;
  readonly required?: readonly string[];
  readonly additionalProperties?: boolean | JsonSchemaProps;
  readonly items?: JsonSchemaProps;
  readonly enum?: readonly unknown[];
  readonly pattern?: string;
  readonly minLength?: number;
  readonly maxLength?: number;
  readonly minItems?: number;
  readonly maxItems?: number;
  readonly minProperties?: number;
  readonly maxProperties?: number;
  readonly minimum?: number;
  readonly maximum?: number;
  readonly nullable?: boolean;
  readonly default?: unknown;
  readonly description?: string;
  readonly 'x-kubernetes-int-or-string'?: boolean;
  readonly 'x-kubernetes-preserve-unknown-fields'?: boolean;
  /** `set`: scalar items, each at most once (the API server refuses a duplicate). */
  readonly 'x-kubernetes-list-type'?: 'atomic' | 'set' | 'map';
}

function typeOf(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'array';
  if (Number.isInteger(value)) return 'integer';
  return typeof value;
}

function validateNode(schema: JsonSchemaProps, value: unknown, path: string, errors: string[], isRoot: boolean): void {
  if (value === null) {
    if (schema.nullable !== true) errors.push(`${path}: must not be null`);
    return;
  }
  if (schema['x-kubernetes-int-or-string'] === true) {
    if (typeof value !== 'string' && !Number.isInteger(value)) errors.push(`${path}: must be an integer or a string`);
    return;
  }
  const actual = typeOf(value);
  if (schema.type !== undefined) {
    const ok = schema.type === actual || (schema.type === 'number' && actual === 'integer');
    if (!ok) {
      errors.push(`${path}: must be of type ${schema.type}, got ${actual}`);
      return;
    }
  }
  if (schema.enum !== undefined && !schema.enum.some((e) => e === value)) errors.push(`${path}: must be one of ${schema.enum.map((e) => JSON.stringify(e)).join(', ')}, got ${JSON.stringify(value)}`);
  if (typeof value === 'string') {
    if (schema.minLength !== undefined && value.length < schema.minLength) errors.push(`${path}: must be at least ${schema.minLength} characters`);
    if (schema.maxLength !== undefined && value.length > schema.maxLength) errors.push(`${path}: must be at most ${schema.maxLength} characters`);
    if (schema.pattern !== undefined && !new RegExp(schema.pattern, 'u').test(value)) errors.push(`${path}: ${JSON.stringify(value)} does not match ${schema.pattern}`);
  }
  if (typeof value === 'number') {
    if (schema.minimum !== undefined && value < schema.minimum) errors.push(`${path}: must be at least ${schema.minimum}`);
    if (schema.maximum !== undefined && value > schema.maximum) errors.push(`${path}: must be at most ${schema.maximum}`);
  }
  if (Array.isArray(value)) {
    if (schema.minItems !== undefined && value.length < schema.minItems) errors.push(`${path}: must have at least ${schema.minItems} items`);
    if (schema.maxItems !== undefined && value.length > schema.maxItems) errors.push(`${path}: must have at most ${schema.maxItems} items`);
    if (schema.items !== undefined) value.forEach((item, i) => validateNode(schema.items as JsonSchemaProps, item, `${path}[${i}]`, errors, false));
    if (schema['x-kubernetes-list-type'] === 'set') value.forEach((item, i) => value.indexOf(item) !== i && errors.push(`${path}[${i}]: duplicate value ${JSON.stringify(item)}`));
  }
  if (actual === 'object') {
    const object = value as Record<string, unknown>;
    const keys = Object.keys(object);
    if (schema.minProperties !== undefined && keys.length < schema.minProperties) errors.push(`${path}: must have at least ${schema.minProperties} fields`);
    if (schema.maxProperties !== undefined && keys.length > schema.maxProperties) errors.push(`${path}: must have at most ${schema.maxProperties} fields`);
    for (const name of schema.required ?? []) if (!(name in object)) errors.push(`${path}: "${name}" is required`);
    for (const key of keys) {
      const child = `${path}.${key}`;
      const declared = schema.properties?.[key];
      if (declared !== undefined) {
        // ObjectMeta at the root: only what the schema restricts is checked, the rest is the API's own.
        validateNode(declared, object[key], child, errors, false);
        continue;
      }
      if (isRoot && (key === 'apiVersion' || key === 'kind' || key === 'metadata')) continue;
      if (typeof schema.additionalProperties === 'object') validateNode(schema.additionalProperties, object[key], child, errors, false);
      else if (schema.additionalProperties === true || schema['x-kubernetes-preserve-unknown-fields'] === true) continue;
      else if (path.endsWith('.metadata') && path.split('.').length === 2) continue;
      else errors.push(`${child}: unknown field`);
    }
  }
}

/** Every problem of `value` against `schema`, with JSON paths from `root`; empty when valid. */
export function validateAgainstSchema(schema: JsonSchemaProps, value: unknown, root = '$'): string[] {
  const errors: string[] = [];
  validateNode(schema, value, root, errors, true);
  return errors;
}

/** Why a CRD schema is not structural (https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema). */
export function structuralProblems(schema: JsonSchemaProps, path = '$'): string[] {
  const problems: string[] = [];
  const intOrString = schema['x-kubernetes-int-or-string'] === true;
  const preserve = schema['x-kubernetes-preserve-unknown-fields'] === true;
  if (schema.type === undefined && !intOrString && !preserve) problems.push(`${path}: no type`);
  if (schema.properties !== undefined && schema.additionalProperties !== undefined && schema.additionalProperties !== false) {
    problems.push(`${path}: properties and additionalProperties together`);
  }
  if (schema.type === 'array' && schema.items === undefined) problems.push(`${path}: array without items`);
  if (schema['x-kubernetes-list-type'] === 'set' && (schema.items?.type === 'object' || schema.items?.type === 'array')) problems.push(`${path}: a set of non-scalar items`);
  if (schema.pattern !== undefined) {
    try {
      new RegExp(schema.pattern, 'u');
    } catch (err) {
      problems.push(`${path}: pattern does not compile: ${(err as Error).message}`);
    }
  }
  for (const [name, child] of Object.entries(schema.properties ?? {})) problems.push(...structuralProblems(child, `${path}.${name}`));
  if (schema.items !== undefined) problems.push(...structuralProblems(schema.items, `${path}[*]`));
  if (typeof schema.additionalProperties === 'object') problems.push(...structuralProblems(schema.additionalProperties, `${path}.*`));
  if (schema.default !== undefined) problems.push(...validateAgainstSchema({ ...schema, default: undefined }, schema.default, `${path}(default)`));
  return problems;
}
