// flow-doctor.js - flow-doctor.html: a doctor whose media leg lives across patients.
// The test drives it through window.app:
//   await app.onDuty(username, password, clinic)  login, duty on, then offer at once
//   await app.callNext()                         call_next; resolves {consultation, sentAt}
//   await app.end()                              end the consultation (the leg stays)
// The doctor never offers again: the relay re-points the leg to each patient.
import { testState, connect, request, on, startMedia, offerToRelay, fail } from './common.js';
import { watchRemoteVideo, watchBandwidth } from './flow.js';

testState.offers = 0; // offers sent: one, the leg then serves the whole flow

testState.role = 'doctor';
testState.phase = 'loading'; // loading, open, on_duty, called, in_consultation, ended (reason)
testState.queues = []; // {at, patients: [{consultation, ready, connected}]}, in order (the last 50)
const targetBps = Number(new URLSearchParams(location.search).get('bwe') ?? 1e6);
let clinic = null;

on('queue', (ev) => {
  testState.queues.push({
    at: Date.now(),
    patients: (ev.patients ?? []).map((p) => ({ consultation: p.consultation, ready: p.ready, connected: p.connected })),
  });
  if (testState.queues.length > 50) testState.queues.shift();
});
on('consultation_started', (ev) => {
  if (ev.consultation !== testState.consultation) return;
  testState.times.started = Date.now();
  testState.phase = 'in_consultation';
});
on('ended', (ev) => {
  testState.times.ended = Date.now();
  testState.phase = `ended (${ev.reason})`;
});

const ready = (async () => {
  await startMedia();
  watchRemoteVideo(document.getElementById('remote-video'));
  watchBandwidth({ targetBps });
  await connect();
  testState.phase = 'open';
})().catch((err) => {
  testState.phase = 'failed';
  fail('start', err);
  throw err;
});

window.app = {
  async onDuty(username, password, clinicId = 'general') {
    await ready;
    clinic = clinicId;
    await request('login', { username, password });
    await request('duty', { clinic, on: true });
    testState.phase = 'on_duty';
    testState.times.offerStarted = Date.now();
    testState.offers++;
  await offerToRelay(); // no patient yet: the leg waits for the first one
    testState.times.answered = Date.now();
  },
  async callNext() {
    const sentAt = Date.now();
    const sent = request('call_next', { clinic }); // sends synchronously
    testState.times.callNextSent = sentAt;
    const called = await sent;
    testState.times.calledReply = Date.now();
    testState.consultation = called.consultation;
    testState.phase = 'called';
    return { consultation: called.consultation, sentAt };
  },
  async end() {
    const reply = await request('end', { consultation: testState.consultation });
    testState.times.ending = Date.now();
    return reply;
  },
};
