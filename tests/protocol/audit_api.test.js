// audit_api.test.js - the admins' audit search and exports against the real
// server: the sessions view in step with what happened, filters, cursor
// pagination, clinic scope (search and export), doctors and patients
// refused, every search itself audited, CSV (RFC 4180, Arabic intact) and a
// FHIR R4 Bundle of AuditEvents checked against the official R4 JSON schema
// (lib/fhir.js), over HTTPS and from `tabib audit export`.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';

import { startServer, httpsRequest, assertCleanExit, BINARY, PASSWORD } from './lib/server.js';
import { connect, connectAs, joinAs } from './lib/client.js';
import { validateFhirR4, checkAuditEventShape } from './lib/fhir.js';

const A = 'alpha';
const B = 'beta';
const NAME_A = 'مريم العلي';
const NAME_QUOTED = 'Ali "Abu" Hassan, Jr.';
const NAME_B = 'فاطمة الكواري';
const NAME_FORMULA = '=HYPERLINK("x")';

let srv;
const tokens = {};
const ids = {};

async function login(username) {
  const r = await httpsRequest(srv.port, 'POST', '/api/login', { body: { username, password: PASSWORD } });
  assert.equal(r.status, 200, r.text);
  return r.json.token;
}

function get(path, who) {
  const headers = who ? { authorization: `Bearer ${tokens[who] ?? who}` } : {};
  return httpsRequest(srv.port, 'GET', path, { headers });
}

/** One consultation from join to end: the doctor calls, the patient accepts, the doctor ends. */
async function consult(doctor, clinic, name) {
  const patient = await joinAs(srv.port, clinic, name);
  const called = await doctor.request('call_next', { clinic });
  assert.equal(called.type, 'called', JSON.stringify(called));
  assert.equal(called.consultation, patient.consultation);
  assert.equal((await patient.request('accept')).type, 'consultation_started');
  await new Promise((r) => setTimeout(r, 150)); // a duration of at least 0.1 s
  assert.equal((await doctor.request('end', { consultation: patient.consultation })).type, 'ending');
  patient.close();
  return patient.consultation;
}

/** Parses RFC 4180 CSV (CRLF records, quoted fields with doubled quotes) into rows of fields. */
function parseCsv(text) {
  const rows = [];
  let row = [];
  let field = '';
  let i = 0;
  let quoted = false;
  while (i < text.length) {
    const ch = text[i];
    if (quoted) {
      if (ch === '"' && text[i + 1] === '"') {
        field += '"';
        i += 2;
      } else if (ch === '"') {
        quoted = false;
        i++;
      } else {
        field += ch;
        i++;
      }
    } else if (ch === '"' && field === '') {
      quoted = true;
      i++;
    } else if (ch === ',') {
      row.push(field);
      field = '';
      i++;
    } else if (ch === '\r' && text[i + 1] === '\n') {
      row.push(field);
      rows.push(row);
      row = [];
      field = '';
      i += 2;
    } else {
      assert.notEqual(ch, '\n', 'a bare LF ends no record in RFC 4180');
      field += ch;
      i++;
    }
  }
  assert.equal(field, '', 'the last record ends with CRLF');
  assert.equal(row.length, 0);
  return rows;
}

function csvObjects(text) {
  const [header, ...rows] = parseCsv(text);
  for (const r of rows) assert.equal(r.length, header.length, `a row of ${r.length} fields: ${r}`);
  return rows.map((r) => Object.fromEntries(header.map((h, i) => [h, r[i]])));
}

function run(args) {
  return new Promise((resolve) => {
    execFile(BINARY, args, { maxBuffer: 64 << 20 }, (err, stdout, stderr) =>
      resolve({ code: err ? err.code : 0, stdout, stderr }),
    );
  });
}

