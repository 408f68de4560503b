// common.js - what the test pages share: the tabib.v1 socket, the peer
// connection with the fake camera and microphone, and the measurements the
// test reads with page.evaluate (window.testState, window.media.stats(),
// window.media.audioPeak()).
//
// These pages exist for tests/browser/*.test.js only; the real web app
// lives in web/. Everything here is plain ES modules (the server's CSP allows
// no inline script).

/** Everything the test inspects; plain JSON so page.evaluate can return it. */
export const testState = {
  role: null,
  signalling: 'loading', // loading, connecting, open, ..., then the role's own steps
  consultation: null,
  offerSent: false,
  answerReceived: false,
  connectionState: 'new', // pc.connectionState
  iceConnectionState: 'new',
  iceGatheringState: 'new',
  localCandidates: [], // from the offer
  remoteTracks: [], // kinds
  mediaEvents: [], // {"type":"media",...} pushed by the server
  events: [], // every event (no `re`) received, in order
  errors: [], // {request, code, message} and page-side failures
  wsClosed: null, // {code, reason}
};
window.testState = testState;

function log(...args) {
  console.log(`[${testState.role}]`, ...args);
}

export function fail(where, err) {
  const entry = { request: where, code: err?.code ?? 'page', message: String(err?.message ?? err) };
  testState.errors.push(entry);
  console.error(`[${testState.role}] ${where} failed: ${entry.code}: ${entry.message}`);
}

/* ------------------------------------------------------------------ */
/* Signalling                                                          */
/* ------------------------------------------------------------------ */

let ws = null;
let nextId = 1;
const pending = new Map(); // id -> {resolve, reject, type}
const handlers = new Map(); // event type -> [fn]

/** Registers `fn(event)` for pushed events of `type`. */
export function on(type, fn) {
  if (!handlers.has(type)) handlers.set(type, []);
  handlers.get(type).push(fn);
}

/** Opens wss://<this host>/ws with subprotocol tabib.v1. */
export function connect() {
  testState.signalling = 'connecting';
  return new Promise((resolve, reject) => {
    ws = new WebSocket(`wss://${location.host}/ws`, 'tabib.v1');
    ws.onopen = () => {
      testState.signalling = 'open';
      resolve();
    };
    ws.onerror = () => reject(new Error('WebSocket error'));
    ws.onclose = (e) => {
      testState.wsClosed = { code: e.code, reason: e.reason };
      log('socket closed', e.code, e.reason);
      for (const p of pending.values()) p.reject(new Error(`socket closed (${e.code} ${e.reason})`));
      pending.clear();
    };
    ws.onmessage = (e) => onMessage(e.data);
  });
}

function onMessage(text) {
  let msg;
  try {
    msg = JSON.parse(text);
  } catch {
    fail('receive', new Error(`unparsable message: ${String(text).slice(0, 200)}`));
    return;
  }
  if (msg.re !== undefined && msg.re !== null && pending.has(msg.re)) {
    const p = pending.get(msg.re);
    pending.delete(msg.re);
    if (msg.type === 'error') {
      const err = new Error(msg.message);
      err.code = msg.code;
      p.reject(err);
    } else {
      p.resolve(msg);
    }
    return;
  }
  if (msg.type === 'error') {
    fail('unmatched reply', Object.assign(new Error(msg.message), { code: msg.code }));
    return;
  }
  // An event. Keep the sdp out of the log; queue events are many and long.
  if (msg.type !== 'queue') testState.events.push(msg);
  if (msg.type === 'media') {
    testState.mediaEvents.push(msg);
    log('media event', JSON.stringify(msg));
  } else if (msg.type !== 'queue') {
    log('event', JSON.stringify(msg));
  }
  for (const fn of handlers.get(msg.type) ?? []) {
    Promise.resolve()
      .then(() => fn(msg))
      .catch((err) => fail(`on ${msg.type}`, err));
  }
}

const REPLY_TIMEOUT_MS = 10000;

/**
 * Sends a request; resolves its reply, rejects with {code, message} on an error reply, or
 * when no reply came in REPLY_TIMEOUT_MS (so that a test fails rather than waits).
 */
export function request(type, fields = {}) {
  const id = nextId++;
  return new Promise((resolve, reject) => {
    if (!ws || ws.readyState !== WebSocket.OPEN) {
      reject(new Error(`socket not open for ${type}`));
      return;
    }
    const timer = setTimeout(() => {
      pending.delete(id);
      reject(Object.assign(new Error(`no reply to ${type} in ${REPLY_TIMEOUT_MS} ms`), { code: 'timeout' }));
    }, REPLY_TIMEOUT_MS);
    const done = (fn) => (v) => {
      clearTimeout(timer);
      fn(v);
    };
    pending.set(id, { resolve: done(resolve), reject: done(reject), type });
    ws.send(JSON.stringify({ type, id, ...fields }));
  });
}

/* ------------------------------------------------------------------ */
/* Media                                                               */
/* ------------------------------------------------------------------ */

