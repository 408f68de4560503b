// flow.test.js - the consultation flow with real Chromium on both ends, media through tabib.
//
// Two headless Chromium processes whose fake cameras film one solid colour each (the
// patient red, the doctor blue: Y4M files from lib/y4m.js), so that a page can tell
// whose video a decoded frame is by its colour (pages/flow.js). One scenario, in steps
// that build on each other (a step after a failed one is skipped, except after step 3,
// which only measures):
//
//   1. the doctor signs in, goes on duty and offers at once: the leg connects with no patient;
//   2. a patient joins and offers while waiting: the relay loops their media back to them
//      (the self-test): their own colour is decoded while they still wait, `media`
//      `flowing` arrives and the doctor's queue shows them `ready` (they never send
//      device_status); the doctor sees nothing of them yet;
//   3. each browser's bandwidth estimate (the selected pair's availableOutgoingBitrate)
//      reaches 1 Mbit/s within 15 s of its connection (transport-wide feedback);
//   4. the doctor sends call_next, the patient's page accepts at once, and the relay
//      re-points both legs without a new offer: each side must decode the OTHER side's
//      colour within 300 ms of the moment call_next was sent (both browsers run on this
//      machine, so their wall clocks are the same clock). The time checked is when the
//      page's requestVideoFrameCallback ran for that frame; the frame's presentation and
//      the arrival of its last packet are printed too;
//   5. the doctor ends the consultation: their leg stays up, and serves the next patient
//      (a new page in the patient's browser, same camera) when called, with no new offer.
//
// Like media.test.js it runs only inside a private network namespace whose only interface
// is lo (run-in-netns.sh).

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { writeToneWav } from './lib/wav.js';
import { writeSolidY4m } from './lib/y4m.js';
import { assertPrivateNetworkNamespace, launchChromium, openPage } from './lib/browser.js';
import { startMediaServer, assertCleanExit, DOCTOR } from './lib/server.js';

const SIDES = {
  patient: { colour: 'red', rgb: [255, 0, 0], hz: 440 },
  doctor: { colour: 'blue', rgb: [0, 0, 255], hz: 880 },
};
const OTHER = { patient: 'doctor', doctor: 'patient' };
const BWE_TARGET_BPS = 1_000_000;
const BWE_WITHIN_MS = 15000;
const BWE_SHOW_MS = 3000; // once reached, watch the estimate at least this long after connecting
const FIRST_FRAME_MAX_MS = 300; // call_next sent -> the other side's first decoded frame
const SELF_TEST_FRAMES = 10; // own-colour frames the waiting patient must see

let tmp;
let chromes = {}; // side -> launchChromium()
let server;
const pages = {}; // side -> page, once opened
let brokenAt = null; // the first step that failed: later steps are skipped

before(async () => {
  assertPrivateNetworkNamespace();
  tmp = mkdtempSync(path.join(os.tmpdir(), 'tabib-flow-'));
  const launches = Object.entries(SIDES).map(([side, s]) => {
    const wav = path.join(tmp, `tone-${s.hz}.wav`);
    const y4m = path.join(tmp, `${s.colour}.y4m`);
    writeToneWav(wav, { hz: s.hz });
    writeSolidY4m(y4m, { rgb: s.rgb, noise: 6 });
    return launchChromium({ label: side, fakeAudioFile: wav, fakeVideoFile: y4m });
  });
  let patient, doctor;
  [patient, doctor, server] = await Promise.all([...launches, startMediaServer()]);
  chromes = { patient, doctor };
  console.log(
    `Chromium ${patient.browser.version()}; tabib on 127.0.0.1:${server.port}, media 127.0.0.1:${server.mediaPort}; ` +
      `cameras: patient ${SIDES.patient.colour}, doctor ${SIDES.doctor.colour} (640x480, 20 fps Y4M)`,
  );
});