before(async () => {
  srv = await startServer({
    clinics: [
      { id: A, name_en: 'Alpha', name_ar: 'ألفا' },
      { id: B, name_en: 'Beta', name_ar: 'بيتا' },
    ],
    accounts: [
      { username: 'dr.a', role: 'doctor', clinics: [A] },
      { username: 'dr.b', role: 'doctor', clinics: [B] },
      { username: 'admin.a', role: 'admin', clinics: [A] },
      { username: 'boss', role: 'admin' },
    ],
  });
  for (const u of ['dr.a', 'dr.b', 'admin.a', 'boss']) tokens[u] = await login(u);
  const drA = await connectAs(srv.port, tokens['dr.a'], 'dr.a');
  const drB = await connectAs(srv.port, tokens['dr.b'], 'dr.b');
  assert.equal((await drA.request('duty', { clinic: A, on: true })).type, 'duty');
  assert.equal((await drB.request('duty', { clinic: B, on: true })).type, 'duty');
  ids.a1 = await consult(drA, A, NAME_A);
  ids.b1 = await consult(drB, B, NAME_B);
  ids.a2 = await consult(drA, A, NAME_QUOTED);
  // One who leaves the queue before being called.
  const leaver = await joinAs(srv.port, A, NAME_FORMULA);
  ids.a3 = leaver.consultation;
  assert.equal((await leaver.request('leave')).type, 'left');
  leaver.close();
  drA.close();
  drB.close();
  // The writer is asynchronous: wait until every end is on disk.
  await srv.audit("type = 'consultation_ended'", { done: (rows) => rows.length >= 4, timeoutMs: 5000 });
});

after(async () => {
  if (srv) assertCleanExit(await srv.stop());
});

test('the sessions view has each consultation with its wait, duration and end, newest first', async () => {
  const r = await get('/api/audit/sessions', 'boss');
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers['content-type'], /application\/json/);
  const s = r.json.sessions;
  assert.deepEqual(
    s.map((x) => x.consultation),
    [ids.a3, ids.a2, ids.b1, ids.a1],
  );
  assert.equal(r.json.next_cursor, null);
  const a1 = s[3];
  assert.equal(a1.clinic, A);
  assert.equal(a1.patient.name, NAME_A, 'Arabic comes back exactly');
  assert.equal(a1.doctor, 'dr.a');
  assert.equal(a1.end_reason, 'completed');
  assert.equal(typeof a1.wait_s, 'number');
  assert.ok(a1.wait_s >= 0);
  assert.ok(a1.duration_s >= 0.1, `duration ${a1.duration_s}`);
  for (const k of ['queued_at', 'called_at', 'started_at', 'ended_at'])
    assert.match(a1[k], /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, k);
  assert.ok(a1.queued_at <= a1.called_at && a1.called_at <= a1.started_at && a1.started_at <= a1.ended_at);
  const a3 = s[0];
  assert.equal(a3.end_reason, 'patient_left');
  assert.equal(a3.called_at, null);
  assert.equal(a3.duration_s, null);
  assert.equal(typeof a3.wait_s, 'number', 'a patient who left still waited');
});

