// doctor.js - doctor.html: the test signs in and calls through window.app:
//   await app.signIn(username, password, clinic)   login, then duty on
//   await app.callNext()                           call_next; offers once the patient accepts
import { testState, connect, request, on, startMedia, offerToRelay, fail } from './common.js';

testState.role = 'doctor';
let clinic = null;

on('consultation_started', async (ev) => {
  if (ev.consultation !== testState.consultation) return;
  testState.signalling = 'in_consultation';
  await offerToRelay();
});
on('ended', (ev) => (testState.signalling = `ended (${ev.reason})`));

const ready = (async () => {
  await startMedia();
  await connect();
})().catch((err) => {
  testState.signalling = 'failed';
  fail('start', err);
  throw err;
});

window.app = {
  async signIn(username, password, clinicId = 'general') {
    await ready;
    clinic = clinicId;
    await request('login', { username, password });
    testState.signalling = 'signed_in';
    await request('duty', { clinic, on: true });
    testState.signalling = 'on_duty';
  },
  async callNext() {
    const called = await request('call_next', { clinic });
    testState.consultation = called.consultation;
    testState.signalling = 'called';
    return called.consultation;
  },
};
