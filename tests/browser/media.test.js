// media.test.js - real Chromium on both ends of a consultation, media through tabib.
//
// Two headless Chromium processes (Debian's, driven by playwright-core) with fake
// cameras (640x480 at 20 fps) and fake microphones playing a tone from a WAV file:
// 440 Hz for the patient, 880 Hz for the doctor. Each side checks for 15 s what
// it receives: video decoded at the sender's frame rate, audio arriving, no packet
// lost, and the other side's tone as the peak of its received audio.
//
//   1. direct call: the two browsers call each other without the server (the test
//      carries offer and answer), which shows the harness and its measurements work.
//   2. through tabib: the patient joins, the doctor calls, the patient accepts, and
//      both offer their media to the relay, which answers (ICE-lite on 127.0.0.1).
//
// It must run inside a private network namespace whose only interface is lo
// (run-in-netns.sh, which ctest uses): outside one Chromium would gather and use
// the machine's real addresses. It refuses to run anywhere else.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { writeToneWav } from './lib/wav.js';
import { assertPrivateNetworkNamespace, launchChromium, openPage } from './lib/browser.js';
import { startMediaServer, assertCleanExit, DOCTOR } from './lib/server.js';

const PATIENT_HZ = 440;
const DOCTOR_HZ = 880;
const CAMERA_FPS = 20; // Chromium's fake camera
const FPS_TOLERANCE = 0.1;
const MEASURE_S = 15;
const DIRECT_MEASURE_S = 6;
const PEAK_TOLERANCE_BINS = 2;
const LOOPBACK = new Set(['127.0.0.1', '::1']);

let tmp;
let patientChrome;
let doctorChrome;
let server;

before(async () => {
  assertPrivateNetworkNamespace();
  tmp = mkdtempSync(path.join(os.tmpdir(), 'tabib-browser-'));
  const patientWav = path.join(tmp, `tone-${PATIENT_HZ}.wav`);
  const doctorWav = path.join(tmp, `tone-${DOCTOR_HZ}.wav`);
  writeToneWav(patientWav, { hz: PATIENT_HZ });
  writeToneWav(doctorWav, { hz: DOCTOR_HZ });
  [patientChrome, doctorChrome, server] = await Promise.all([
    launchChromium({ label: 'patient', fakeAudioFile: patientWav }),
    launchChromium({ label: 'doctor', fakeAudioFile: doctorWav }),
    startMediaServer(),
  ]);
  console.log(
    `Chromium ${patientChrome.browser.version()}; tabib on 127.0.0.1:${server.port}, media 127.0.0.1:${server.mediaPort}`,
  );
});

after(async () => {
  const closing = [patientChrome?.close(), doctorChrome?.close()];
  await Promise.allSettled(closing);
  if (server) {
    const result = await server.stop({ keepDir: true });
    try {
      assertCleanExit(result, 'tabib');
    } finally {
      server.cleanup();
    }
  }
  if (tmp) rmSync(tmp, { recursive: true, force: true });
});

/* ------------------------------------------------------------------ */
/* Helpers                                                             */
/* ------------------------------------------------------------------ */

/** Both pages' window.testState. */
async function readStates(pages) {
  const out = {};
  for (const [side, page] of Object.entries(pages)) out[side] = await page.evaluate(() => window.testState);
  return out;
}

function stateLine(side, s) {
  const errors = s.errors.map((e) => `${e.request}: ${e.code}: ${e.message}`).join('; ') || 'none';
  return (
    `${side}: signalling=${s.signalling} consultation=${s.consultation} offerSent=${s.offerSent} ` +
    `answerReceived=${s.answerReceived} pc=${s.connectionState} ice=${s.iceConnectionState} ` +
    `localCandidates=${s.localCandidates.length} remoteTracks=[${s.remoteTracks}] ` +
    `mediaEvents=${JSON.stringify(s.mediaEvents)} ws=${s.wsClosed ? JSON.stringify(s.wsClosed) : 'open'} ` +
    `errors=${errors}`
  );
}

/**
 * Polls both pages until pred(states) holds, for at most timeoutMs. Fails at once when a
 * page reports an error or its socket closed, saying which and why.
 */