test('filters: clinic, doctor, patient, end reason, type, time; bad ones are refused plainly', async () => {
  const sessions = async (q) => {
    const r = await get(`/api/audit/sessions?${q}`, 'boss');
    assert.equal(r.status, 200, `${q}: ${r.text}`);
    return r.json.sessions.map((x) => x.consultation);
  };
  assert.deepEqual(await sessions(`clinic=${B}`), [ids.b1]);
  assert.deepEqual(await sessions('doctor=dr.a'), [ids.a2, ids.a1]);
  assert.deepEqual(await sessions(`patient=${encodeURIComponent(NAME_A)}`), [ids.a1]);
  assert.deepEqual(await sessions(`patient=${ids.b1}`), [ids.b1]);
  assert.deepEqual(await sessions('end_reason=patient_left'), [ids.a3]);
  assert.deepEqual(await sessions('type=consultation_started'), [ids.a2, ids.b1, ids.a1]);
  assert.deepEqual(await sessions('from=2099-01-01'), []);
  assert.deepEqual(await sessions('to=2000-01-01T00:00:00Z'), []);
  assert.equal((await sessions(`from=${Date.now() - 3600e3}`)).length, 4);

  const ev = await get(`/api/audit/events?consultation=${ids.a1}`, 'boss');
  assert.equal(ev.status, 200);
  const types = ev.json.events.map((e) => e.type);
  for (const t of ['queue_joined', 'consultation_called', 'consultation_started', 'consultation_ended'])
    assert.ok(types.includes(t), `${t} in ${types}`);
  const ids_ = ev.json.events.map((e) => e.id);
  assert.deepEqual(ids_, [...ids_].sort((x, y) => y - x), 'newest first');
  assert.ok(ev.json.events.every((e) => /^[0-9a-f]{64}$/.test(e.hash)));
  const started = await get('/api/audit/events?type=consultation_started', 'boss');
  assert.equal(started.json.events.length, 3);

  for (const [q, re] of [
    ['from=yesterday', /from must be a UTC time/],
    ['limit=0', /limit must be/],
    ['limit=501', /limit must be/],
    ['cursor=abc', /cursor/],
    ['colour=blue', /unknown filter "colour"/],
    ['format=csv', /belongs to \/api\/audit\/export/],
  ]) {
    const r = await get(`/api/audit/sessions?${q}`, 'boss');
    assert.equal(r.status, 400, q);
    assert.equal(r.json.code, 'bad_request', q);
    assert.match(r.json.message, re, q);
  }
});

test('cursor pagination walks every row once, newest first', async () => {
  for (const kind of ['sessions', 'events']) {
    const all = (await get(`/api/audit/${kind}?limit=500`, 'boss')).json[kind];
    const seen = [];
    let cursor = null;
    let pages = 0;
    do {
      const r = await get(`/api/audit/${kind}?limit=2${cursor ? `&cursor=${cursor}` : ''}`, 'boss');
      assert.equal(r.status, 200, r.text);
      assert.ok(r.json[kind].length <= 2);
      seen.push(...r.json[kind]);
      cursor = r.json.next_cursor;
      pages++;
    } while (cursor && pages < 1000);
    // Searching is audited, so events grow while we page: compare the rows both saw.
    const key = kind === 'sessions' ? 'consultation' : 'id';
    const seenKeys = seen.map((x) => x[key]);
    assert.equal(new Set(seenKeys).size, seenKeys.length, `${kind}: no row twice`);
    const allKeys = all.map((x) => x[key]);
    assert.deepEqual(
      seenKeys.filter((k) => allKeys.includes(k)),
      allKeys,
      `${kind}: the same rows in the same order`,
    );
  }
});

test('a clinic-scoped admin sees only their clinics, in search and in every export', async () => {
  const s = await get('/api/audit/sessions', 'admin.a');
  assert.equal(s.status, 200);
  assert.deepEqual(
    s.json.sessions.map((x) => x.consultation),
    [ids.a3, ids.a2, ids.a1],
  );
  const ev = await get('/api/audit/events?limit=500', 'admin.a');
  assert.ok(ev.json.events.length > 0);
  assert.ok(ev.json.events.every((e) => e.clinic === A), 'only clinic alpha');
  for (const q of [`/api/audit/sessions?clinic=${B}`, `/api/audit/events?clinic=${B}`, `/api/audit/export?format=csv&clinic=${B}`]) {
    const r = await get(q, 'admin.a');
    assert.equal(r.status, 403, q);
    assert.equal(r.json.code, 'forbidden');
  }
  // Patient B's consultation by id or name finds nothing for them.
  assert.deepEqual((await get(`/api/audit/sessions?patient=${ids.b1}`, 'admin.a')).json.sessions, []);
  for (const [q, kind] of [
    ['format=csv', 'events'],
    ['format=csv&of=sessions', 'sessions'],
    ['format=fhir', 'events'],
    ['format=json&of=sessions', 'sessions'],
  ]) {
    const r = await get(`/api/audit/export?${q}`, 'admin.a');
    assert.equal(r.status, 200, `${q}: ${r.text}`);
    assert.ok(!r.text.includes(ids.b1), `${q}: no beta consultation`);
    assert.ok(!r.text.includes(NAME_B), `${q}: no beta patient`);
    assert.ok(r.text.includes(ids.a1), `${q}: alpha is there`);
    assert.ok(kind);
  }
  const denied = await srv.audit(
    "type = 'access_denied' AND actor_id = 'admin.a' AND clinic = 'beta'",
    { done: (rows) => rows.length >= 3 },
  );
  assert.equal(denied.length, 3);
});

