// doctor_return.test.js - what `authenticated` tells a doctor's page: the
// clinics named in both languages, and the consultation still open from an
// earlier connection of the same sign-in (a reload, a new tab).

import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, httpsRequest, assertCleanExit, PASSWORD } from './lib/server.js';
import { connectAs, joinAs } from './lib/client.js';

let srv;

after(async () => {
  if (srv) assertCleanExit(await srv.stop());
});

test('a doctor back on a new connection finds their clinics and their open consultation', async () => {
  srv = await startServer({ accounts: [{ username: 'dr.amal', role: 'doctor', clinics: ['general'] }] });
  const login = await httpsRequest(srv.port, 'POST', '/api/login', { body: { username: 'dr.amal', password: PASSWORD } });
  const token = login.json.token;
  const first = await connectAs(srv.port, token, 'first');
  assert.equal((await first.request('duty', { clinic: 'general', on: true })).type, 'duty');
  const patient = await joinAs(srv.port, 'general', 'مريم الكعبي');
  assert.equal((await first.request('call_next', { clinic: 'general' })).type, 'called');
  assert.equal((await patient.request('accept')).type, 'consultation_started');

  const second = await (await import('./lib/client.js')).connect(srv.port, { label: 'second' });
  const auth = await second.request('auth', { token });
  assert.equal(auth.type, 'authenticated');
  assert.deepEqual(auth.clinics, [{ id: 'general', name_en: 'General Practice', name_ar: 'الطب العام' }]);
  assert.deepEqual(auth.current, {
    consultation: patient.consultation,
    state: 'in_consultation',
    clinic: 'general',
    patient: { name: 'مريم الكعبي', patient_ref: null, priority: 'routine' },
  });
  assert.equal((await second.request('end', { consultation: patient.consultation })).type, 'ending');
  const third = await (await import('./lib/client.js')).connect(srv.port, { label: 'third' });
  const again = await third.request('auth', { token });
  assert.equal(again.current, undefined, 'nothing open any more');
  for (const c of [first, second, third, patient]) c.close();
});

test('GET /api/clinics names every clinic in both languages, without signing in', async () => {
  const r = await httpsRequest(srv.port, 'GET', '/api/clinics');
  assert.equal(r.status, 200);
  const general = r.json.clinics.find((c) => c.id === 'general');
  assert.deepEqual(general, { id: 'general', name_en: 'General Practice', name_ar: 'الطب العام', open: true });
});
