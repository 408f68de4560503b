// flow.js - what the consultation-flow pages (flow-patient.html, flow-doctor.html) measure
// on top of common.js, for tests/browser/flow.test.js:
//
//   testState.video   every frame the remote <video> presents, by colour: each browser's fake
//                     camera films one solid colour (patient red, doctor blue), so the colour
//                     of a frame says whose video it is. Times are wall-clock ms (Date.now()
//                     scale), comparable across the two browsers of the test.
//   testState.bwe     the selected candidate pair's availableOutgoingBitrate, sampled from the
//                     moment the peer connection connects, and when it first reached the target.
//   testState.times   wall-clock ms of the page's signalling steps (the pages set them).

import { testState, peerConnection, on } from './common.js';

/** A performance.now() timestamp as wall-clock ms (fractional), read against Date.now() now. */
export function wallTime(perfMs) {
  return Date.now() - (performance.now() - perfMs);
}

testState.times = {};
testState.mediaTimes = []; // {state, reason, at} of each `media` event
on('media', (ev) => testState.mediaTimes.push({ state: ev.state, reason: ev.reason ?? null, at: Date.now() }));

const FRAME_LOG = 600; // 30 s at 20 fps

/** Names a frame's mean colour: red, blue, or other (black, mixed, a half-decoded frame...). */
function colourName([r, g, b]) {
  if (r >= 140 && g <= 90 && b <= 90) return 'red';
  if (b >= 140 && r <= 90 && g <= 90) return 'blue';
  return 'other';
}

/**
 * Watches every frame the remote <video> presents (requestVideoFrameCallback), shrinks it
 * to 16x12 on a canvas and names its mean colour. For each colour: how many frames, the
 * first and the last (wall-clock times of the callback, the presentation and, for WebRTC
 * frames, the arrival of the frame's last packet), the colour changes in order, and a log
 * of the recent frames (to find the first frame of a colour after a moment).
 */
export function watchRemoteVideo(video) {
  const canvas = document.createElement('canvas');
  canvas.width = 16;
  canvas.height = 12;
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const v = (testState.video = {
    frames: 0,
    byColour: {},
    first: {},
    last: {},
    changes: [],
    lastColour: null,
    lastRgb: null,
    log: [], // {at, presented, received, colour} of the last FRAME_LOG frames
  });
  const step = (now, meta) => {
    const at = Date.now();
    try {
      ctx.drawImage(video, 0, 0, canvas.width, canvas.height);
      const d = ctx.getImageData(0, 0, canvas.width, canvas.height).data;
      const sum = [0, 0, 0];
      for (let i = 0; i < d.length; i += 4) for (let k = 0; k < 3; k++) sum[k] += d[i + k];
      const rgb = sum.map((x) => Math.round(x / (d.length / 4)));
      const colour = colourName(rgb);
      const frame = {
        at, // this callback ran
        presented: wallTime(meta.presentationTime), // the frame went to the compositor
        received: meta.receiveTime !== undefined ? wallTime(meta.receiveTime) : null, // its last packet arrived
        presentedFrames: meta.presentedFrames,
        size: `${meta.width}x${meta.height}`,
        rgb,
      };
      v.frames++;
      v.log.push({ at, presented: frame.presented, received: frame.received, colour });
      if (v.log.length > FRAME_LOG) v.log.shift();
      v.byColour[colour] = (v.byColour[colour] ?? 0) + 1;
      v.first[colour] ??= frame;
      v.last[colour] = frame;
      if (colour !== v.lastColour) {
        if (v.changes.length < 100) v.changes.push({ colour, at, rgb });
        v.lastColour = colour;
      }
      v.lastRgb = rgb;
    } catch (err) {
      v.error = String(err?.message ?? err);
    }
    video.requestVideoFrameCallback(step);
  };
  video.requestVideoFrameCallback(step);
}

/**
 * From the moment the peer connection is `connected`, samples the selected candidate pair's
 * availableOutgoingBitrate every `everyMs` (for `forMs`), and notes when it first reached
 * `targetBps`: {connectedAt, samples: [{t, bps, videoTarget}], reached: {t, bps} or null, max}.
 */
export function watchBandwidth({ targetBps, everyMs = 200, forMs = 30000 }) {
  const pc = peerConnection();
  const b = (testState.bwe = { targetBps, connectedAt: null, samples: [], reached: null, max: 0 });
  const sample = async () => {
    const report = await pc.getStats();
    const t = Date.now() - b.connectedAt;
    let transport = null;
    let videoTarget = null;
    report.forEach((s) => {
      if (s.type === 'transport') transport = s;
      if (s.type === 'outbound-rtp' && s.kind === 'video') videoTarget = s.targetBitrate ?? null;
    });
    const pair = transport?.selectedCandidatePairId ? report.get(transport.selectedCandidatePairId) : null;
    const bps = pair?.availableOutgoingBitrate ?? null;
    b.samples.push({ t, bps, videoTarget });
    if (bps !== null) {
      b.max = Math.max(b.max, bps);
      if (!b.reached && bps >= targetBps) b.reached = { t, bps };
    }
    if (t < forMs) setTimeout(() => sample().catch((err) => (b.error = String(err))), everyMs);
  };
  const start = () => {
    if (pc.connectionState !== 'connected' || b.connectedAt !== null) return;
    b.connectedAt = Date.now();
    testState.times.pcConnected = b.connectedAt;
    sample().catch((err) => (b.error = String(err)));
  };
  pc.addEventListener('connectionstatechange', start);
  start();
}