test('doctors and patients are refused with forbidden, strangers with unauthorized', async () => {
  const patient = await joinAs(srv.port, A, 'Curious Patient');
  for (const path of ['/api/audit/sessions', '/api/audit/events', '/api/audit/export?format=csv']) {
    for (const who of ['dr.a', 'dr.b']) {
      const r = await get(path, who);
      assert.equal(r.status, 403, `${who} ${path}`);
      assert.equal(r.json.code, 'forbidden');
    }
    const p = await get(path, patient.joined.resume_token);
    assert.equal(p.status, 403, `patient ${path}`);
    assert.equal(p.json.code, 'forbidden');
    const none = await get(path);
    assert.equal(none.status, 401);
    assert.equal(none.json.code, 'unauthorized');
    const bad = await get(path, 'not-a-token');
    assert.equal(bad.status, 401);
  }
  const rows = await srv.audit("type = 'access_denied' AND detail LIKE '%/api/audit/%'", {
    done: (r) => r.length >= 15,
  });
  assert.equal(rows.filter((r) => r.actor_role === 'doctor').length, 6);
  assert.equal(rows.filter((r) => r.actor_role === 'patient' && r.actor_id === patient.consultation).length, 3);
  assert.equal(rows.filter((r) => r.actor_role === 'anonymous').length, 6);
  assert.equal((await patient.request('leave')).type, 'left');
  patient.close();
});

test('every search and export is itself an audit event naming the admin and the filters', async () => {
  const before_ = (await srv.audit("type IN ('audit_search','audit_export') AND actor_id = 'boss'", { done: () => true })).length;
  await get(`/api/audit/sessions?doctor=dr.b&end_reason=completed`, 'boss');
  await get('/api/audit/export?format=fhir&type=consultation_ended', 'boss');
  const rows = await srv.audit("type IN ('audit_search','audit_export') AND actor_id = 'boss'", {
    done: (r) => r.length >= before_ + 2,
  });
  const [search, exp] = rows.slice(-2);
  assert.equal(search.type, 'audit_search');
  assert.equal(search.actor_role, 'admin');
  assert.equal(search.source, '127.0.0.1');
  assert.deepEqual(search.details.filters, { doctor: 'dr.b', end_reason: 'completed' });
  assert.equal(search.details.of, 'sessions');
  assert.equal(search.details.rows, 1);
  assert.equal(exp.type, 'audit_export');
  assert.equal(exp.details.format, 'fhir');
  const ends = await srv.audit("type = 'consultation_ended'", { done: () => true });
  assert.equal(exp.details.rows, ends.length);
});