after(async () => {
  await Promise.allSettled(Object.values(pages).map((p) => p.context().close()));
  await Promise.allSettled(Object.values(chromes).map((c) => c.close()));
  if (server) {
    const result = await server.stop({ keepDir: true });
    try {
      assertCleanExit(result, 'tabib');
    } catch (err) {
      // Where it happened: the sanitizer's own lines (its report's location and stack).
      const where = result.stderr
        .split('\n')
        .filter((l) => /runtime error|Sanitizer|^\s*#\d+ 0x|SEGV/.test(l))
        .slice(0, 40);
      if (where.length) err.message += `\n--- sanitizer lines of tabib's stderr ---\n${where.join('\n')}`;
      throw err;
    } finally {
      server.cleanup();
    }
  }
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

async function readStates() {
  const out = {};
  for (const [side, page] of Object.entries(pages)) out[side] = await page.evaluate(() => window.testState);
  return out;
}

function stateLine(side, s) {
  const errors = s.errors.map((e) => `${e.request}: ${e.code}: ${e.message}`).join('; ') || 'none';
  const v = s.video ?? {};
  const b = s.bwe ?? {};
  const lastQueue = s.queues?.at(-1);
  return (
    `${side}: phase=${s.phase} signalling=${s.signalling} consultation=${s.consultation} ` +
    `offerSent=${s.offerSent} answerReceived=${s.answerReceived} pc=${s.connectionState} ice=${s.iceConnectionState} ` +
    `remoteTracks=[${s.remoteTracks}] media=${JSON.stringify(mediaStates(s))} ` +
    `video={frames:${v.frames}, byColour:${JSON.stringify(v.byColour)}, lastRgb:${JSON.stringify(v.lastRgb)}` +
    `${v.error ? `, error:${v.error}` : ''}} ` +
    `bwe={max:${kbps(b.max)}, reached:${JSON.stringify(b.reached)}} ` +
    (lastQueue ? `lastQueue=${JSON.stringify(lastQueue.patients)} ` : '') +
    `times=${JSON.stringify(s.times)} ws=${s.wsClosed ? JSON.stringify(s.wsClosed) : 'open'} errors=${errors}`
  );
}

/**
 * Polls the open pages until pred(states) holds, for at most timeoutMs. Fails at once when a
 * page reports an error or its socket closed, and on time-out, with every page's state.
 */
async function waitFor(what, pred, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const states = await readStates();
    const broken = Object.entries(states).filter(([, s]) => s.errors.length || s.wsClosed);
    if (broken.length || server.exited) {
      throw new Error(
        `${what}: failed${server.exited ? ` (tabib exited: ${JSON.stringify(server.exited)})` : ''}:\n` +
          Object.entries(states)
            .map(([side, s]) => '  ' + stateLine(side, s))
            .join('\n'),
      );
    }
    if (pred(states)) return states;
    if (Date.now() >= deadline) {
      throw new Error(
        `${what}: not reached in ${timeoutMs} ms:\n` +
          Object.entries(states)
            .map(([side, s]) => '  ' + stateLine(side, s))
            .join('\n'),
      );
    }
    await sleep(50);
  }
}

async function diagnostics() {
  const parts = [];
  try {
    const states = await readStates();
    parts.push('--- page state ---', ...Object.entries(states).map(([side, s]) => stateLine(side, s)));
  } catch (err) {
    parts.push(`--- page state unreadable: ${err.message}`);
  }
  for (const chrome of Object.values(chromes)) {
    parts.push(`--- ${chrome.label} console (last 30) ---`, ...chrome.log.slice(-30));
  }
  parts.push(
    `--- tabib ${server.exited ? `exited ${JSON.stringify(server.exited)}` : 'running'}; stderr (last 40 lines) ---`,
    ...server.stderr().trimEnd().split('\n').slice(-40),
  );
  return parts.join('\n');
}

/**
 * A step of the scenario: skipped after a failed one (unless that one was `measureOnly`: it
 * measured without changing what the later steps build on); a failure carries the diagnostics.
 */
function step(name, timeoutMs, body, { measureOnly = false } = {}) {
  test(name, { timeout: timeoutMs }, async (t) => {
    if (brokenAt) {
      t.skip(`step "${brokenAt}" failed`);
      return;
    }
    try {
      await body();
    } catch (err) {
      if (!measureOnly || server.exited) brokenAt = name;
      // A new Error: the reporter prints an AssertionError as its diff and would drop the rest.
      const wrapped = new Error(`${err.message}\n${await diagnostics()}`);
      const frames = String(err.stack ?? '').split('\n').filter((l) => /^\s+at /.test(l));
      wrapped.stack = [wrapped.message, ...frames].join('\n');
      throw wrapped;
    }
  });
}

const kbps = (bps) => (typeof bps === 'number' ? `${Math.round(bps / 1000)} kbit/s` : 'unknown');
const ms = (x) => (typeof x === 'number' ? `${x.toFixed(0)} ms` : 'n/a');
const since = (t, t0) => (typeof t === 'number' && typeof t0 === 'number' ? t - t0 : null);
const mediaAt = (s, state) => s.mediaTimes.find((m) => m.state === state)?.at ?? null;
const mediaStates = (s) => (s.mediaTimes ?? []).map((m) => m.state + (m.reason ? `:${m.reason}` : ''));
/** The first frame of `colour` the page presented at or after `t` (wall clock), or null. */
const firstFrameAfter = (state, colour, t) => state.video.log.find((f) => f.colour === colour && f.at >= t) ?? null;

/* ------------------------------------------------------------------ */
/* The scenario                                                        */
/* ------------------------------------------------------------------ */

step('a doctor on duty offers at once: the leg connects with no patient', 20000, async () => {
  const origin = `https://127.0.0.1:${server.port}`;
  pages.doctor = await openPage(chromes.doctor, origin, `/flow-doctor.html?bwe=${BWE_TARGET_BPS}`);
  await waitFor('doctor page ready', (st) => st.doctor.phase === 'open', 10000);
  await pages.doctor.evaluate(([u, p]) => window.app.onDuty(u, p, 'general'), [DOCTOR.username, DOCTOR.password]);
  const st = await waitFor(
    "the doctor's leg connected",
    (s) => s.doctor.connectionState === 'connected' && mediaAt(s.doctor, 'connected'),
    10000,
  );
  const d = st.doctor;
  console.log(
    `doctor: offer created and sent, answered +${ms(since(d.times.answered, d.times.offerStarted))}, ` +
      `peer connection connected +${ms(since(d.times.pcConnected, d.times.offerStarted))}, ` +
      `media connected +${ms(since(mediaAt(d, 'connected'), d.times.offerStarted))} (no patient yet); ` +
      `media events ${JSON.stringify(d.mediaTimes.map((m) => m.state))}`,
  );
});

step('a waiting patient sees themselves through the relay: own video decoded, flowing, ready in the queue', 25000, async () => {
  const origin = `https://127.0.0.1:${server.port}`;
  pages.patient = await openPage(chromes.patient, origin, `/flow-patient.html?clinic=general&bwe=${BWE_TARGET_BPS}`);
  const own = SIDES.patient.colour;
  const st = await waitFor(
    'the self-test: own video back, media flowing, ready in the queue',
    (s) => {
      const p = s.patient;
      const q = s.doctor.queues.at(-1)?.patients.find((x) => x.consultation === p.consultation);
      return (p.video?.byColour?.[own] ?? 0) >= SELF_TEST_FRAMES && mediaAt(p, 'flowing') && q?.ready === true;
    },
    15000,
  );
  const stats = await pages.patient.evaluate(() => window.media.stats());
  const after = await readStates();
  const p = after.patient;
  const t0 = p.times.offerStarted;
  const queueSeen = after.doctor.queues
    .map((q) => ({ at: q.at, entry: q.patients.find((x) => x.consultation === p.consultation) }))
    .filter((q) => q.entry);
  const firstQueue = queueSeen[0];
  const readyAt = queueSeen.find((q) => q.entry.ready === true)?.at;
  console.log(
    [
      `patient (waiting, ${p.consultation}): offer created and sent, answered +${ms(since(p.times.answered, t0))}, ` +
        `connected +${ms(since(mediaAt(p, 'connected'), t0))}, first own (${own}) frame back +${ms(since(p.video.first[own]?.at, t0))}, ` +
        `media flowing +${ms(since(mediaAt(p, 'flowing'), t0))}`,
      `  own video decoded while waiting: getStats framesDecoded ${stats.video?.framesDecoded} ` +
        `(${stats.video?.frameWidth}x${stats.video?.frameHeight}), frames presented by colour ${JSON.stringify(p.video.byColour)}, ` +
        `mean colour ${JSON.stringify(p.video.lastRgb)}`,
      `  doctor's queue: the patient listed ready=${firstQueue?.entry.ready} ${ms(since(firstQueue?.at, p.times.joined))} after joining, ` +
        `ready=true +${ms(since(readyAt, t0))} after the offer (the patient's page had \`flowing\` at +${ms(since(mediaAt(p, 'flowing'), t0))}; ` +
        `no device_status was sent)`,
      `  doctor's video before the call: ${after.doctor.video.frames} frames`,
    ].join('\n'),
  );
  assert.equal(p.phase, 'waiting', 'the patient is still waiting (not called)');
  assert.equal(p.times.called, undefined, 'the patient was not called');
  assert.ok(stats.video?.framesDecoded > 0, `inbound video frames decoded while waiting: ${JSON.stringify(stats.video)}`);
  assert.equal(p.video.byColour[SIDES.doctor.colour] ?? 0, 0, "no doctor's video reached the waiting patient");
  assert.equal(after.doctor.video.frames, 0, "the waiting patient's video did not reach the doctor before the call");
});

step("bandwidth: each sender's estimate reaches 1 Mbit/s within 15 s of connecting", 25000, async () => {
  // Reached (and a few seconds to show it holds), or past the deadline.
  const done = (b) => {
    if (!b?.connectedAt) return false;
    const age = Date.now() - b.connectedAt;
    return (b.reached && age >= BWE_SHOW_MS) || age > BWE_WITHIN_MS + 500;
  };
  const st = await waitFor('both bandwidth estimates reached or timed out', (s) => done(s.patient.bwe) && done(s.doctor.bwe), 20000);
  const problems = [];
  const target = kbps(BWE_TARGET_BPS);
  for (const side of ['patient', 'doctor']) {
    const b = st[side].bwe;
    const when = b.reached
      ? `reached ${kbps(b.reached.bps)} ${(b.reached.t / 1000).toFixed(1)} s after connecting`
      : `never reached ${target}`;
    // The estimate every 200 ms for the first second, then every second.
    const marks = [0, 200, 400, 600, 800];
    for (let t = 1000; t <= BWE_WITHIN_MS; t += 1000) marks.push(t);
    const trail = [];
    for (const t of marks) {
      const s = b.samples.find((x) => x.t >= t);
      if (!s) break;
      trail.push(`${(t / 1000).toFixed(1)}s:${s.bps === null ? '-' : Math.round(s.bps / 1000)}`);
    }
    const after = b.reached ? b.samples.filter((x) => x.t >= b.reached.t && x.bps !== null) : [];
    console.log(
      `${side}: availableOutgoingBitrate ${when}` +
        (after.length ? ` (lowest since ${kbps(Math.min(...after.map((x) => x.bps)))})` : '') +
        `; max ${kbps(b.max)} over ${((b.samples.at(-1)?.t ?? 0) / 1000).toFixed(1)} s; kbit/s: ${trail.join(' ')}; ` +
        `video encoder target now ${kbps(b.samples.at(-1)?.videoTarget)}`,
    );
    if (!b.reached || b.reached.t > BWE_WITHIN_MS)
      problems.push(
        `${side}: availableOutgoingBitrate did not reach ${target} within ${BWE_WITHIN_MS / 1000} s (max ${kbps(b.max)})`,
      );
  }
  if (problems.length) throw new Error(problems.join('\n'));
}, { measureOnly: true });

step("call next: each side decodes the other's first video frame within 300 ms", 20000, async () => {
  const before = await waitFor(
    'ready for the call',
    (s) => s.patient.phase === 'waiting' && s.doctor.connectionState === 'connected' && s.patient.video.lastColour === SIDES.patient.colour,
    5000,
  );
  // The patient's playout delay on their own video just before the call: a frame complete at
  // the receiver still waits this long in Chromium's jitter buffer before it is shown.
  const playout0 = await pages.patient.evaluate(() => window.media.stats());
  await sleep(1000);
  const playout1 = await pages.patient.evaluate(() => window.media.stats());
  const { consultation, sentAt } = await pages.doctor.evaluate(() => window.app.callNext());
  assert.equal(consultation, before.patient.consultation, 'the doctor called the waiting patient');
  const st = await waitFor(
    "each side decoding the other's video",
    (s) => s.patient.video.first[SIDES.doctor.colour] && s.doctor.video.first[SIDES.patient.colour] && s.patient.phase === 'in_consultation',
    5000,
  );
  const results = {};
  for (const side of ['patient', 'doctor']) {
    const s = st[side];
    const other = SIDES[OTHER[side]].colour;
    const f = s.video.first[other];
    assert.ok(f.at >= sentAt, `${side} saw the ${OTHER[side]}'s video ${ms(sentAt - f.at)} BEFORE call_next`);
    results[side] = {
      seen: f.at - sentAt,
      presented: f.presented - sentAt,
      received: f.received === null ? null : f.received - sentAt,
    };
    const changes = s.video.changes.filter((c) => c.at >= sentAt - 1000).map((c) => `${c.colour}@${ms(c.at - sentAt)}`);
    const ownAfter = s.video.last[SIDES[side].colour]?.at > f.at;
    console.log(
      `${side} sees the ${OTHER[side]} (${other}): last packet of the first frame +${ms(results[side].received)}, ` +
        `presented +${ms(results[side].presented)}, seen by the page +${ms(results[side].seen)} after call_next ` +
        `(frame ${f.size}, mean colour ${JSON.stringify(f.rgb)}); colour changes ${changes.join(' ')}` +
        (ownAfter ? `; own colour still presented after it, last +${ms(s.video.last[SIDES[side].colour].at - sentAt)}` : ''),
    );
  }
  const playout = (a, b) => {
    const n = (b?.jitterBufferEmittedCount ?? 0) - (a?.jitterBufferEmittedCount ?? 0);
    if (!(n > 0)) return 'no frames';
    return (
      `jitter buffer delay ${ms((1000 * (b.jitterBufferDelay - a.jitterBufferDelay)) / n)} a frame ` +
      `(target ${ms((1000 * (b.jitterBufferTargetDelay - a.jitterBufferTargetDelay)) / n)}) over ${n} frames`
    );
  };
  console.log(`patient's playout of their own video in the second before call_next: ${playout(playout0.video, playout1.video)}`);
  const p = st.patient.times;
  const d = st.doctor.times;
  console.log(
    `signalling after call_next: doctor's reply \`called\` +${ms(d.calledReply - sentAt)}, ` +
      `patient's event \`called\` +${ms(p.called - sentAt)}, accept sent +${ms(p.acceptSent - sentAt)}, ` +
      `consultation_started: patient +${ms(p.started - sentAt)}, doctor +${ms(d.started - sentAt)}`,
  );
  const slow = Object.entries(results).filter(([, r]) => !(r.seen < FIRST_FRAME_MAX_MS));
  if (slow.length)
    throw new Error(
      `the other side's first frame took ${FIRST_FRAME_MAX_MS} ms or more after call_next: ` +
        slow.map(([side, r]) => `${side} ${ms(r.seen)}`).join(', '),
    );
});

step("after end the doctor's leg stays up and serves the next patient without a new offer", 25000, async () => {
  await pages.doctor.evaluate(() => window.app.end());
  await waitFor('both sides ended', (s) => s.patient.phase.startsWith('ended') && s.doctor.phase.startsWith('ended'), 5000);
  const endedAt = Date.now();
  await sleep(1500);
  let st = await waitFor('still up 1.5 s after the end', () => true, 1000);
  const d = st.doctor;
  console.log(
    `after end: doctor pc=${d.connectionState}, doctor media events ${JSON.stringify(mediaStates(d))}, ` +
      `patient media events ${JSON.stringify(mediaStates(st.patient))}, ` +
      `doctor's last frame of the patient ${ms(d.video.last[SIDES.patient.colour]?.at - endedAt)} from the end; ` +
      `the doctor's \`flowing\` ${mediaAt(d, 'flowing') ? `came ${ms(mediaAt(d, 'flowing') - endedAt)} from the end` : 'has not come'}`,
  );
  assert.equal(d.connectionState, 'connected', "the doctor's peer connection is still connected");
  assert.ok(!d.mediaTimes.some((m) => m.state === 'ended'), `no media ended for the doctor: ${JSON.stringify(d.mediaTimes)}`);

  // The next patient (a new page in the patient's browser: the same red camera).
  await pages.patient.context().close();
  delete pages.patient;
  const origin = `https://127.0.0.1:${server.port}`;
  pages.next = await openPage(chromes.patient, origin, `/flow-patient.html?clinic=general&bwe=${BWE_TARGET_BPS}`);
  await waitFor(
    'the next patient waiting with the self-test flowing',
    (s) => s.next.phase === 'waiting' && mediaAt(s.next, 'flowing') && (s.next.video?.byColour?.[SIDES.patient.colour] ?? 0) > 0,
    15000,
  );
  const { consultation, sentAt } = await pages.doctor.evaluate(() => window.app.callNext());
  // Between the end and this call the doctor's leg was linked to nobody: nothing of the next
  // patient (on their self-test loop) may reach the doctor before they are called.
  const early = (await readStates()).doctor.video.log.filter((f) => f.at > endedAt + 200 && f.at < sentAt);
  st = await waitFor(
    'the doctor and the next patient decoding each other',
    (s) =>
      s.next.phase === 'in_consultation' &&
      firstFrameAfter(s.doctor, SIDES.patient.colour, sentAt) &&
      firstFrameAfter(s.next, SIDES.doctor.colour, sentAt),
    5000,
  );
  assert.equal(consultation, st.next.consultation, 'the doctor called the next patient');
  const toDoctor = firstFrameAfter(st.doctor, SIDES.patient.colour, sentAt);
  const toPatient = firstFrameAfter(st.next, SIDES.doctor.colour, sentAt);
  console.log(
    `next patient: the doctor sees them +${ms(toDoctor.at - sentAt)} after call_next ` +
      `(presented +${ms(toDoctor.presented - sentAt)}), ` +
      `they see the doctor +${ms(toPatient.at - sentAt)} (presented +${ms(toPatient.presented - sentAt)}); ` +
      `offers the doctor sent in all: ${st.doctor.offers}; doctor media events ${JSON.stringify(mediaStates(st.doctor))}`,
  );
  assert.equal(st.doctor.offers, 1, 'the doctor offered once, for both patients');
  assert.equal(early.length, 0, `the doctor was shown ${early.length} frames between the end and the next call`);
});
