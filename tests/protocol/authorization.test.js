// authorization.test.js - who may do what, as a matrix of roles x operations
// against the real server. The expected table is derived from
// signaling/hub.c (dispatch(), staff_clinic(), need_doctor(),
// doctor_consultation(), own_consultation(), on_overview(),
// sig_hub_http_appointment()) and written down below as data.
//
// Every cell runs in a fresh little world: a patient W waiting in clinic A,
// a patient X already called by another doctor of A ("dr.other"), and the
// actor in its role. Every denial (unauthorized, forbidden) must leave an
// `access_denied` audit event with outcome `denied`; conflicts must not.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, assertCleanExit } from './lib/server.js';
import { connect, connectAs } from './lib/client.js';

const A = 'alpha';
const B = 'beta';

// Roles. `doctorA` is on duty for A; `doctorA_off` is the same account off duty.
const ROLES = ['anonymous', 'patient', 'doctorA', 'doctorA_off', 'doctorB', 'adminA', 'admin'];

// prettier-ignore
const EXPECTED = {
  //                   anonymous       patient         doctorA      doctorA_off  doctorB      adminA       admin
  join:             ['ok',           'conflict',     'conflict',  'conflict',  'conflict',  'conflict',  'conflict'],
  duty_a:           ['unauthorized', 'forbidden',    'ok',        'ok',        'forbidden', 'forbidden', 'forbidden'],
  queue_a:          ['unauthorized', 'forbidden',    'ok',        'ok',        'forbidden', 'ok',        'ok'],
  queue_b:          ['unauthorized', 'forbidden',    'forbidden', 'forbidden', 'ok',        'forbidden', 'ok'],
  call_next_a:      ['unauthorized', 'forbidden',    'ok',        'forbidden', 'forbidden', 'forbidden', 'forbidden'],
  call_waiting:     ['unauthorized', 'forbidden',    'ok',        'forbidden', 'forbidden', 'forbidden', 'forbidden'],
  call_taken:       ['unauthorized', 'forbidden',    'conflict',  'forbidden', 'forbidden', 'forbidden', 'forbidden'],
  end_other:        ['unauthorized', 'forbidden',    'forbidden', 'forbidden', 'forbidden', 'forbidden', 'forbidden'],
  return_other:     ['unauthorized', 'forbidden',    'forbidden', 'forbidden', 'forbidden', 'forbidden', 'forbidden'],
  transfer_other:   ['unauthorized', 'forbidden',    'forbidden', 'forbidden', 'forbidden', 'forbidden', 'forbidden'],
  transfer_waiting: ['unauthorized', 'forbidden',    'ok',        'forbidden', 'forbidden', 'forbidden', 'forbidden'],
  overview:         ['unauthorized', 'forbidden',    'forbidden', 'forbidden', 'forbidden', 'ok',        'ok'],
  leave_other:      ['unauthorized', 'forbidden',    'forbidden', 'forbidden', 'forbidden', 'forbidden', 'forbidden'],
  appointment_a:    ['unauthorized', 'unauthorized', 'ok',        'ok',        'forbidden', 'ok',        'ok'],
};

// What each operation sends, and the reply type that means "ok".
//   w: the waiting patient's consultation id; x: the one dr.other has called.
const OPS = {
  join: { send: () => ['join', { clinic: A, name: 'Intruder' }], ok: 'joined' },
  duty_a: { send: () => ['duty', { clinic: A, on: true }], ok: 'duty' },
  queue_a: { send: () => ['queue', { clinic: A }], ok: 'queue' },
  queue_b: { send: () => ['queue', { clinic: B }], ok: 'queue' },
  call_next_a: { send: () => ['call_next', { clinic: A }], ok: 'called' },
  call_waiting: { send: (w) => ['call', { consultation: w.id }], ok: 'called' },
  call_taken: { send: (w) => ['call', { consultation: w.xId }], ok: 'called' },
  end_other: { send: (w) => ['end', { consultation: w.xId }], ok: 'ending' },
  return_other: { send: (w) => ['return_to_queue', { consultation: w.xId }], ok: 'returned' },
  transfer_other: { send: (w) => ['transfer', { consultation: w.xId, clinic: B }], ok: 'transferred' },
  transfer_waiting: { send: (w) => ['transfer', { consultation: w.id, clinic: B }], ok: 'transferred' },
  overview: { send: () => ['overview', {}], ok: 'overview' },
  leave_other: { send: (w) => ['leave', { consultation: w.id }], ok: 'left' },
  appointment_a: { http: true },
};