test('CSV export: RFC 4180 with CRLF, quotes doubled, Arabic intact, formulas defused', async () => {
  const r = await get('/api/audit/export?format=csv&of=sessions', 'boss');
  assert.equal(r.status, 200);
  assert.match(r.headers['content-type'], /^text\/csv; charset=utf-8/);
  assert.match(r.headers['content-disposition'], /attachment; filename="tabib-sessions\.csv"/);
  const rows = csvObjects(r.text);
  const by = Object.fromEntries(rows.map((x) => [x.consultation, x]));
  assert.equal(by[ids.a1].patient_name, NAME_A);
  assert.equal(by[ids.b1].patient_name, NAME_B);
  assert.equal(by[ids.a2].patient_name, NAME_QUOTED);
  assert.equal(by[ids.a3].patient_name, `'${NAME_FORMULA}`, 'a leading = is defused');
  assert.equal(by[ids.a1].end_reason, 'completed');
  assert.match(by[ids.a1].wait_s, /^\d+\.\d$/);
  assert.match(by[ids.a1].duration_s, /^\d+\.\d$/);
  const ev = await get('/api/audit/export?format=csv', 'boss');
  const events = csvObjects(ev.text);
  const joined = events.find((e) => e.type === 'queue_joined' && e.consultation === ids.a1);
  assert.equal(joined.patient_name, NAME_A);
  assert.equal(JSON.parse(joined.detail).name, NAME_A, 'the detail JSON survives the quoting');
  assert.match(joined.hash, /^[0-9a-f]{64}$/);
});

test('FHIR export: a valid R4 Bundle of AuditEvents in the IHE BALP shape', async () => {
  const r = await get('/api/audit/export?format=fhir', 'boss');
  assert.equal(r.status, 200, r.text);
  assert.match(r.headers['content-type'], /^application\/fhir\+json/);
  const bundle = r.json;
  const { valid, errors } = validateFhirR4(bundle);
  assert.ok(valid, errors.join('\n'));
  assert.equal(bundle.resourceType, 'Bundle');
  assert.ok(bundle.entry.length > 10);
  for (const e of bundle.entry) {
    assert.match(e.fullUrl, /^urn:uuid:[0-9a-f-]{36}$/);
    assert.deepEqual(checkAuditEventShape(e.resource), [], JSON.stringify(e.resource));
  }
  const ended = bundle.entry
    .map((e) => e.resource)
    .find(
      (ae) =>
        ae.subtype.some((c) => c.code === 'consultation_ended') &&
        ae.entity.some((en) => en.what?.identifier?.value === ids.a1),
    );
  assert.ok(ended, 'the end of consultation a1 is there');
  const patient = ended.entity.find((en) => en.role?.code === '1');
  assert.equal(patient.name, NAME_A);
  assert.ok(ended.period.start < ended.period.end, 'the period spans the consultation');
  const failed = bundle.entry.map((e) => e.resource).find((ae) => ae.outcome !== '0');
  assert.ok(failed, 'denials are there, with a failure outcome');
});

test('tabib audit export writes the same files from the command line, and is audited', async () => {
  const csv = await run(['audit', 'export', '--format', 'csv', '--of', 'sessions', '--clinic', A, '--data-dir', srv.dataDir]);
  assert.equal(csv.code, 0, csv.stderr);
  const rows = csvObjects(csv.stdout);
  const listed = rows.map((x) => x.consultation);
  for (const id of [ids.a1, ids.a2, ids.a3]) assert.ok(listed.includes(id), id);
  assert.ok(!listed.includes(ids.b1));
  assert.ok(rows.every((x) => x.clinic === A));
  assert.equal(rows.find((x) => x.consultation === ids.a1).patient_name, NAME_A);
  const fhir = await run(['audit', 'export', '--format', 'fhir', '--consultation', ids.b1, '--data-dir', srv.dataDir]);
  assert.equal(fhir.code, 0, fhir.stderr);
  const bundle = JSON.parse(fhir.stdout);
  const { valid, errors } = validateFhirR4(bundle);
  assert.ok(valid, errors.join('\n'));
  assert.ok(bundle.entry.length >= 4);
  const bad = await run(['audit', 'export', '--format', 'xml', '--data-dir', srv.dataDir]);
  assert.equal(bad.code, 2);
  const rec = await srv.audit("type = 'audit_export' AND actor_role = 'operator'", { done: (r) => r.length >= 2 });
  assert.equal(rec.length, 2);
  // The server's writer and the command appended to one chain: it still verifies.
  const verify = await run(['audit', 'verify', '--data-dir', srv.dataDir]);
  assert.equal(verify.code, 0, verify.stderr);
});

