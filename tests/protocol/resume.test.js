// resume.test.js - dropped connections and the grace period, against the
// real server run with --grace-period-s 2: a patient (or doctor) who comes
// back in time gets their place, call or consultation back; a second socket
// with the same resume token takes over (4001); past the grace period the
// consultation ends (abandoned, or connection_lost once it had started).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, assertCleanExit } from './lib/server.js';
import { connect, connectAs, joinAs } from './lib/client.js';

const GRACE_S = 2;
// The hub's timer expires grace periods about once a second.
const EXPIRY_WAIT_MS = GRACE_S * 1000 + 3000;

let srv;
let token;
const opened = new Set();
const track = (c) => (opened.add(c), c);

before(async () => {
  srv = await startServer({
    clinics: [{ id: 'general', name_en: 'General Practice', name_ar: 'الطب العام' }],
    accounts: [{ username: 'dr.amal', role: 'doctor', clinics: ['general'] }],
    flags: ['--grace-period-s', String(GRACE_S)],
  });
  token = await srv.login('dr.amal');
});

after(async () => {
  for (const c of opened) if (c.isOpen) await c.close();
  if (srv && !srv.exited) assertCleanExit(await srv.stop());
});

async function patient(label) {
  return track(await joinAs(srv.port, 'general', label, label));
}

async function doctor(label = 'D') {
  const d = track(await connectAs(srv.port, token, label));
  const r = await d.request('duty', { clinic: 'general', on: true });
  assert.equal(r.type, 'duty');
  return d;
}

async function resume(resumeToken, label) {
  const c = track(await connect(srv.port, { label }));
  return { conn: c, reply: await c.request('resume', { resume_token: resumeToken }) };
}

async function endedRow(consultation) {
  const rows = await srv.audit(`type = 'consultation_ended' and consultation = '${consultation}'`);
  assert.equal(rows.length, 1, `one consultation_ended for ${consultation}`);
  return rows[0];
}

test('resume within the grace period restores the queue position', async () => {
  const a = await patient('A');
  const b = await patient('B');
  const c = await patient('C');
  assert.deepEqual([a.joined.position, b.joined.position, c.joined.position], [1, 2, 3]);
  assert.equal(b.joined.grace_s, GRACE_S);

  await b.terminate(); // no close frame: like a phone leaving the network
  await new Promise((r) => setTimeout(r, 500));
  const { conn, reply } = await resume(b.joined.resume_token, 'B2');
  assert.equal(reply.type, 'resumed', JSON.stringify(reply));
  assert.equal(reply.consultation, b.consultation);
  assert.equal(reply.state, 'waiting');
  assert.equal(reply.position, 2, 'the same place in the queue');
  assert.equal(reply.grace_s, GRACE_S);
  assert.equal(reply.clinic.id, 'general');
  assert.equal(reply.resume_token, undefined, 'the token is shown once, at join');
  // Nobody behind moved while B was away.
  assert.ok(c.drain('position').every((p) => p.position === 3));
  // B is B again: its requests act on its consultation.
  assert.equal((await conn.request('device_status', { ready: true })).ready, true);

  // Past the grace period the place would be gone; within it, it held. Check the audit trail.
  const rows = await srv.audit(
    `consultation = '${b.consultation}' and type in ('participant_disconnected','participant_resumed')`,
    { done: (r) => r.length >= 2 },
  );
  assert.deepEqual(
    rows.map((r) => [r.type, r.details.state, r.details.after_drop]),
    [
      ['participant_disconnected', 'waiting', undefined],
      ['participant_resumed', 'waiting', true],
    ],
  );
  for (const p of [a, conn, c]) assert.equal((await p.request('leave')).type, 'left');
});

