// transcript.test.js - a patient and a doctor from join to end, as in the
// "A full transcript" section of docs/protocol.md, against the real server;
// then the appointment path (POST /api/appointments, urgent lane).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, assertCleanExit, PASSWORD } from './lib/server.js';
import { connect, connectAs, joinAs } from './lib/client.js';

const CLINIC = { id: 'general', name_en: 'General Practice', name_ar: 'الطب العام', queue_limit: 50 };
// Arabic with diacritics, a ZWJ-free mixed-direction tail and a non-BMP character: all must come back byte for byte.
const ARABIC_NAME = 'مَرْيَم الكَعْبي (Maryam) ٣٤ 🌿';

let srv;
const clients = [];
const track = (c) => (clients.push(c), c);

before(async () => {
  srv = await startServer({
    clinics: [CLINIC, { id: 'eyes', name_en: 'Eyes', name_ar: 'العيون' }],
    accounts: [{ username: 'dr.amal', role: 'doctor', clinics: ['general'] }],
  });
});

after(async () => {
  for (const c of clients) if (c.isOpen) await c.close();
  if (srv && !srv.exited) assertCleanExit(await srv.stop());
});

test('a patient and a doctor from join to end', async () => {
  // The patient joins before any doctor is on duty.
  const patient = track(await connect(srv.port, { label: 'P' }));
  const joined = await patient.request('join', { clinic: 'general', name: ARABIC_NAME });
  assert.equal(joined.type, 'joined', JSON.stringify(joined));
  const id = joined.consultation;
  assert.match(id, /^c_[a-z0-9]{21}$/);
  assert.equal(joined.state, 'waiting');
  assert.equal(joined.position, 1);
  assert.equal(joined.estimated_wait_s, null, 'no doctor on duty: no estimate');
  assert.equal(joined.doctors_on_duty, 0);
  assert.equal(joined.urgent, false);
  assert.equal(joined.grace_s, 60);
  assert.match(joined.resume_token, /^[A-Za-z0-9_-]{43}$/);
  assert.deepEqual(joined.clinic, { id: 'general', name_en: 'General Practice', name_ar: 'الطب العام' });

  // The doctor signs in over the socket first: `login` gives a token on the spot.
  const early = track(await connect(srv.port, { label: 'D0' }));
  const wrong = await early.request('login', { username: 'dr.amal', password: 'not the password' });
  assert.equal(wrong.code, 'unauthorized');
  const signedIn = await early.request('login', { username: 'dr.amal', password: PASSWORD });
  assert.equal(signedIn.type, 'signed_in', JSON.stringify(signedIn));
  assert.match(signedIn.token, /^[A-Za-z0-9_-]{43}$/);
  assert.deepEqual(signedIn.user, { username: 'dr.amal', role: 'doctor', clinics: ['general'], all_clinics: false });

  // Then as the web app does: POST /api/login, and `auth` with that token on a new socket,
  // which takes the account over from the first socket (closed with 4001).
  const token = await srv.login('dr.amal');
  const doctor = track(await connect(srv.port, { label: 'D' }));
  const auth = await doctor.request('auth', { token });
  assert.equal(auth.type, 'authenticated', JSON.stringify(auth));
  assert.equal(auth.user.username, 'dr.amal');
  assert.equal(auth.user.role, 'doctor');
  assert.equal(auth.expires_in_s, 43200);
  assert.equal(auth.token, undefined, 'auth does not hand out a new token');
  const taken = await early.closed;
  assert.equal(taken.code, 4001);
  assert.equal(taken.reason, 'signed in on another connection');
  // A second `auth` on the same socket is a conflict: one role per connection.
  assert.equal((await doctor.request('auth', { token })).code, 'conflict');

  // Duty on: the reply, then the queue with the patient in it.
  const duty = await doctor.request('duty', { clinic: 'general', on: true });
  assert.deepEqual([duty.type, duty.clinic, duty.on], ['duty', 'general', true]);
  const queue = await doctor.nextMatching('queue', (q) => q.patients.length === 1);
  assert.equal(queue.clinic, 'general');
  assert.equal(queue.doctors_on_duty, 1);
  const entry = queue.patients[0];
  assert.equal(entry.consultation, id);
  assert.equal(entry.name, ARABIC_NAME, 'the name comes back exactly');
  assert.equal(Buffer.from(entry.name).equals(Buffer.from(ARABIC_NAME)), true);
  assert.equal(entry.priority, 'routine');
  assert.equal(entry.ready, false);
  assert.equal(entry.connected, true);
  assert.equal(entry.patient_ref, null, 'no patient reference without an appointment');
  // The patient now has an estimate: position 1 x 10 minutes / 1 doctor.
  const pos = await patient.nextMatching('position', (p) => p.estimated_wait_s !== null);
  assert.deepEqual(
    { position: pos.position, estimated_wait_s: pos.estimated_wait_s, doctors_on_duty: pos.doctors_on_duty },
    { position: 1, estimated_wait_s: 600, doctors_on_duty: 1 },
  );

  // Devices checked: the doctor's queue shows it.
  const dev = await patient.request('device_status', { ready: true });
  assert.equal(dev.type, 'device_status');
  assert.equal(dev.ready, true);
  const readyQueue = await doctor.nextMatching('queue', (q) => q.patients.length === 1 && q.patients[0].ready);
  assert.equal(readyQueue.patients[0].consultation, id);

  // Call.
  const called = await doctor.request('call_next', { clinic: 'general' });
  assert.equal(called.type, 'called', JSON.stringify(called));
  assert.equal(called.consultation, id);
  assert.equal(called.clinic, 'general');
  assert.deepEqual(called.patient, { name: ARABIC_NAME, patient_ref: null, priority: 'routine', ready: true, connected: true });
  assert.equal(typeof called.waited_s, 'number');
  const calledEv = await patient.next('called');
  assert.deepEqual(calledEv, { type: 'called', consultation: id, doctor: { name: 'dr.amal' } });
  const emptied = await doctor.nextMatching('queue', (q) => q.patients.length === 0);
  assert.equal(emptied.clinic, 'general');
  // One consultation at a time.
  assert.equal((await doctor.request('call_next', { clinic: 'general' })).code, 'conflict');

  // Accept: both sides hear that it started.
  const started = await patient.request('accept');
  assert.equal(started.type, 'consultation_started');
  assert.equal(started.consultation, id);
  const startedEv = await doctor.next('consultation_started');
  assert.deepEqual(startedEv, { type: 'consultation_started', consultation: id });
  // Accepting twice is a state conflict.
  assert.equal((await patient.request('accept')).code, 'conflict');

  // End: the reply, then `ended` to both.
  const ending = await doctor.request('end', { consultation: id });
  assert.deepEqual(
    { type: ending.type, consultation: ending.consultation, reason: ending.reason },
    { type: 'ending', consultation: id, reason: 'completed' },
  );
  assert.deepEqual(await doctor.next('ended'), { type: 'ended', consultation: id, reason: 'completed' });
  assert.deepEqual(await patient.next('ended'), { type: 'ended', consultation: id, reason: 'completed' });
  // The consultation is gone, and the patient's connection may join again.
  assert.equal((await doctor.request('end', { consultation: id })).code, 'not_found');
  assert.equal((await patient.request('leave')).code, 'unauthorized');
  assert.equal((await patient.request('ping')).type, 'pong');

  // The audit log has the whole story of this consultation, in order, with its actors.
  const rows = await srv.audit(`consultation = '${id}'`, {
    done: (r) => r.some((e) => e.type === 'consultation_ended'),
  });
  const types = rows.map((r) => r.type);
  assert.deepEqual(
    types.filter((t) => ['queue_joined', 'consultation_called', 'consultation_started', 'consultation_ended'].includes(t)),
    ['queue_joined', 'consultation_called', 'consultation_started', 'consultation_ended'],
  );
  const byType = Object.fromEntries(rows.map((r) => [r.type, r]));
  assert.equal(byType.queue_joined.actor_role, 'patient');
  assert.equal(byType.queue_joined.actor_id, id);
  assert.equal(byType.queue_joined.clinic, 'general');
  assert.equal(byType.queue_joined.source, '127.0.0.1');
  assert.equal(byType.queue_joined.details.name, ARABIC_NAME);
  assert.equal(byType.queue_joined.details.via, 'link');
  assert.equal(byType.consultation_called.actor_role, 'doctor');
  assert.equal(byType.consultation_called.actor_id, 'dr.amal');
  assert.equal(byType.consultation_started.actor_role, 'patient');
  assert.equal(byType.consultation_ended.actor_id, 'dr.amal');
  assert.equal(byType.consultation_ended.outcome, 'ok');
  assert.equal(byType.consultation_ended.details.reason, 'completed');
  assert.equal(byType.consultation_ended.details.from, 'in_consultation');
  assert.equal(byType.consultation_ended.details.doctor, 'dr.amal');
  // And the sign-ins around it: each names the account as its actor (docs/protocol.md, "Audit events").
  const signIns = await srv.audit(`type in ('sign_in','sign_in_failed','session_resumed')`, {
    done: (r) => r.length >= 4,
  });
  assert.deepEqual(
    signIns.map((r) => `${r.type}/${r.outcome}`),
    ['sign_in_failed/failed', 'sign_in/ok', 'sign_in/ok', 'session_resumed/ok'],
  );
  assert.deepEqual(
    signIns.map((r) => [r.actor_role, r.actor_id]),
    [
      ['anonymous', 'dr.amal'],
      ['doctor', 'dr.amal'],
      ['doctor', 'dr.amal'],
      ['doctor', 'dr.amal'],
    ],
    'session_resumed must name the doctor who resumed the session',
  );

  await doctor.request('duty', { clinic: 'general', on: false });
  await doctor.close();
  await patient.close();
});