const ACCOUNTS = [
  { username: 'dr.a', role: 'doctor', clinics: [A] },
  { username: 'dr.other', role: 'doctor', clinics: [A] },
  { username: 'dr.b', role: 'doctor', clinics: [B] },
  { username: 'admin.a', role: 'admin', clinics: [A] },
  { username: 'admin.all', role: 'admin' },
];
const ROLE_ACCOUNT = { doctorA: 'dr.a', doctorA_off: 'dr.a', doctorB: 'dr.b', adminA: 'admin.a', admin: 'admin.all' };

let srv;
let tokens = {};
let other; // dr.other's connection, on duty for A
const denials = []; // {role, actorRole, actorId, request, code, clinic}
const open = new Set();

before(async () => {
  srv = await startServer({
    clinics: [
      { id: A, name_en: 'Alpha', name_ar: 'ألف' },
      { id: B, name_en: 'Beta', name_ar: 'باء' },
    ],
    accounts: ACCOUNTS,
    flags: ['--message-rate', '1000', '--message-burst', '1000'],
  });
  for (const a of ACCOUNTS) tokens[a.username] = await srv.login(a.username);
  other = await connectAs(srv.port, tokens['dr.other'], 'other');
  other.unbuffered = new Set(['queue', 'ended', 'peer', 'consultation_started']);
  assert.equal((await other.request('duty', { clinic: A, on: true })).type, 'duty');
});

after(async () => {
  for (const c of open) if (c.isOpen) await c.close();
  if (other?.isOpen) await other.close();
  if (srv && !srv.exited) assertCleanExit(await srv.stop());
});

async function fresh(label) {
  const c = await connect(srv.port, { label });
  c.unbuffered = new Set(['queue', 'position']);
  open.add(c);
  return c;
}

/** Sets up W (waiting in A) and X (called by dr.other). */
async function makeWorld(tag) {
  const x = await fresh(`X-${tag}`);
  const xj = await x.request('join', { clinic: A, name: `X ${tag}` });
  assert.equal(xj.type, 'joined', JSON.stringify(xj));
  const call = await other.request('call', { consultation: xj.consultation });
  assert.equal(call.type, 'called', JSON.stringify(call));
  const w = await fresh(`W-${tag}`);
  const wj = await w.request('join', { clinic: A, name: `W ${tag}` });
  assert.equal(wj.type, 'joined', JSON.stringify(wj));
  return { id: wj.consultation, xId: xj.consultation, wConn: w, xConn: x };
}

/** The actor in `role`; for patients, the consultation id is its audit identity. */
async function makeActor(role, tag) {
  if (role === 'anonymous') return { conn: await fresh(`anon-${tag}`), actorRole: 'anonymous', actorId: null };
  if (role === 'patient') {
    const c = await fresh(`pat-${tag}`);
    const r = await c.request('join', { clinic: A, name: `Patient ${tag}` });
    assert.equal(r.type, 'joined');
    return { conn: c, actorRole: 'patient', actorId: r.consultation, resumeToken: r.resume_token };
  }
  const username = ROLE_ACCOUNT[role];
  const c = await connectAs(srv.port, tokens[username], `${role}-${tag}`);
  c.unbuffered = new Set(['queue', 'position']);
  open.add(c);
  if (role === 'doctorA' || role === 'doctorA_off') {
    const d = await c.request('duty', { clinic: A, on: role === 'doctorA' });
    assert.equal(d.type, 'duty', JSON.stringify(d));
  }
  if (role === 'doctorB') assert.equal((await c.request('duty', { clinic: B, on: true })).type, 'duty');
  const accountRole = ACCOUNTS.find((a) => a.username === username).role;
  return { conn: c, actorRole: accountRole, actorId: username, token: tokens[username] };
}

/** Leaves every consultation the world's connections still hold, and closes them. */
async function cleanup(world, actor) {
  // Only connections that hold a consultation are asked to leave: a `leave` from anyone
  // else would be a denial of its own and spoil the audit count.
  const holders = [world.wConn, world.xConn];
  if (actor.actorRole === 'patient' || actor.joinedNow) holders.push(actor.conn);
  for (const c of holders) {
    if (c.isOpen) {
      const r = await c.request('leave');
      assert.equal(r.type, 'left', `${c.label} leaves: ${JSON.stringify(r)}`);
    }
  }
  for (const c of [actor.conn, ...holders]) {
    if (c.isOpen) await c.close();
    open.delete(c);
  }
}

