// flow-patient.js - flow-patient.html?clinic=ID: the waiting room as tabib serves it now.
// Joins the queue (no device_status: readiness must come from the media), offers its
// media at once while waiting (the server loops it back: the self-test), accepts when
// called and keeps the same leg for the consultation (no new offer).
import { testState, connect, request, on, startMedia, offerToRelay, fail } from './common.js';
import { watchRemoteVideo, watchBandwidth } from './flow.js';

testState.offers = 0; // offers sent: one, the leg then serves the whole flow

testState.role = 'patient';
testState.phase = 'loading'; // loading, waiting, called, in_consultation, ended (reason)
const clinic = new URLSearchParams(location.search).get('clinic') ?? 'general';
const targetBps = Number(new URLSearchParams(location.search).get('bwe') ?? 1e6);

on('called', async (ev) => {
  testState.times.called = Date.now();
  testState.phase = 'called';
  testState.calledBy = ev.doctor?.name ?? null;
  const sent = request('accept', { consultation: testState.consultation });
  testState.times.acceptSent = Date.now();
  const reply = await sent;
  testState.times.started = Date.now();
  if (reply.type !== 'consultation_started') throw new Error(`accept answered ${reply.type}`);
  testState.phase = 'in_consultation';
});
on('ended', (ev) => {
  testState.times.ended = Date.now();
  testState.phase = `ended (${ev.reason})`;
});

async function main() {
  await startMedia(); // camera and microphone first: the permission is granted by the test
  watchRemoteVideo(document.getElementById('remote-video'));
  watchBandwidth({ targetBps });
  await connect();
  const joined = await request('join', { clinic, name: 'مريم الكعبي' });
  testState.consultation = joined.consultation;
  testState.phase = 'waiting';
  testState.times.joined = Date.now();
  testState.times.offerStarted = Date.now();
  testState.offers++;
  await offerToRelay(); // while waiting: the self-test loop
  testState.times.answered = Date.now();
}

main().catch((err) => {
  testState.phase = 'failed';
  fail('start', err);
});