let localStream = null;
let pc = null;
const remote = { audio: null, video: null };
let audioElement = null;
let videoElement = null;

/** The remote tracks on (muted) elements: Chromium feeds Web Audio from a remote track only then. */
function attachRemote(track) {
  remote[track.kind] = track;
  testState.remoteTracks.push(track.kind);
  const el = track.kind === 'audio' ? audioElement : videoElement;
  el.srcObject = new MediaStream([track]);
  el.play().catch((err) => log(`${track.kind} element play(): ${err.message}`));
}

/**
 * getUserMedia({audio, video}) and an RTCPeerConnection without ICE servers, with both tracks
 * added sendrecv. Call before signalling starts (the permission is granted by then).
 */
export async function startMedia() {
  audioElement = document.getElementById('remote-audio');
  videoElement = document.getElementById('remote-video');
  localStream = await navigator.mediaDevices.getUserMedia({ audio: true, video: true });
  const v = localStream.getVideoTracks()[0]?.getSettings() ?? {};
  log(`local media: video ${v.width}x${v.height} at ${v.frameRate} fps`);
  testState.localVideo = { width: v.width, height: v.height, frameRate: v.frameRate };
  pc = new RTCPeerConnection({ iceServers: [] });
  // addTrack, not addTransceiver: an answerer's addTrack transceivers are matched to the
  // offer's m-lines (so they send), addTransceiver ones never are.
  for (const track of localStream.getTracks()) pc.addTrack(track, localStream);
  pc.ontrack = (e) => attachRemote(e.track);
  pc.onconnectionstatechange = () => {
    testState.connectionState = pc.connectionState;
    log('connectionState', pc.connectionState);
  };
  pc.oniceconnectionstatechange = () => {
    testState.iceConnectionState = pc.iceConnectionState;
    log('iceConnectionState', pc.iceConnectionState);
  };
  pc.onicegatheringstatechange = () => (testState.iceGatheringState = pc.iceGatheringState);
  return pc;
}

/** Waits for ICE gathering to finish (at most `ms`): there is no trickle in tabib.v1. */
function gatheringDone(ms = 3000) {
  if (pc.iceGatheringState === 'complete') return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      pc.removeEventListener('icegatheringstatechange', check);
      resolve();
    }
    function check() {
      if (pc.iceGatheringState === 'complete') done();
    }
    pc.addEventListener('icegatheringstatechange', check);
  });
}

/** Creates the offer, sets it locally and resolves its SDP once candidates are in it. */
export async function createOffer() {
  await pc.setLocalDescription(await pc.createOffer());
  await gatheringDone();
  const sdp = pc.localDescription.sdp;
  testState.localCandidates = sdp.split(/\r?\n/).filter((l) => l.startsWith('a=candidate:'));
  return sdp;
}

/** Applies an answer's SDP. */
export async function applyAnswer(sdp) {
  await pc.setRemoteDescription({ type: 'answer', sdp });
  testState.answerReceived = true;
  testState.answerSdp = sdp;
  testState.answerFeatures = sdpFeatures(sdp);
}

/** What an SDP negotiates beyond the codecs: per kind, its RTCP feedback and header extensions. */
function sdpFeatures(sdp) {
  const out = {};
  let kind = null;
  for (const line of sdp.split(/\r?\n/)) {
    const m = /^m=(\w+)/.exec(line);
    if (m) {
      kind = m[1];
      out[kind] ??= new Set();
      continue;
    }
    if (!kind) continue;
    let f = /^a=rtcp-fb:\S+ (.+)$/.exec(line);
    if (f) out[kind].add(f[1]);
    f = /^a=extmap:\S+ (\S+)/.exec(line);
    if (f) out[kind].add(f[1].replace(/^.*[/:]/, ''));
  }
  return Object.fromEntries(Object.entries(out).map(([k, v]) => [k, [...v].join(', ')]));
}

/** Applies a remote offer and resolves our answer's SDP (the direct, server-less call). */
export async function answerOffer(sdp) {
  await pc.setRemoteDescription({ type: 'offer', sdp });
  await pc.setLocalDescription(await pc.createAnswer());
  await gatheringDone();
  return pc.localDescription.sdp;
}

/**
 * The consultation's media: offer to the relay over the socket, apply its answer.
 * An error reply (today `unavailable`) lands in testState.errors.
 */
export async function offerToRelay() {
  try {
    const sdp = await createOffer();
    testState.signalling = 'offering';
    const fields = { sdp };
    if (testState.consultation) fields.consultation = testState.consultation;
    const sent = request('offer', fields);
    testState.offerSent = true;
    log(`offer sent (${testState.localCandidates.length} candidates)`);
    const reply = await sent;
    if (reply.type !== 'answer' || typeof reply.sdp !== 'string') {
      throw new Error(`offer answered with ${JSON.stringify(reply).slice(0, 300)}`);
    }
    await applyAnswer(reply.sdp);
    testState.signalling = 'answered';
    log('answer applied');
  } catch (err) {
    testState.signalling = 'offer_failed';
    fail('offer', err);
  }
}