test('an urgent appointment goes ahead of a routine patient', async () => {
  const token = await srv.login('dr.amal');
  const doctor = track(await connectAs(srv.port, token, 'D2'));
  await doctor.request('duty', { clinic: 'general', on: true });

  const routine = track(await joinAs(srv.port, 'general', 'Routine Rashid', 'R'));
  assert.equal(routine.joined.position, 1);
  assert.equal(routine.joined.urgent, false);

  // Without a token: 401; with one: 201 and a single-use token.
  const anon = await srv.appointment(undefined, { clinic: 'general', priority: 'urgent' });
  assert.equal(anon.status, 401);
  assert.equal(anon.json.code, 'unauthorized');
  const appt = await srv.appointment(token, { clinic: 'general', priority: 'urgent', patient_ref: 'QID 28463400123' });
  assert.equal(appt.status, 201, appt.text);
  assert.match(appt.json.token, /^[A-Za-z0-9_-]{43}$/);
  assert.equal(appt.json.link, `/c/general?appointment=${appt.json.token}`);
  assert.equal(appt.json.clinic, 'general');
  assert.equal(appt.json.expires_in_s, 7 * 24 * 3600);

  const urgent = track(await connect(srv.port, { label: 'U' }));
  const joined = await urgent.request('join', { appointment: appt.json.token, name: 'نورة' });
  assert.equal(joined.type, 'joined', JSON.stringify(joined));
  assert.equal(joined.urgent, true);
  assert.equal(joined.position, 1, 'the urgent lane is ahead of routine patients');
  assert.equal(joined.clinic.id, 'general');
  // The routine patient moved down one place.
  const moved = await routine.nextMatching('position', (p) => p.position === 2);
  assert.equal(moved.consultation, routine.consultation);
  // The doctor's queue: urgent first, with the patient reference.
  const q = await doctor.nextMatching('queue', (x) => x.patients.length === 2);
  assert.deepEqual(
    q.patients.map((p) => [p.consultation, p.priority, p.patient_ref ?? null]),
    [
      [joined.consultation, 'urgent', 'QID 28463400123'],
      [routine.consultation, 'routine', null],
    ],
  );
  // Single use.
  const again = track(await connect(srv.port, { label: 'U2' }));
  assert.equal((await again.request('join', { appointment: appt.json.token, name: 'Again' })).code, 'not_found');

  // call_next takes the urgent patient first, then the routine one.
  const first = await doctor.request('call_next', { clinic: 'general' });
  assert.equal(first.consultation, joined.consultation);
  assert.equal(first.patient.priority, 'urgent');
  assert.equal(first.patient.patient_ref, 'QID 28463400123');
  await urgent.next('called');
  assert.equal((await doctor.request('end', { consultation: first.consultation })).reason, 'doctor_ended');
  assert.equal((await urgent.next('ended')).reason, 'doctor_ended');
  const second = await doctor.request('call_next', { clinic: 'general' });
  assert.equal(second.consultation, routine.consultation);
  assert.equal((await routine.request('leave')).type, 'left');
  assert.equal((await doctor.nextMatching('ended', (e) => e.consultation === first.consultation)).reason, 'doctor_ended');
  assert.deepEqual(await doctor.nextMatching('ended', (e) => e.consultation === routine.consultation), {
    type: 'ended',
    consultation: routine.consultation,
    reason: 'patient_left',
  });

  const issued = await srv.audit(`type = 'appointment_issued'`);
  assert.equal(issued.length, 1);
  assert.equal(issued[0].actor_id, 'dr.amal');
  assert.equal(issued[0].clinic, 'general');
  assert.deepEqual(issued[0].details, { priority: 'urgent', has_patient_ref: true });
  const joinedRow = await srv.audit(`type = 'queue_joined' and consultation = '${joined.consultation}'`);
  assert.equal(joinedRow[0].details.via, 'appointment');
  assert.equal(joinedRow[0].details.priority, 'urgent');
  assert.equal(joinedRow[0].details.patient_ref, 'QID 28463400123');
  const refused = await srv.audit(`type = 'appointment_refused'`);
  assert.equal(refused.length, 1);
  assert.equal(refused[0].outcome, 'denied');
});

test('the server stops on SIGTERM with exit status 0 and no sanitizer report', async () => {
  // A connection or two may still be open: the stop must cope with them.
  const result = await srv.stopCleanly();
  assert.equal(result.code, 0);
});