async function waitFor(pages, what, pred, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const states = await readStates(pages);
    const broken = Object.entries(states).filter(([, s]) => s.errors.length || s.wsClosed);
    if (broken.length) {
      throw new Error(
        `${what}: failed:\n` + broken.map(([side, s]) => '  ' + stateLine(side, s)).join('\n'),
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
    await sleep(100);
  }
}

/** What to print when a test fails: both pages' state, the browsers' logs, the server's log. */
async function diagnostics(pages) {
  const parts = [];
  try {
    const states = await readStates(pages);
    parts.push('--- page state ---', ...Object.entries(states).map(([side, s]) => stateLine(side, s)));
  } catch (err) {
    parts.push(`--- page state unreadable: ${err.message}`);
  }
  for (const chrome of [patientChrome, doctorChrome]) {
    parts.push(`--- ${chrome.label} console (last 30) ---`, ...chrome.log.slice(-30));
  }
  parts.push('--- tabib stderr (last 40 lines) ---', ...server.stderr().trimEnd().split('\n').slice(-40));
  return parts.join('\n');
}

/** Runs body(pages); on failure adds the diagnostics to the error. Closes the pages after. */
async function withPages(pages, body) {
  try {
    await body(pages);
  } catch (err) {
    // A new Error: the reporter prints an AssertionError as its diff and would drop the rest.
    const wrapped = new Error(`${err.message}\n${await diagnostics(pages)}`);
    const frames = String(err.stack ?? '').split('\n').filter((l) => /^\s+at /.test(l));
    wrapped.stack = [wrapped.message, ...frames].join('\n');
    throw wrapped;
  } finally {
    await Promise.allSettled(Object.values(pages).filter(Boolean).map((p) => p.context().close()));
  }
}

/** Samples both pages' getStats once a second for `seconds`; resolves {side: [summary...]}. */
async function sampleStats(pages, seconds) {
  const samples = Object.fromEntries(Object.keys(pages).map((side) => [side, []]));
  const t0 = Date.now();
  for (let i = 0; i <= seconds; i++) {
    const wait = t0 + i * 1000 - Date.now();
    if (wait > 0) await sleep(wait);
    await Promise.all(
      Object.entries(pages).map(async ([side, page]) => samples[side].push(await page.evaluate(() => window.media.stats()))),
    );
  }
  return samples;
}

/** The figures of one side's samples and audio peak. */
function figures(side, samples, peak) {
  const first = samples[0];
  const last = samples.at(-1);
  const secs = (last.at - first.at) / 1000;
  const v0 = first.video ?? {};
  const v1 = last.video ?? {};
  const a0 = first.audio ?? {};
  const a1 = last.audio ?? {};
  let audioStalls = 0;
  let audioPacketStalls = 0;
  for (let i = 1; i < samples.length; i++) {
    if (!(samples[i].audio?.totalSamplesReceived > samples[i - 1].audio?.totalSamplesReceived)) audioStalls++;
    if (!(samples[i].audio?.packetsReceived > samples[i - 1].audio?.packetsReceived)) audioPacketStalls++;
  }
  return {
    side,
    seconds: secs,
    fps: (v1.framesDecoded - v0.framesDecoded) / secs,
    framesDecoded: v1.framesDecoded - v0.framesDecoded,
    reportedFps: v1.framesPerSecond,
    size: `${v1.frameWidth}x${v1.frameHeight}`,
    videoPackets: v1.packetsReceived - v0.packetsReceived,
    videoLost: Math.max(...samples.map((s) => s.video?.packetsLost ?? Infinity)),
    audioSamples: a1.totalSamplesReceived - a0.totalSamplesReceived,
    audioPackets: a1.packetsReceived - a0.packetsReceived,
    concealed: a1.concealedSamples - a0.concealedSamples,
    audioLost: Math.max(...samples.map((s) => s.audio?.packetsLost ?? Infinity)),
    audioStalls,
    audioPacketStalls,
    sentFps: last.outVideo?.framesPerSecond,
    sentLimit: last.outVideo?.qualityLimitationReason,
    sentTargetBitrate: last.outVideo?.targetBitrate,
    sentSize: `${last.outVideo?.frameWidth}x${last.outVideo?.frameHeight}`,
    pair: last.pair,
    peak,
  };
}

const kbps = (bps) => (typeof bps === 'number' ? `${Math.round(bps / 1000)} kbit/s` : 'unknown');

function describeFigures(f, heardHz) {
  const pair = f.pair
    ? `${f.pair.local?.address}:${f.pair.local?.port} -> ${f.pair.remote?.address}:${f.pair.remote?.port} ` +
      `${f.pair.local?.protocol} ${f.pair.local?.type}/${f.pair.remote?.type}`
    : 'none';
  return [
    `${f.side} receives over ${f.seconds.toFixed(1)} s:`,
    `  video ${f.size}: ${f.fps.toFixed(2)} fps decoded (${f.framesDecoded} frames, ` +
      `getStats framesPerSecond ${f.reportedFps}), ${f.videoPackets} packets, ${f.videoLost} lost`,
    `  audio: ${f.audioSamples} samples (${Math.round(f.audioSamples / f.seconds)}/s), ${f.audioPackets} packets, ` +
      `${f.audioLost} lost, ${f.concealed} concealed samples, ${f.audioStalls} stalled seconds`,
    `  audio peak: ${f.peak.peakHz === null ? 'silence' : f.peak.peakHz.toFixed(1) + ' Hz'} ` +
      `(${f.peak.peakDb === null ? '-inf' : f.peak.peakDb.toFixed(1)} dB, bin ${f.peak.binHz.toFixed(2)} Hz; the other side sends ${heardHz} Hz)`,
    `  own video sent: ${f.sentSize} at ${f.sentFps} fps, target ${kbps(f.sentTargetBitrate)} ` +
      `(quality limited by ${f.sentLimit}; available outgoing ${kbps(f.pair?.availableOutgoingBitrate)})`,
    `  selected pair ${pair}`,
  ].join('\n');
}

/**
 * Waits for media to flow to both pages, measures for `seconds`, prints the figures and
 * checks them. `expectRemote(pair)` checks each side's selected candidate pair.
 */
async function measureAndCheck(pages, seconds, expectRemote) {
  await waitFor(pages, 'peer connections connected', (st) => Object.values(st).every((s) => s.connectionState === 'connected'), 15000);
  // The first decoded frame and audio packet on both sides, then a second to settle.
  const deadline = Date.now() + 10000;
  for (;;) {
    const stats = await Promise.all(Object.values(pages).map((p) => p.evaluate(() => window.media.stats())));
    if (stats.every((s) => s.video?.framesDecoded > 0 && s.audio?.packetsReceived > 0)) break;
    if (Date.now() >= deadline) {
      throw new Error(
        'connected, but no video decoded or no audio received in 10 s: ' +
          JSON.stringify(Object.fromEntries(Object.keys(pages).map((side, i) => [side, stats[i]]))),
      );
    }
    await sleep(200);
  }
  await sleep(1000);

  const samples = await sampleStats(pages, seconds);
  const peaks = await Promise.all(Object.values(pages).map((p) => p.evaluate(() => window.media.audioPeak(1000))));
  const heard = { patient: DOCTOR_HZ, doctor: PATIENT_HZ };
  const figs = Object.keys(pages).map((side, i) => figures(side, samples[side], peaks[i]));
  for (const f of figs) console.log(describeFigures(f, heard[f.side]));

  const problems = [];
  for (const f of figs) {
    if (Math.abs(f.fps - CAMERA_FPS) > CAMERA_FPS * FPS_TOLERANCE)
      problems.push(`${f.side}: video decoded at ${f.fps.toFixed(2)} fps, not ${CAMERA_FPS} ± ${FPS_TOLERANCE * 100}%`);
    if (f.audioStalls || f.audioPacketStalls)
      problems.push(
        `${f.side}: audio did not grow every second (samples stalled ${f.audioStalls}, packets stalled ${f.audioPacketStalls} of ${samples[f.side].length - 1})`,
      );
    if (f.videoLost !== 0) problems.push(`${f.side}: ${f.videoLost} video packets lost`);
    if (f.audioLost !== 0) problems.push(`${f.side}: ${f.audioLost} audio packets lost`);
    const want = heard[f.side];
    if (f.peak.peakHz === null || Math.abs(f.peak.peakHz - want) > PEAK_TOLERANCE_BINS * f.peak.binHz)
      problems.push(`${f.side}: received audio peaks at ${f.peak.peakHz} Hz, not ${want} Hz`);
    const pairProblem = expectRemote(f.pair);
    if (pairProblem) problems.push(`${f.side}: selected candidate pair ${JSON.stringify(f.pair)}: ${pairProblem}`);
  }
  if (problems.length) throw new Error(`media figures out of bounds:\n  ${problems.join('\n  ')}`);
}

/* ------------------------------------------------------------------ */
/* Tests                                                               */
/* ------------------------------------------------------------------ */

test('direct call between the two browsers: the harness measures what it should', { timeout: 60000 }, async () => {
  for (const chrome of [patientChrome, doctorChrome]) chrome.log.length = 0;
  const origin = `https://127.0.0.1:${server.port}`;
  const pages = {
    patient: await openPage(patientChrome, origin, '/direct.html?role=patient'),
    doctor: await openPage(doctorChrome, origin, '/direct.html?role=doctor'),
  };
  await withPages(pages, async () => {
    await waitFor(pages, 'camera and microphone', (st) => Object.values(st).every((s) => s.signalling === 'media_ready'), 10000);
    const offer = await pages.patient.evaluate(() => window.media.createOffer());
    const answer = await pages.doctor.evaluate((sdp) => window.media.answerOffer(sdp), offer);
    await pages.patient.evaluate((sdp) => window.media.applyAnswer(sdp), answer);
    await measureAndCheck(pages, DIRECT_MEASURE_S, (pair) => {
      if (!pair) return 'none selected';
      if (!LOOPBACK.has(pair.local?.address) || !LOOPBACK.has(pair.remote?.address)) return 'not loopback';
      return null;
    });
  });
});

test('consultation through tabib: audio and video flow both ways through the relay', { timeout: 90000 }, async () => {
  for (const chrome of [patientChrome, doctorChrome]) chrome.log.length = 0;
  const origin = `https://127.0.0.1:${server.port}`;
  const pages = {
    patient: null,
    doctor: await openPage(doctorChrome, origin, '/doctor.html'),
  };
  pages.patient = await openPage(patientChrome, origin, '/patient.html?clinic=general');
  await withPages(pages, async () => {
    await waitFor(pages, 'both pages connected', (st) => st.doctor.signalling === 'open' && st.patient.signalling === 'waiting', 10000);
    await pages.doctor.evaluate(([u, p]) => window.app.signIn(u, p, 'general'), [DOCTOR.username, DOCTOR.password]);
    const consultation = await pages.doctor.evaluate(() => window.app.callNext());
    const st = await readStates(pages);
    assert.equal(consultation, st.patient.consultation, 'the doctor called the patient who joined');
    await waitFor(
      pages,
      'offer and answer on both sides',
      (s) => Object.values(s).every((x) => x.offerSent && x.answerReceived),
      15000,
    );
    const answered = await readStates(pages);
    for (const [side, s] of Object.entries(answered)) {
      console.log(`${side}: the relay's answer negotiates ${JSON.stringify(s.answerFeatures)}`);
    }
    await measureAndCheck(pages, MEASURE_S, (pair) => {
      if (!pair) return 'none selected';
      if (pair.remote?.address !== '127.0.0.1' || pair.remote?.port !== server.mediaPort)
        return `the remote end is not the relay's candidate 127.0.0.1:${server.mediaPort}`;
      if (!LOOPBACK.has(pair.local?.address)) return 'the local end is not loopback';
      return null;
    });
    for (const [side, s] of Object.entries(await readStates(pages))) {
      console.log(`${side} media events: ${JSON.stringify(s.mediaEvents)}`);
    }
  });
});