/* ------------------------------------------------------------------ */
/* Measurements                                                        */
/* ------------------------------------------------------------------ */

function candidateSummary(c) {
  return c && { address: c.address ?? c.ip, port: c.port, protocol: c.protocol, type: c.candidateType };
}

/** A summary of pc.getStats(): inbound video and audio, outbound video, the selected pair. */
export async function stats() {
  const report = await pc.getStats();
  const out = { at: performance.now(), video: null, audio: null, outVideo: null, pair: null };
  let transport = null;
  report.forEach((s) => {
    if (s.type === 'inbound-rtp' && s.kind === 'video') {
      out.video = {
        framesDecoded: s.framesDecoded ?? 0,
        framesReceived: s.framesReceived ?? 0,
        framesPerSecond: s.framesPerSecond ?? 0,
        frameWidth: s.frameWidth,
        frameHeight: s.frameHeight,
        packetsReceived: s.packetsReceived ?? 0,
        packetsLost: s.packetsLost ?? 0,
        keyFramesDecoded: s.keyFramesDecoded ?? 0,
        // Playout: seconds summed over the frames emitted (divide the deltas by the count's).
        jitterBufferDelay: s.jitterBufferDelay ?? 0,
        jitterBufferTargetDelay: s.jitterBufferTargetDelay ?? 0,
        jitterBufferEmittedCount: s.jitterBufferEmittedCount ?? 0,
        timestamp: s.timestamp,
      };
    } else if (s.type === 'inbound-rtp' && s.kind === 'audio') {
      out.audio = {
        totalSamplesReceived: s.totalSamplesReceived ?? 0,
        packetsReceived: s.packetsReceived ?? 0,
        packetsLost: s.packetsLost ?? 0,
        concealedSamples: s.concealedSamples ?? 0,
        timestamp: s.timestamp,
      };
    } else if (s.type === 'outbound-rtp' && s.kind === 'video') {
      out.outVideo = {
        targetBitrate: s.targetBitrate,
        framesEncoded: s.framesEncoded ?? 0,
        framesPerSecond: s.framesPerSecond ?? 0,
        frameWidth: s.frameWidth,
        frameHeight: s.frameHeight,
        qualityLimitationReason: s.qualityLimitationReason,
      };
    } else if (s.type === 'transport') {
      transport = s;
    }
  });
  let pair = transport?.selectedCandidatePairId ? report.get(transport.selectedCandidatePairId) : null;
  if (!pair) report.forEach((s) => s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded' && (pair = s));
  if (pair) {
    out.pair = {
      state: pair.state,
      availableOutgoingBitrate: pair.availableOutgoingBitrate,
      local: candidateSummary(report.get(pair.localCandidateId)),
      remote: candidateSummary(report.get(pair.remoteCandidateId)),
    };
  }
  out.connectionState = pc.connectionState;
  return out;
}

let audioContext = null;
let analyser = null;

/**
 * The strongest frequency in the received audio: a Web Audio analyser (FFT of 8192 points)
 * on the remote track, its spectrum averaged over `ms`. Resolves
 * {peakHz, peakDb, binHz, sampleRate} (peakHz null when nothing but silence arrived).
 */
export async function audioPeak(ms = 1000) {
  if (!remote.audio) throw new Error('no remote audio track');
  if (!audioContext) {
    audioContext = new AudioContext();
    const source = audioContext.createMediaStreamSource(new MediaStream([remote.audio]));
    analyser = audioContext.createAnalyser();
    analyser.fftSize = 8192;
    analyser.smoothingTimeConstant = 0;
    source.connect(analyser);
  }
  await audioContext.resume();
  const bins = new Float32Array(analyser.frequencyBinCount);
  const sum = new Float64Array(analyser.frequencyBinCount);
  const frameMs = (1000 * analyser.fftSize) / audioContext.sampleRate;
  const reads = Math.max(1, Math.round(ms / frameMs));
  for (let r = 0; r < reads; r++) {
    await new Promise((resolve) => setTimeout(resolve, frameMs));
    analyser.getFloatFrequencyData(bins);
    for (let i = 0; i < bins.length; i++) sum[i] += Math.pow(10, bins[i] / 10); // dB -> power
  }
  const binHz = audioContext.sampleRate / analyser.fftSize;
  let best = -1;
  for (let i = Math.ceil(50 / binHz); i < sum.length; i++) if (best < 0 || sum[i] > sum[best]) best = i;
  const peakDb = 10 * Math.log10(sum[best] / reads);
  return {
    peakHz: Number.isFinite(peakDb) && peakDb > -120 ? best * binHz : null,
    peakDb: Number.isFinite(peakDb) ? peakDb : null,
    binHz,
    sampleRate: audioContext.sampleRate,
    contextState: audioContext.state,
  };
}

/** The page's RTCPeerConnection (null before startMedia()), for pages that watch it themselves. */
export function peerConnection() {
  return pc;
}

/** What the test calls with page.evaluate. */
window.media = { stats, audioPeak, createOffer, answerOffer, applyAnswer };
