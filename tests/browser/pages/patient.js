// patient.js - patient.html?clinic=ID: joins the clinic's queue, accepts when called,
// then offers its media to the relay. No test interaction needed.
import { testState, connect, request, on, startMedia, offerToRelay, fail } from './common.js';

testState.role = 'patient';
const clinic = new URLSearchParams(location.search).get('clinic') ?? 'general';

on('called', async (ev) => {
  testState.signalling = 'called';
  testState.calledBy = ev.doctor?.name ?? null;
  const reply = await request('accept', { consultation: testState.consultation });
  if (reply.type !== 'consultation_started') throw new Error(`accept answered ${reply.type}`);
  testState.signalling = 'in_consultation';
  await offerToRelay();
});
on('ended', (ev) => (testState.signalling = `ended (${ev.reason})`));

async function main() {
  await startMedia(); // camera and microphone first: the permission is granted by the test
  await connect();
  const joined = await request('join', { clinic, name: 'مريم الكعبي' });
  testState.consultation = joined.consultation;
  await request('device_status', { ready: true });
  testState.signalling = 'waiting';
}

main().catch((err) => {
  testState.signalling = 'failed';
  fail('start', err);
});
