// media.js - cameras and microphones, a level meter, and the media leg: one
// RTCPeerConnection from this browser to tabib's relay (docs/media.md).
//
// The leg follows what tests/browser/pages/common.js proved against the server:
//   - no ICE servers: the relay's answer carries its one host candidate;
//   - addTrack, not addTransceiver, for the tracks we have (a video transceiver
//     without a track only when there is no camera, so the doctor's video still comes);
//   - no trickle: the offer is sent once ICE gathering completed (at most 3 s);
//   - the remote tracks are played through <video>/<audio> elements (Chromium feeds
//     Web Audio from a remote track only while an element plays it).

/** {cameras: [{deviceId, label, groupId}], microphones: [...]}; labels are empty before permission. */
export async function listDevices() {
  const out = { cameras: [], microphones: [] };
  if (!navigator.mediaDevices?.enumerateDevices) return out;
  const all = await navigator.mediaDevices.enumerateDevices();
  for (const d of all) {
    const entry = { deviceId: d.deviceId, label: d.label, groupId: d.groupId };
    if (d.kind === 'videoinput') out.cameras.push(entry);
    else if (d.kind === 'audioinput') out.microphones.push(entry);
  }
  return out;
}

/**
 * getUserMedia for a consultation: the microphone with echo cancellation, and (unless
 * video is false) a camera at up to 640x480. Throws the browser's DOMException as is
 * (NotAllowedError: permission refused; NotFoundError: no such device; NotReadableError:
 * the device is busy; OverconstrainedError: the chosen device is gone).
 */
export async function openLocalMedia({ cameraId, microphoneId, video = true } = {}) {
  if (!navigator.mediaDevices?.getUserMedia) {
    // Pages served over plain HTTP, or very old browsers.
    throw new DOMException('this browser cannot use a camera or microphone here', 'NotSupportedError');
  }
  const audio = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };
  if (microphoneId) audio.deviceId = { exact: microphoneId };
  let videoConstraints = false;
  if (video) {
    videoConstraints = { width: { ideal: 640 }, height: { ideal: 480 }, frameRate: { ideal: 30, max: 30 } };
    if (cameraId) videoConstraints.deviceId = { exact: cameraId };
    else videoConstraints.facingMode = 'user'; // a preference: the front camera on phones
  }
  return navigator.mediaDevices.getUserMedia({ audio, video: videoConstraints });
}

/** Opens just one camera (for switching cameras during a call). Resolves its video track. */
export async function openCamera(cameraId) {
  const s = await navigator.mediaDevices.getUserMedia({
    video: { deviceId: { exact: cameraId }, width: { ideal: 640 }, height: { ideal: 480 } },
  });
  return s.getVideoTracks()[0];
}

/** Stops every track of a stream (the camera light goes off). */
export function stopStream(stream) {
  for (const track of stream?.getTracks() ?? []) track.stop();
}

/** An AudioContext that starts at the page's first user gesture if the browser held it back. */
function audioContext() {
  const Ctx = window.AudioContext ?? window.webkitAudioContext;
  const ctx = new Ctx();
  if (ctx.state === 'suspended') {
    const resume = () => {
      ctx.resume().catch(() => {});
      document.removeEventListener('pointerdown', resume, true);
      document.removeEventListener('keydown', resume, true);
    };
    ctx.resume().catch(() => {});
    document.addEventListener('pointerdown', resume, true);
    document.addEventListener('keydown', resume, true);
  }
  return ctx;
}

/**
 * Calls onLevel(level 0..1, {rms}) about 10 times a second with the loudness of the stream's
 * first audio track (-60 dBFS and below is 0, 0 dBFS is 1). Returns stop().
 */
export function levelMeter(stream, onLevel) {
  const track = stream?.getAudioTracks()[0];
  if (!track) return () => {};
  const ctx = audioContext();
  const source = ctx.createMediaStreamSource(new MediaStream([track]));
  const analyser = ctx.createAnalyser();
  analyser.fftSize = 1024;
  source.connect(analyser);
  const buf = new Float32Array(analyser.fftSize);
  const timer = setInterval(() => {
    analyser.getFloatTimeDomainData(buf);
    let sum = 0;
    for (let i = 0; i < buf.length; i++) sum += buf[i] * buf[i];
    const rms = Math.sqrt(sum / buf.length);
    const db = rms > 0 ? 20 * Math.log10(rms) : -Infinity;
    onLevel(Math.min(1, Math.max(0, (db + 60) / 60)), { rms });
  }, 100);
  return () => {
    clearInterval(timer);
    source.disconnect();
    ctx.close().catch(() => {});
  };
}