test('a second socket with the same resume token takes over; the first is closed with 4001', async () => {
  const p = await patient('P');
  const { conn: p2, reply } = await resume(p.joined.resume_token, 'P2');
  assert.equal(reply.type, 'resumed', JSON.stringify(reply));
  assert.equal(reply.position, 1);
  assert.deepEqual(await p.closed, { code: 4001, reason: 'resumed on another connection' });
  // And a third one takes over from the second.
  const { conn: p3, reply: r3 } = await resume(p.joined.resume_token, 'P3');
  assert.equal(r3.type, 'resumed');
  assert.deepEqual(await p2.closed, { code: 4001, reason: 'resumed on another connection' });
  const rows = await srv.audit(`consultation = '${p.consultation}' and type = 'participant_resumed'`, {
    done: (r) => r.length >= 2,
  });
  assert.deepEqual(
    rows.map((r) => r.details.after_drop),
    [false, false],
    'taken over from a live connection, not after a drop',
  );
  assert.equal((await p3.request('leave')).type, 'left');
  // The token dies with the consultation.
  const { reply: gone } = await resume(p.joined.resume_token, 'P4');
  assert.equal(gone.code, 'not_found');
});

test('resume restores a call and a running consultation', async () => {
  const d = await doctor('D1');
  const p = await patient('Called');
  const called = await d.request('call_next', { clinic: 'general' });
  assert.equal(called.consultation, p.consultation);
  await p.next('called');

  // Dropped while called.
  await p.terminate();
  const gone = await d.nextMatching('peer', (e) => e.state === 'disconnected');
  assert.deepEqual(gone, {
    type: 'peer',
    consultation: p.consultation,
    who: 'patient',
    state: 'disconnected',
    grace_s: GRACE_S,
  });
  const { conn: p2, reply } = await resume(p.joined.resume_token, 'Called2');
  assert.equal(reply.type, 'resumed', JSON.stringify(reply));
  assert.equal(reply.state, 'called');
  assert.equal(reply.position, 0);
  assert.deepEqual(reply.doctor, { name: 'dr.amal' });
  assert.deepEqual(await d.nextMatching('peer', (e) => e.state === 'connected'), {
    type: 'peer',
    consultation: p.consultation,
    who: 'patient',
    state: 'connected',
  });

  // The resumed patient answers the call.
  assert.equal((await p2.request('accept')).type, 'consultation_started');
  await d.next('consultation_started');

  // Dropped while in consultation.
  await p2.terminate();
  await d.nextMatching('peer', (e) => e.state === 'disconnected');
  const { conn: p3, reply: r3 } = await resume(p.joined.resume_token, 'Called3');
  assert.equal(r3.state, 'in_consultation');
  assert.deepEqual(r3.doctor, { name: 'dr.amal' });
  await d.nextMatching('peer', (e) => e.state === 'connected');

  const ending = await d.request('end', { consultation: p.consultation });
  assert.equal(ending.reason, 'completed');
  assert.deepEqual(await p3.next('ended'), { type: 'ended', consultation: p.consultation, reason: 'completed' });
  await d.close();
});

test('after the grace period a waiting patient is abandoned and the queue moves up', async () => {
  const a = await patient('Leaver');
  const b = await patient('Stayer');
  assert.equal(b.joined.position, 2);
  const t0 = Date.now();
  await a.terminate();
  // Still within the grace period: B has not moved.
  await new Promise((r) => setTimeout(r, 1000));
  assert.ok(b.drain('position').every((p) => p.position === 2), 'no move within the grace period');
  const moved = await b.nextMatching('position', (p) => p.position === 1, EXPIRY_WAIT_MS);
  const waited = Date.now() - t0;
  assert.ok(waited >= GRACE_S * 1000 - 100, `moved up only after the grace period (${waited} ms)`);
  assert.equal(moved.consultation, b.consultation);
  const { reply } = await resume(a.joined.resume_token, 'Leaver2');
  assert.equal(reply.code, 'not_found');
  const row = await endedRow(a.consultation);
  assert.equal(row.details.reason, 'abandoned');
  assert.equal(row.details.from, 'waiting');
  assert.equal(row.actor_role, 'system');
  const refused = await srv.audit(`type = 'resume_refused'`);
  assert.ok(refused.length >= 1);
  assert.equal(refused.at(-1).outcome, 'denied');
  assert.equal((await b.request('leave')).type, 'left');
});