test('account changes by `tabib user` are in the log, appended beside the running server', async () => {
  const added = await srv.audit("type = 'user_added'", { done: (r) => r.length >= 4 });
  assert.deepEqual(
    added.map((r) => r.details.username).sort(),
    ['admin.a', 'boss', 'dr.a', 'dr.b'],
  );
  assert.ok(added.every((r) => r.actor_role === 'operator' && r.actor_id));
  const disable = await run(['user', 'disable', 'dr.b', '--data-dir', srv.dataDir]);
  assert.equal(disable.code, 0, disable.stderr);
  // The server writes while the command appends: the chain holds both.
  await get('/api/audit/sessions', 'boss');
  const rows = await srv.audit("type = 'user_disabled'", { done: (r) => r.length >= 1 });
  assert.equal(rows[0].details.username, 'dr.b');
  await srv.audit("type = 'audit_search' AND actor_id = 'boss'", { done: (r) => r.length >= 1 });
  const verify = await run(['audit', 'verify', '--data-dir', srv.dataDir]);
  assert.equal(verify.code, 0, verify.stderr);
  const refused = await get('/api/audit/sessions', 'dr.b');
  assert.equal(refused.status, 401, 'a disabled account has no session');
});

test('stats: median and 90th-percentile wait per clinic, within the admin scope', async () => {
  const r = await get(`/api/audit/stats?from=${Date.now() - 3600e3}`, 'boss');
  assert.equal(r.status, 200, r.text);
  const by = Object.fromEntries(r.json.clinics.map((c) => [c.clinic, c]));
  const sessions = (await get(`/api/audit/sessions?clinic=${A}&limit=500`, 'boss')).json.sessions;
  assert.equal(by[A].sessions, sessions.length);
  const waits = sessions.filter((x) => x.wait_s !== null).map((x) => x.wait_s).sort((a, b) => a - b);
  assert.equal(by[A].waited, waits.length);
  // Nearest rank over the exact milliseconds; the sessions round to 0.1 s.
  const rank = (p) => waits[Math.max(1, Math.ceil((p / 100) * waits.length)) - 1];
  assert.ok(Math.abs(by[A].median_wait_s - rank(50)) <= 0.1, `${by[A].median_wait_s} vs ${rank(50)}`);
  assert.ok(Math.abs(by[A].p90_wait_s - rank(90)) <= 0.1, `${by[A].p90_wait_s} vs ${rank(90)}`);
  assert.ok(by[A].median_duration_s >= 0.1);
  assert.equal(by[B].sessions, 1);
  const scoped = await get(`/api/audit/stats?from=${Date.now() - 3600e3}`, 'admin.a');
  assert.deepEqual(
    scoped.json.clinics.map((c) => c.clinic),
    [A],
  );
  assert.equal((await get('/api/audit/stats', 'dr.a')).status, 403);
});

test('verify: the chain as the admin page shows it', async () => {
  const r = await get('/api/audit/verify', 'boss');
  assert.equal(r.status, 200, r.text);
  assert.equal(r.json.ok, true);
  assert.match(r.json.head, /^[0-9a-f]{64}$/);
  assert.ok(r.json.events > 20);
  assert.equal((await get('/api/audit/verify', 'dr.a')).status, 403);
  const rec = await srv.audit("type = 'audit_search' AND detail LIKE '%\"of\":\"verify\"%'", {
    done: (rows) => rows.length >= 1,
  });
  assert.equal(rec[0].actor_id, 'boss');
});