async function perform(opName, role, world, actor) {
  const op = OPS[opName];
  if (op.http) {
    const bearer = role === 'anonymous' ? undefined : role === 'patient' ? actor.resumeToken : actor.token;
    const r = await srv.appointment(bearer, { clinic: A, priority: 'routine' });
    const outcome = r.status === 201 ? 'ok' : r.json?.code;
    const wantStatus = { ok: 201, unauthorized: 401, forbidden: 403 }[outcome];
    assert.equal(r.status, wantStatus, `HTTP status for ${outcome}: ${r.text}`);
    return { outcome, reply: r.json, request: 'POST /api/appointments' };
  }
  const [type, fields] = op.send(world);
  const reply = await actor.conn.request(type, fields);
  const outcome = reply.type === 'error' ? reply.code : 'ok';
  if (outcome === 'ok') assert.equal(reply.type, op.ok, JSON.stringify(reply));
  return { outcome, reply, request: type };
}

/** Extra checks of what an allowed operation returned. */
function checkOk(opName, role, world, reply) {
  if (opName === 'call_next_a' || opName === 'call_waiting') assert.equal(reply.consultation, world.id);
  if (opName === 'queue_a') assert.equal(reply.clinic, A);
  if (opName === 'transfer_waiting') {
    assert.equal(reply.consultation, world.id);
    assert.equal(reply.clinic, B);
    assert.notEqual(reply.new_consultation, world.id);
  }
  if (opName === 'overview') {
    const ids = reply.clinics.map((c) => c.id);
    assert.deepEqual(ids, role === 'adminA' ? [A] : [A, B], 'an admin sees only the clinics in scope');
  }
  if (opName === 'appointment_a') assert.equal(reply.clinic, A);
}

let cellNo = 0;
for (const opName of Object.keys(EXPECTED)) {
  test(`operation ${opName}`, async (t) => {
    for (const [i, role] of ROLES.entries()) {
      await t.test(`${role} -> ${EXPECTED[opName][i]}`, async () => {
        const tag = `${++cellNo}`;
        const world = await makeWorld(tag);
        const actor = await makeActor(role, tag);
        try {
          const { outcome, reply, request } = await perform(opName, role, world, actor);
          assert.equal(outcome, EXPECTED[opName][i], `${role} ${opName}: ${JSON.stringify(reply)}`);
          if (outcome === 'ok') checkOk(opName, role, world, reply);
          if (outcome === 'ok' && opName === 'join') actor.joinedNow = true;
          if (outcome === 'unauthorized' || outcome === 'forbidden') {
            const http = request.startsWith('POST');
            denials.push({
              cell: `${opName}/${role}`,
              request,
              code: http ? undefined : outcome,
              // A bearer token that is no session is an anonymous caller.
              actorRole: http && outcome === 'unauthorized' ? 'anonymous' : actor.actorRole,
              actorId: http && outcome === 'unauthorized' ? null : actor.actorId,
            });
          }
          // Whatever happened, the victims' consultations are as they were unless the
          // operation was allowed to change them.
          if (outcome !== 'ok') {
            const q = await other.request('queue', { clinic: A });
            assert.ok(q.patients.some((p) => p.consultation === world.id), 'W still waiting in A');
            assert.ok(!q.patients.some((p) => p.consultation === world.xId), 'X still called');
          }
        } finally {
          await cleanup(world, actor);
        }
      });
    }
  });
}

test('every denial is in the audit log as access_denied/denied, and nothing else is', async () => {
  assert.ok(denials.length >= 60, `expected many denials, got ${denials.length}`);
  const rows = await srv.audit(`type = 'access_denied'`, {
    done: (r) => r.length >= denials.length,
    timeoutMs: 5000,
  });
  for (const r of rows) assert.equal(r.outcome, 'denied', JSON.stringify(r));
  const unmatched = [...rows];
  const missing = [];
  for (const d of denials) {
    const i = unmatched.findIndex(
      (r) =>
        r.actor_role === d.actorRole &&
        r.actor_id === d.actorId &&
        r.source === '127.0.0.1' &&
        r.details?.request === d.request &&
        (d.code === undefined || r.details?.code === d.code),
    );
    if (i < 0) missing.push(d);
    else unmatched.splice(i, 1);
  }
  assert.deepEqual(missing, [], 'denials without an access_denied audit event');
  assert.deepEqual(
    unmatched.map((r) => ({ actor: `${r.actor_role}/${r.actor_id}`, detail: r.detail })),
    [],
    'access_denied events that no denial explains (conflicts must not be audited as denials)',
  );
});

test('the server stops on SIGTERM with exit status 0 and no sanitizer report', async () => {
  // A connection or two may still be open: the stop must cope with them.
  const result = await srv.stopCleanly();
  assert.equal(result.code, 0);
});