/** Resolves once pc's ICE gathering completed, or after `ms` (there is no trickle in tabib.v1). */
function gatheringDone(pc, ms = 3000) {
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

function candidateSummary(c) {
  return c ? { address: c.address ?? c.ip, port: c.port, protocol: c.protocol, type: c.candidateType } : null;
}

/**
 * The media leg. `signal` is a connected Signal (offer and ice_restart go through it),
 * `stream` the local MediaStream (its first audio and video tracks are sent), the remote
 * media plays in `remoteVideo` (<video playsinline autoplay>) and `remoteAudio` (<audio autoplay>).
 */
export class Leg {
  constructor(signal, stream, { remoteVideo = null, remoteAudio = null } = {}) {
    this.signal = signal;
    this.stream = stream ?? new MediaStream();
    this.remoteVideo = remoteVideo;
    this.remoteAudio = remoteAudio;
    this.tracks = {
      audio: this.stream.getAudioTracks()[0] ?? null,
      video: this.stream.getVideoTracks()[0] ?? null,
    };
    this.remoteTracks = { audio: null, video: null };
    this.pc = null;
    this.micEnabled = true;
    this.cameraEnabled = true;
    this._stateFns = new Set();
    this._renewing = null;
    this._closed = false;
  }

  /** pc.connectionState ('new' before start()). */
  get connectionState() {
    return this.pc?.connectionState ?? 'new';
  }

  _makePc() {
    const pc = new RTCPeerConnection({ iceServers: [] });
    for (const kind of ['audio', 'video']) {
      const track = this.tracks[kind];
      if (track) pc.addTrack(track, this.stream);
      else pc.addTransceiver(kind, { direction: 'sendrecv', streams: [this.stream] });
    }
    pc.ontrack = (e) => {
      if (pc === this.pc) this._attach(e.track);
    };
    pc.onconnectionstatechange = () => {
      if (pc !== this.pc) return;
      for (const fn of this._stateFns) {
        try {
          fn(pc.connectionState);
        } catch (err) {
          console.error('leg: a state listener failed', err);
        }
      }
    };
    return pc;
  }

  _attach(track) {
    this.remoteTracks[track.kind] = track;
    const el = track.kind === 'audio' ? this.remoteAudio : this.remoteVideo;
    if (!el) return;
    el.srcObject = new MediaStream([track]);
    // A rejected play() (autoplay policy, or a newer srcObject) is retried by the page's next
    // user gesture; it is not an error of the leg.
    el.play()?.catch(() => {});
  }

  /** Offers `pc`'s media with request `type` ('offer' or 'ice_restart') and applies the answer. */
  async _negotiate(pc, type, options) {
    await pc.setLocalDescription(await pc.createOffer(options));
    await gatheringDone(pc);
    // Replaced or closed while gathering: its offer would replace the live leg on the server.
    if (pc !== this.pc || pc.signalingState === 'closed') return;
    const reply = await this.signal.request(type, { sdp: pc.localDescription.sdp }, { timeoutMs: 15000 });
    if (pc !== this.pc || pc.signalingState === 'closed') return; // renewed or closed meanwhile
    if (reply.type !== 'answer' || typeof reply.sdp !== 'string') {
      throw Object.assign(new Error(`${type} answered with ${reply.type}`), { code: 'bad_reply' });
    }
    await pc.setRemoteDescription({ type: 'answer', sdp: reply.sdp });
  }

  /** A new RTCPeerConnection with the local tracks, offered to the relay. */
  async start() {
    this._closed = false;
    this._closePc();
    this.pc = this._makePc();
    await this._negotiate(this.pc, 'offer');
  }

  /** An ICE restart on the same connection (keeps the leg: no new DTLS handshake). */
  async restartIce() {
    if (!this.pc) return this.start();
    await this._negotiate(this.pc, 'ice_restart', { iceRestart: true });
  }

  /**
   * A NEW RTCPeerConnection and offer: the relay replaces the old leg with it. For a leg that
   * ended (`media` `ended`), failed, or was asked to move (`media` `reoffer`). Calls made while
   * one renewal runs share it.
   */
  renew() {
    if (!this._renewing) {
      this._renewing = this.start().finally(() => {
        this._renewing = null;
      });
    }
    return this._renewing;
  }

  _sender(kind) {
    if (!this.pc) return null;
    const tr = this.pc.getTransceivers().find((t) => t.receiver.track?.kind === kind);
    return tr?.sender ?? null;
  }

  /** Sends `track` as the video (null: send no video, e.g. audio-only mode); no renegotiation. */
  async replaceVideoTrack(track) {
    this.tracks.video = track;
    if (track) track.enabled = this.cameraEnabled;
    await this._sender('video')?.replaceTrack(track);
  }

  /** Sends `track` as the audio (another microphone); no renegotiation. */
  async replaceAudioTrack(track) {
    this.tracks.audio = track;
    if (track) track.enabled = this.micEnabled;
    await this._sender('audio')?.replaceTrack(track);
  }

  /** Mutes (false) or unmutes the microphone: the track sends silence while disabled. */
  setMicEnabled(on) {
    this.micEnabled = !!on;
    if (this.tracks.audio) this.tracks.audio.enabled = this.micEnabled;
  }

  /** Turns the camera picture off (black frames) or on. */
  setCameraEnabled(on) {
    this.cameraEnabled = !!on;
    if (this.tracks.video) this.tracks.video.enabled = this.cameraEnabled;
  }

  /**
   * A summary of getStats(): {audio: {packetsReceived, bytesReceived, totalSamplesReceived},
   * video: {packetsReceived, framesDecoded, framesPerSecond, frameWidth, frameHeight},
   * outgoing: {audioPacketsSent, videoPacketsSent}, pair: {local, remote, state, localCandidate,
   * remoteCandidate} (local/remote "address:port"; pair null before ICE chose one), connectionState}.
   */
  async stats() {
    const out = {
      audio: { packetsReceived: 0, bytesReceived: 0, totalSamplesReceived: 0 },
      video: { packetsReceived: 0, framesDecoded: 0, framesPerSecond: 0, frameWidth: 0, frameHeight: 0 },
      outgoing: { audioPacketsSent: 0, videoPacketsSent: 0 },
      pair: null,
      connectionState: this.connectionState,
    };
    if (!this.pc) return out;
    const report = await this.pc.getStats();
    let transport = null;
    report.forEach((s) => {
      if (s.type === 'inbound-rtp' && s.kind === 'audio') {
        out.audio = {
          packetsReceived: s.packetsReceived ?? 0,
          bytesReceived: s.bytesReceived ?? 0,
          totalSamplesReceived: s.totalSamplesReceived ?? 0,
        };
      } else if (s.type === 'inbound-rtp' && s.kind === 'video') {
        out.video = {
          packetsReceived: s.packetsReceived ?? 0,
          framesDecoded: s.framesDecoded ?? 0,
          framesPerSecond: s.framesPerSecond ?? 0,
          frameWidth: s.frameWidth ?? 0,
          frameHeight: s.frameHeight ?? 0,
        };
      } else if (s.type === 'outbound-rtp' && s.kind === 'audio') {
        out.outgoing.audioPacketsSent = s.packetsSent ?? 0;
      } else if (s.type === 'outbound-rtp' && s.kind === 'video') {
        out.outgoing.videoPacketsSent = s.packetsSent ?? 0;
      } else if (s.type === 'transport') {
        transport = s;
      }
    });
    let pair = transport?.selectedCandidatePairId ? report.get(transport.selectedCandidatePairId) : null;
    if (!pair) {
      report.forEach((s) => {
        if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') pair = s;
      });
    }
    if (pair) {
      const local = candidateSummary(report.get(pair.localCandidateId));
      const remote = candidateSummary(report.get(pair.remoteCandidateId));
      out.pair = {
        local: local && `${local.address}:${local.port}`, // "127.0.0.1:53211"
        remote: remote && `${remote.address}:${remote.port}`,
        state: pair.state,
        localCandidate: local, // {address, port, protocol, type}
        remoteCandidate: remote,
      };
    }
    return out;
  }

  /** fn(pc.connectionState) on every change (across renew()). Returns a function that removes it. */
  onState(fn) {
    this._stateFns.add(fn);
    return () => this._stateFns.delete(fn);
  }

  _closePc() {
    if (!this.pc) return;
    const pc = this.pc;
    this.pc = null;
    pc.ontrack = pc.onconnectionstatechange = null;
    pc.close();
  }

  /** Closes the connection and empties the remote elements (the local tracks stay: stop them yourself). */
  close() {
    this._closed = true;
    this._closePc();
    for (const el of [this.remoteVideo, this.remoteAudio]) if (el) el.srcObject = null;
    this.remoteTracks = { audio: null, video: null };
  }
}