test('a called patient who does not come back is abandoned; the doctor may call again', async () => {
  const d = await doctor('D2');
  const p = await patient('NoShow');
  const called = await d.request('call_next', { clinic: 'general' });
  assert.equal(called.consultation, p.consultation);
  await p.terminate();
  const ended = await d.nextMatching('ended', (e) => e.consultation === p.consultation, EXPIRY_WAIT_MS);
  assert.equal(ended.reason, 'abandoned');
  const row = await endedRow(p.consultation);
  assert.equal(row.details.from, 'called');
  // The doctor is free again.
  assert.equal((await d.request('call_next', { clinic: 'general' })).code, 'not_found');
  await d.close();
});

test('a running consultation whose patient does not come back ends as connection_lost', async () => {
  const d = await doctor('D3');
  const p = await patient('Lost');
  await d.request('call_next', { clinic: 'general' });
  await p.next('called');
  assert.equal((await p.request('accept')).type, 'consultation_started');
  await p.terminate();
  const ended = await d.nextMatching('ended', (e) => e.consultation === p.consultation, EXPIRY_WAIT_MS);
  assert.equal(ended.reason, 'connection_lost');
  const row = await endedRow(p.consultation);
  assert.equal(row.details.from, 'in_consultation');
  assert.equal(row.details.doctor, 'dr.amal');
  await d.close();
});

test('a doctor who drops comes back with auth and finds the consultation', async () => {
  const d = await doctor('D4');
  const p = await patient('Patient4');
  await d.request('call_next', { clinic: 'general' });
  await p.next('called');
  await p.request('accept');
  await d.terminate();
  assert.deepEqual(await p.nextMatching('peer', (e) => e.state === 'disconnected'), {
    type: 'peer',
    consultation: p.consultation,
    who: 'doctor',
    state: 'disconnected',
  });
  const d2 = track(await connectAs(srv.port, token, 'D4b'));
  await p.nextMatching('peer', (e) => e.state === 'connected');
  // Still on duty, still this consultation's doctor.
  assert.equal((await d2.request('call_next', { clinic: 'general' })).code, 'conflict');
  assert.equal((await d2.request('end', { consultation: p.consultation })).reason, 'completed');
  assert.equal((await p.next('ended')).reason, 'completed');
  await d2.close();
});

test('a doctor who does not come back: a called patient goes back to the queue, a running one ends', async () => {
  // Called, not started: back to the queue, at their place.
  const d = await doctor('D5');
  const p = await patient('Patient5');
  const q = await patient('Patient5b');
  assert.equal((await d.request('call_next', { clinic: 'general' })).consultation, p.consultation);
  await p.next('called');
  await d.terminate();
  await p.nextMatching('peer', (e) => e.who === 'doctor' && e.state === 'disconnected');
  const back = await p.nextMatching('position', (e) => e.position === 1, EXPIRY_WAIT_MS);
  assert.equal(back.consultation, p.consultation);
  const returned = await srv.audit(`type = 'returned_to_queue' and consultation = '${p.consultation}'`);
  assert.equal(returned.length, 1);
  assert.equal(returned[0].details.why, 'doctor left');
  assert.equal(returned[0].actor_role, 'system');
  // The doctor's duty ended with them: nobody is on duty, so no estimate.
  const offDuty = await p.nextMatching('position', (e) => e.doctors_on_duty === 0);
  assert.equal(offDuty.position, 1);
  assert.equal(offDuty.estimated_wait_s, null);

  // Running: ends as connection_lost for the patient.
  const d2 = await doctor('D6');
  assert.equal((await d2.request('call_next', { clinic: 'general' })).consultation, p.consultation);
  await p.next('called');
  await p.request('accept');
  await d2.terminate();
  const ended = await p.nextMatching('ended', () => true, EXPIRY_WAIT_MS);
  assert.deepEqual(ended, { type: 'ended', consultation: p.consultation, reason: 'connection_lost' });
  assert.equal((await q.request('leave')).type, 'left');
});

test('the server stops on SIGTERM with exit status 0 and no sanitizer report', async () => {
  // A connection or two may still be open: the stop must cope with them.
  const result = await srv.stopCleanly();
  assert.equal(result.code, 0);
});
