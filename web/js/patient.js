// patient.js - the patient's page: /c/<clinic> (or /c/<clinic>?appointment=<token>).
//
// Screens, in order (state.screen; one <section data-screen> shows at a time):
//   consent → devices (camera preview, microphone meter, name, "Join the queue")
//   → waiting (position, estimate, the self-test through the relay) → called
//   → consultation → ended.
//
// What survives a drop: the resume token from `joined` is kept in sessionStorage
// (never in the URL). A lost WebSocket comes back by itself (Signal) and resumes; a
// media leg that ended or failed is renewed (Leg.renew()); a reload during a wait or a
// consultation resumes too. The patient never has to type anything again.
//
// Tests read window.tabibApp = {signal, leg, state} (state.screen, state.selfTest, ...).
import { t, getLang, mountLangSwitch, onLangChange, applyTranslations, formatNumber, formatDuration } from './i18n.js';
import { errorText } from './strings-common.js';
import './strings-patient.js';
import { Signal } from './signal.js';
import { Leg, listDevices, openLocalMedia, openCamera, levelMeter, stopStream } from './media.js';

const SESSION_KEY = 'tabib.patient'; // sessionStorage: {token, clinic}
const APPOINTMENT_KEY = 'tabib.patient.appointment'; // sessionStorage, until the join uses it
const DEVICES_KEY = 'tabib.devices'; // localStorage: {cameraId, microphoneId}
const SELFTEST_SLOW_MS = 20000;
const DISCONNECTED_RENEW_MS = 4000; // a leg 'disconnected' this long is replaced

const $ = (id) => document.getElementById(id);

/* ------------------------------------------------------------------ */
/* State                                                               */
/* ------------------------------------------------------------------ */

const state = {
  screen: 'consent', // consent, devices, waiting, called, consultation, ended
  clinic: null, // the id from the URL, then from the server
  clinicNames: null, // {name_en, name_ar}
  appointment: false, // joining with an appointment token
  askClinic: false, // /patient without a clinic: the form asks for its code
  resuming: false, // reconnecting after a reload
  consultation: null,
  position: null,
  estimatedWaitS: null,
  doctorsOnDuty: null,
  doctor: null, // the calling doctor's name
  devices: 'idle', // idle, starting, ok, audio_only, error
  deviceError: null, // a DOMException name
  selfTest: 'idle', // idle, checking, connected, passed, slow, failed, renewing
  selfTestError: null,
  media: null, // the last `media` state: connected, flowing, ended
  ready: false, // device_status {ready: true} sent
  connection: 'closed', // the Signal's state
  notice: null, // {key, vars}: waiting-room notice (returned, transferred)
  peer: null, // disconnected, media_lost, back
  micWarning: null, // silent, no_packets (the server's `audio` event about us)
  doctorSilent: false,
  micOn: true,
  cameraOn: true,
  audioOnly: false,
  endReason: null,
};

let signal = null;
let leg = null;
let localStream = null;
let cameras = [];
let microphones = [];
let stopMicMeter = null;
let stopLoopMeter = null;
let selfTestTimer = null;
let disconnectedTimer = null;
let peerBackTimer = null;
let renewTimer = null;
let renewAttempts = 0;
let chimeTimer = null;
let audioCtx = null;
let joinAppointmentToken = null;
let hearMyself = false;

window.tabibApp = { signal, leg, state };
function publish() {
  window.tabibApp.signal = signal;
  window.tabibApp.leg = leg;
}

/* ------------------------------------------------------------------ */
/* Storage (sessionStorage/localStorage may be disabled: never fatal)  */
/* ------------------------------------------------------------------ */

function readJson(storage, key) {
  try {
    return JSON.parse(storage.getItem(key) ?? 'null');
  } catch {
    return null;
  }
}
function writeJson(storage, key, value) {
  try {
    if (value === null) storage.removeItem(key);
    else storage.setItem(key, JSON.stringify(value));
  } catch {
    /* not kept: a reload then starts over */
  }
}
const saveSession = (token) => writeJson(sessionStorage, SESSION_KEY, { token, clinic: state.clinic });
const savedSession = () => readJson(sessionStorage, SESSION_KEY);
function updateSessionClinic() {
  const s = savedSession();
  if (s) writeJson(sessionStorage, SESSION_KEY, { ...s, clinic: state.clinic });
}
const clearSession = () => writeJson(sessionStorage, SESSION_KEY, null);

/* ------------------------------------------------------------------ */
/* Rendering: every visible text derives from `state` and t()          */
/* ------------------------------------------------------------------ */

/** Sets textContent only when it changes (a live region then announces only news). */
function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

/** A name in its own direction (a Latin username in an Arabic sentence, or the reverse). */
const isolate = (text) => `\u2068${text}\u2069`;

function clinicName() {
  if (!state.clinicNames) return state.clinic ?? '';
  return (getLang() === 'ar' ? state.clinicNames.name_ar : state.clinicNames.name_en) || state.clinic;
}

function showScreen(screen, { focus = true } = {}) {
  const changed = state.screen !== screen;
  state.screen = screen;
  document.body.dataset.screen = screen;
  for (const sec of document.querySelectorAll('section[data-screen]')) sec.hidden = sec.dataset.screen !== screen;
  render();
  if (changed && focus) {
    // Move focus to the new screen's main control or heading so keyboard and screen-reader
    // users start there (the called screen focuses its button; see onCalled()).
    const target = { called: $('answer-button') }[screen] ?? $(`screen-${screen}`).querySelector('h1');
    target?.focus();
  }
}

function render() {
  const s = state;
  // Header and title.
  setText($('clinic-name'), s.clinicNames || s.clinic ? clinicName() : '');
  let title = t(`patient.docTitle.${s.screen}`);
  if (s.screen === 'waiting' && s.position > 0) title = t('patient.docTitle.waitingPos', { n: formatNumber(s.position) });
  if (document.title !== title) document.title = title;

  // The banner: the signalling connection first, then the media leg.
  let banner = '';
  if ((s.connection === 'reconnecting' || s.resuming) && s.screen !== 'ended') banner = t('common.reconnecting');
  else if ((s.selfTest === 'renewing' || s.selfTest === 'failed') && s.screen === 'consultation') {
    banner = t('consult.reconnectingVideo');
  }
  setText($('banner'), banner);

  renderDevices();
  renderWaiting();
  renderCalled();
  renderConsultation();
  renderEnded();
}

function renderDevices() {
  const s = state;
  let status = '';
  if (s.devices === 'starting') status = t('devices.starting');
  else if (s.devices === 'ok') status = t('devices.ok');
  else if (s.devices === 'audio_only') status = t('devices.okAudioOnly');
  setText($('device-status'), status);
  $('device-status').classList.toggle('ok', s.devices === 'ok' || s.devices === 'audio_only');

  const err = $('device-error');
  err.hidden = s.devices !== 'error';
  if (s.devices === 'error') {
    const noCamera = s.deviceError === 'NotFoundError' && s.noCameraOnly;
    setText($('device-error-text'), noCamera ? t('devices.noCamera') : errorText(new DOMException('', s.deviceError)));
    // Denied: how to allow it on a phone too (the desktop steps are in the first paragraph).
    $('device-error-more').hidden = s.deviceError !== 'NotAllowedError';
    setText($('device-error-more'), s.deviceError === 'NotAllowedError' ? t('devices.deniedMore') : '');
    $('device-audio-only').hidden = !(s.deviceError === 'NotFoundError' && s.noCameraOnly);
  }
  $('preview-off').hidden = !(s.devices === 'audio_only');
  document.querySelector('.device-check').classList.toggle('has-error', s.devices === 'error');
  $('preview').hidden = s.devices === 'audio_only';
  $('camera-select').disabled = !cameras.length || s.devices === 'audio_only';
  $('mic-select').disabled = !microphones.length;
  fillSelect($('camera-select'), cameras, 'common.cameraN', s.devices === 'audio_only' ? null : currentDeviceId('video'));
  fillSelect($('mic-select'), microphones, 'common.microphoneN', currentDeviceId('audio'));
  $('clinic-field').hidden = !s.askClinic;
  $('appointment-note').hidden = !s.appointment;
  const joinBtn = $('join-button');
  setText(joinBtn, t(joinBtn.dataset.busy ? 'join.joining' : 'join.button'));
}

function fillSelect(select, list, labelKey, selectedId) {
  const options = list.map((d, i) => [d.deviceId, d.label || t(labelKey, { n: formatNumber(i + 1) })]);
  if (!options.length) options.push(['', t(labelKey === 'common.cameraN' ? 'common.noCamera' : 'common.microphone')]);
  const same =
    select.options.length === options.length &&
    options.every(([id, label], i) => select.options[i].value === id && select.options[i].text === label);
  if (!same) {
    select.replaceChildren(...options.map(([id, label]) => new Option(label, id)));
  }
  if (selectedId !== null && selectedId !== undefined && select.value !== selectedId) select.value = selectedId;
}

function renderWaiting() {
  const s = state;
  let pos = '';
  if (s.position === 1) pos = t('waiting.next');
  else if (s.position > 1) pos = t('waiting.position', { n: formatNumber(s.position) });
  setText($('queue-position'), pos);
  let est = '';
  if (s.doctorsOnDuty === 0 || (s.estimatedWaitS === null && s.position)) est = t('waiting.noDoctor');
  else if (s.estimatedWaitS !== null) {
    // An estimate is rough: never "about 12 seconds".
    est = t('waiting.estimate', { time: formatDuration(Math.max(60, s.estimatedWaitS)) });
  }
  setText($('queue-estimate'), est);
  setText($('waiting-notice'), s.notice ? t(s.notice.key, { clinic: clinicName(), ...s.notice.vars }) : '');

  let st = '';
  switch (s.selfTest) {
    case 'checking':
      st = t('selftest.checking');
      break;
    case 'connected':
      st = t('selftest.connected');
      break;
    case 'passed':
      st = t('selftest.passed');
      break;
    case 'slow':
      st = t('selftest.slow');
      break;
    case 'renewing':
      st = t('selftest.renewing');
      break;
    case 'failed':
      st = t('selftest.failed', { error: errorText(s.selfTestError) });
      break;
  }
  setText($('selftest-status'), st);
  $('selftest-status').classList.toggle('ok', s.selfTest === 'passed');
  $('screen-waiting').dataset.selftest = s.selfTest;
  $('selftest-retry').hidden = !(s.selfTest === 'failed' || s.selfTest === 'slow');
  $('loop-off').hidden = !!localStream?.getVideoTracks().length;
  $('hear-myself').setAttribute('aria-pressed', String(hearMyself));
}

function renderCalled() {
  const s = state;
  setText($('called-text'), s.doctor ? t('called.text', { doctor: isolate(s.doctor) }) : t('called.textNoName'));
  const btn = $('answer-button');
  setText(btn, t(btn.dataset.busy ? 'called.joining' : 'called.answer'));
}

function renderConsultation() {
  const s = state;
  setText($('consult-title'), s.doctor ? t('consult.title', { doctor: isolate(s.doctor) }) : t('consult.titleNoName'));
  // What the server says about our microphone; "you are muted" when that is why.
  let alert = '';
  if (s.micWarning && !s.micOn) alert = t('consult.youAreMuted');
  else if (s.micWarning === 'silent') alert = t('consult.micSilent');
  else if (s.micWarning === 'no_packets') alert = t('consult.micNoPackets');
  $('audio-alert').hidden = !alert;
  setText($('audio-alert'), alert);
  let notice = '';
  if (s.peer === 'disconnected') notice = t('consult.peerDisconnected');
  else if (s.peer === 'media_lost') notice = t('consult.peerMediaLost');
  else if (s.doctorSilent) notice = t('consult.doctorSilent');
  else if (s.peer === 'back') notice = t('consult.peerBack');
  setText($('consult-notice'), notice);

  $('mute-button').setAttribute('aria-pressed', String(!s.micOn));
  $('camera-button').setAttribute('aria-pressed', String(!s.cameraOn));
  $('camera-button').disabled = s.audioOnly || !hasCamera();
  $('audio-only-button').setAttribute('aria-pressed', String(s.audioOnly));
  $('switch-camera').hidden = cameras.length < 2 || s.audioOnly;
  $('remote-video').hidden = s.audioOnly;
  $('self-view').hidden = s.audioOnly || !localStream?.getVideoTracks().length;
  $('audio-only-note').hidden = !s.audioOnly;
}

function renderEnded() {
  const s = state;
  if (s.screen !== 'ended') return;
  const r = s.endReason ?? 'unknown';
  const titleKey =
    r === 'patient_left' ? 'ended.titleLeft' : r === 'expired' || r === 'abandoned' ? 'ended.titleNotRestored' : 'ended.title';
  setText($('ended-title'), t(titleKey));
  const reasonKey = `ended.reason.${r}`;
  setText($('ended-reason'), t(hasReason(r) ? reasonKey : 'ended.reason.unknown'));
  $('rejoin-link').href = s.clinic ? `/c/${encodeURIComponent(s.clinic)}` : '/patient';
  $('rejoin-link').hidden = r === 'elsewhere';
}

const REASONS = new Set([
  'completed', 'doctor_ended', 'patient_left', 'abandoned', 'transferred', 'connection_lost',
  'server_shutdown', 'expired', 'elsewhere', 'closed',
]);
const hasReason = (r) => REASONS.has(r);

/* ------------------------------------------------------------------ */
/* Devices                                                             */
/* ------------------------------------------------------------------ */

function currentDeviceId(kind) {
  const track = kind === 'video' ? localStream?.getVideoTracks()[0] : localStream?.getAudioTracks()[0];
  return track?.getSettings().deviceId ?? null;
}
const hasCamera = () => !!localStream?.getVideoTracks().length || state.audioOnly;

function savedDevices() {
  return readJson(localStorage, DEVICES_KEY) ?? {};
}

// Each start of the devices is numbered: one that a newer start overtook (arrow keys on a
// <select> fire a change per press) drops its stream instead of leaving a camera running.
let deviceStarts = 0;

/** Opens camera and microphone (the saved or chosen ones); fills the preview and the meter. */
async function startDevices({ cameraId, microphoneId, video = true } = {}) {
  const mine = ++deviceStarts;
  state.devices = 'starting';
  state.deviceError = null;
  state.noCameraOnly = false;
  render();
  const saved = savedDevices();
  cameraId ??= saved.cameraId;
  microphoneId ??= saved.microphoneId;
  stopLocal();
  let stream;
  try {
    stream = await openLocalMedia({ cameraId, microphoneId, video });
  } catch (err) {
    if (mine !== deviceStarts) return false; // overtaken: the newer start reports
    if (err.name === 'OverconstrainedError' || (err.name === 'NotFoundError' && (cameraId || microphoneId))) {
      // A remembered device is gone: the default ones will do.
      writeJson(localStorage, DEVICES_KEY, null);
      return startDevices({ cameraId: '', microphoneId: '', video });
    }
    if (err.name === 'NotFoundError' && video) {
      // Perhaps only the camera is missing: is there a microphone?
      try {
        const audioOnly = await openLocalMedia({ microphoneId, video: false });
        stopStream(audioOnly);
        state.noCameraOnly = true;
      } catch {
        /* no microphone either */
      }
    }
    state.devices = 'error';
    state.deviceError = err.name || 'Error';
    console.info('patient: camera/microphone:', err.name, err.message);
    await refreshDeviceList();
    render();
    return false;
  }
  if (mine !== deviceStarts) {
    stopStream(stream);
    return false;
  }
  useStream(stream);
  state.devices = stream.getVideoTracks().length ? 'ok' : 'audio_only';
  await refreshDeviceList();
  render();
  return true;
}

function useStream(stream) {
  if (localStream && localStream !== stream) stopStream(localStream);
  localStream = stream;
  $('preview').srcObject = stream;
  mirrorFor(stream);
  stopMicMeter?.();
  const meter = $('mic-meter');
  let silentSince = performance.now();
  stopMicMeter = levelMeter(stream, (level, { rms }) => {
    updateMeter(meter, level);
    // A microphone that gives exact zeros for 4 s is muted in hardware or broken.
    if (rms > 0) silentSince = performance.now();
    setText($('mic-hint'), t(performance.now() - silentSince > 4000 ? 'devices.micSilent' : 'devices.micHint'));
  });
  if (leg) {
    // A new stream during a call: send its tracks on the same leg.
    leg.stream = stream;
    leg.replaceAudioTrack(stream.getAudioTracks()[0] ?? null);
    if (!state.audioOnly) leg.replaceVideoTrack(stream.getVideoTracks()[0] ?? null);
  }
  $('self-view').srcObject = stream;
}

/** The own picture mirrored, except from a camera that faces away (the back camera). */
function mirrorFor(stream) {
  const facing = stream.getVideoTracks()[0]?.getSettings().facingMode;
  for (const el of [$('preview'), $('self-view')]) el.classList.toggle('mirrored', facing !== 'environment');
}

function updateMeter(meter, level) {
  const pct = Math.round(level * 100);
  meter.firstElementChild.style.inlineSize = `${pct}%`;
  // aria-valuenow in steps of 10: enough for assistive technology, without constant churn.
  const step = String(Math.round(pct / 10) * 10);
  if (meter.getAttribute('aria-valuenow') !== step) meter.setAttribute('aria-valuenow', step);
}

async function refreshDeviceList() {
  try {
    ({ cameras, microphones } = await listDevices());
    // Before permission the entries have no id: they are no choice to offer.
    cameras = cameras.filter((d) => d.deviceId);
    microphones = microphones.filter((d) => d.deviceId);
  } catch {
    cameras = [];
    microphones = [];
  }
}

function stopLocal() {
  stopMicMeter?.();
  stopMicMeter = null;
  stopStream(localStream);
  localStream = null;
}

async function onDeviceChosen() {
  const cameraId = state.devices === 'audio_only' ? undefined : $('camera-select').value || undefined;
  const microphoneId = $('mic-select').value || undefined;
  writeJson(localStorage, DEVICES_KEY, { cameraId, microphoneId });
  await startDevices({ cameraId, microphoneId, video: state.devices !== 'audio_only' });
}

/* ------------------------------------------------------------------ */
/* Signalling                                                          */
/* ------------------------------------------------------------------ */

function makeSignal() {
  signal = new Signal({ onReconnect: resume });
  signal.onState((st, info) => {
    state.connection = st;
    if (st === 'closed' && info && state.screen !== 'ended') {
      // 4001: this consultation was resumed elsewhere. Other final closes end it here.
      if (info.code === 4001) finish('elsewhere');
      else if (info.code !== 1000) finish('closed');
    }
    render();
  });
  signal.on('position', (ev) => {
    if (ev.consultation !== state.consultation) return;
    applyQueueInfo(ev);
    render();
  });
  signal.on('called', onCalled);
  signal.on('consultation_started', (ev) => {
    if (ev.consultation === state.consultation && state.screen !== 'consultation') startConsultation();
  });
  signal.on('returned', (ev) => {
    if (ev.consultation !== state.consultation) return;
    stopChime();
    state.doctor = null;
    state.notice = { key: 'waiting.returned' };
    enterWaiting();
  });
  signal.on('transferred', (ev) => {
    stopChime();
    state.consultation = ev.consultation;
    if (ev.clinic && typeof ev.clinic === 'object') {
      state.clinic = ev.clinic.id;
      state.clinicNames = { name_en: ev.clinic.name_en, name_ar: ev.clinic.name_ar };
    }
    updateSessionClinic();
    applyQueueInfo(ev);
    state.doctor = null;
    state.notice = { key: 'waiting.transferred' };
    enterWaiting();
  });
  signal.on('peer', (ev) => {
    if (ev.consultation !== state.consultation || ev.who === 'patient') return;
    state.peer = ev.state === 'connected' ? 'back' : ev.state;
    clearTimeout(peerBackTimer);
    if (state.peer === 'back') {
      // "The doctor is back" is news for a moment, not a lasting state.
      peerBackTimer = setTimeout(() => {
        if (state.peer === 'back') state.peer = null;
        render();
      }, 6000);
    }
    render();
  });
  signal.on('ended', (ev) => {
    if (ev.consultation !== state.consultation) return;
    finish(ev.reason);
  });
  signal.on('media', onMediaEvent);
  signal.on('audio', (ev) => {
    if (ev.consultation !== state.consultation) return;
    if (ev.who === 'patient') state.micWarning = ev.state === 'ok' ? null : ev.state;
    else if (ev.who === 'doctor') state.doctorSilent = ev.state !== 'ok';
    render();
  });
  publish();
  return signal;
}

function applyQueueInfo(ev) {
  if ('position' in ev) state.position = ev.position;
  if ('estimated_wait_s' in ev) state.estimatedWaitS = ev.estimated_wait_s;
  if ('doctors_on_duty' in ev) state.doctorsOnDuty = ev.doctors_on_duty;
}

/** The `joined` or `resumed` reply: where we are. */
function applyJoined(r) {
  state.consultation = r.consultation;
  if (r.clinic && typeof r.clinic === 'object') {
    state.clinic = r.clinic.id;
    state.clinicNames = { name_en: r.clinic.name_en, name_ar: r.clinic.name_ar };
  }
  applyQueueInfo(r);
  if (r.doctor?.name) state.doctor = r.doctor.name;
}

/** Goes to the screen the server's state asks for. */
function followServerState(serverState) {
  if (serverState === 'called') onCalled({ consultation: state.consultation, doctor: { name: state.doctor } });
  else if (serverState === 'in_consultation') startConsultation();
  else enterWaiting();
}

/** Signal's onReconnect: take our place back with the resume token. */
async function resume(s) {
  const saved = savedSession();
  if (!saved?.token || state.screen === 'ended') return;
  try {
    const r = await s.request('resume', { resume_token: saved.token });
    const wasScreen = state.screen;
    applyJoined(r);
    if (!(wasScreen === 'called' && r.state === 'called')) followServerState(r.state);
    else render();
    // The media leg may have died with the network while events could not reach us. Checked
    // once the socket is 'open' again (after this returns), so that a renewal's offer can go.
    setTimeout(checkLeg, 0);
  } catch (err) {
    if (err.code === 'not_found') finish('expired');
    else throw err;
  }
}

/* ------------------------------------------------------------------ */
/* Join                                                                */
/* ------------------------------------------------------------------ */

async function onJoin(e) {
  e.preventDefault();
  const nameInput = $('name-input');
  const name = nameInput.value.trim();
  const clinicInput = $('clinic-input');
  const errorEl = $('join-error');
  errorEl.hidden = true;
  $('name-error').hidden = true;
  nameInput.removeAttribute('aria-invalid');
  if (!state.clinic && !state.appointment) {
    const c = clinicInput.value.trim();
    if (!c) {
      showJoinError(t('join.clinicRequired'));
      clinicInput.focus();
      return;
    }
    state.clinic = c;
  }
  if (!name) {
    nameInput.setAttribute('aria-invalid', 'true');
    setText($('name-error'), t('join.nameRequired'));
    $('name-error').hidden = false;
    nameInput.focus();
    return;
  }
  if (!localStream?.getAudioTracks().length) {
    showJoinError(t('join.needMic'));
    return;
  }
  const btn = $('join-button');
  if (btn.dataset.busy) return;
  btn.dataset.busy = '1';
  btn.setAttribute('aria-disabled', 'true');
  render();
  try {
    if (!signal || signal.state === 'closed') {
      makeSignal();
      await signal.connect();
    }
    const fields = { name };
    if (state.appointment) fields.appointment = joinAppointmentToken;
    else fields.clinic = state.clinic;
    const joined = await signal.request('join', fields);
    applyJoined(joined);
    saveSession(joined.resume_token);
    writeJson(sessionStorage, APPOINTMENT_KEY, null);
    state.appointment = false;
    joinAppointmentToken = null;
    enterWaiting();
    await startLeg();
    // The local devices work (checked on this screen): tell the doctors.
    signal
      .request('device_status', { ready: true })
      .then(() => (state.ready = true))
      .catch((err) => console.info('patient: device_status:', err.code, err.message));
  } catch (err) {
    let text = errorText(err);
    if (err.code === 'not_found') text = t(state.appointment ? 'join.appointmentInvalid' : 'join.clinicUnknown');
    if (state.screen === 'devices') showJoinError(text);
    if (state.askClinic) state.clinic = null; // typed by the patient: read it again next time
  } finally {
    delete btn.dataset.busy;
    btn.removeAttribute('aria-disabled');
    render();
  }
}

function showJoinError(text) {
  const el = $('join-error');
  setText(el, text);
  el.hidden = false;
}

/* ------------------------------------------------------------------ */
/* Waiting and the self-test                                           */
/* ------------------------------------------------------------------ */

function enterWaiting() {
  state.peer = null;
  state.micWarning = null;
  state.doctorSilent = false;
  setRemoteAudible(hearMyself);
  showScreen('waiting');
  syncLoopVideo();
  if (state.media === 'flowing' && state.selfTest !== 'passed') state.selfTest = 'passed';
  render();
}

/** The looped-back video of the self-test shows the leg's remote track too. */
function syncLoopVideo() {
  const loop = $('loop-video');
  const src = $('remote-video').srcObject;
  if (state.screen === 'waiting') {
    if (loop.srcObject !== src) {
      loop.srcObject = src;
      loop.play()?.catch(() => {});
    }
  } else if (loop.srcObject) {
    loop.srcObject = null;
  }
  // The level of the sound coming back through the relay.
  const track = leg?.remoteTracks.audio;
  if (state.screen === 'waiting' && track && stopLoopMeter?.track !== track) {
    stopLoopMeter?.();
    stopLoopMeter = levelMeter(new MediaStream([track]), (level) => updateMeter($('loop-meter'), level));
    stopLoopMeter.track = track;
  } else if (state.screen !== 'waiting' && stopLoopMeter) {
    stopLoopMeter();
    stopLoopMeter = null;
  }
}

function setRemoteAudible(on) {
  const audio = $('remote-audio');
  audio.muted = !on;
  if (on) audio.play()?.catch(() => {});
}

async function startLeg() {
  if (!leg) {
    leg = new Leg(signal, localStream, { remoteVideo: $('remote-video'), remoteAudio: $('remote-audio') });
    leg.onState(onLegState);
    publish();
  }
  state.selfTest = 'checking';
  state.media = null;
  armSelfTestTimer();
  render();
  try {
    await leg.start();
    renewAttempts = 0;
    syncLoopVideo();
  } catch (err) {
    legFailed(err);
  }
}

function armSelfTestTimer() {
  clearTimeout(selfTestTimer);
  selfTestTimer = setTimeout(() => {
    if (state.selfTest === 'checking' || state.selfTest === 'connected') {
      state.selfTest = 'slow';
      render();
    }
  }, SELFTEST_SLOW_MS);
}

function legFailed(err) {
  console.info('patient: media leg:', err?.code ?? err?.name, err?.message);
  state.selfTest = 'failed';
  state.selfTestError = err;
  render();
  scheduleRenew();
}

/** `media` events about our leg. */
function onMediaEvent(ev) {
  if (ev.consultation && ev.consultation !== state.consultation) return;
  state.media = ev.state;
  if (ev.state === 'connected') {
    renewAttempts = 0; // only media that connected proves the relay takes us again
    if (state.selfTest !== 'passed') state.selfTest = 'connected';
  } else if (ev.state === 'flowing') {
    state.selfTest = 'passed';
    clearTimeout(selfTestTimer);
  } else if (ev.state === 'reoffer') {
    renewLeg();
  } else if (ev.state === 'ended') {
    // With a growing pause: a relay that refuses (full) must not be asked again at once.
    scheduleRenew();
  }
  render();
}

function onLegState(pcState) {
  clearTimeout(disconnectedTimer);
  if (pcState === 'failed') renewLeg();
  else if (pcState === 'disconnected') disconnectedTimer = setTimeout(renewLeg, DISCONNECTED_RENEW_MS);
  else if (pcState === 'connected' && state.selfTest === 'renewing') {
    state.selfTest = state.media === 'flowing' ? 'passed' : 'connected';
    render();
  }
}

/** After a resume: a leg the browser gave up on is replaced. */
function checkLeg() {
  if (!leg) return startLeg();
  const st = leg.connectionState;
  if (st === 'failed' || st === 'closed' || st === 'disconnected' || st === 'new') renewLeg();
}

/** A new leg (new RTCPeerConnection and offer); retried with a growing pause while it fails. */
async function renewLeg() {
  if (!leg || !['waiting', 'called', 'consultation'].includes(state.screen)) return;
  if (signal?.state !== 'open') return; // resume() calls checkLeg() once the socket is back
  clearTimeout(renewTimer);
  renewTimer = null;
  state.selfTest = 'renewing';
  state.media = null;
  render();
  try {
    await leg.renew();
    armSelfTestTimer();
    if (state.selfTest === 'renewing') state.selfTest = 'checking';
    syncLoopVideo();
    render();
  } catch (err) {
    legFailed(err);
  }
}

function scheduleRenew() {
  if (renewTimer || state.screen === 'ended') return;
  const delay = Math.min(15000, 2000 * 2 ** renewAttempts++);
  renewTimer = setTimeout(() => {
    renewTimer = null;
    renewLeg();
  }, delay);
}

async function leaveQueue() {
  const sig = signal;
  finish('patient_left');
  try {
    await sig?.request('leave', {}, { timeoutMs: 5000 });
  } catch (err) {
    // Already ended, or the socket is gone: the server ends it after the grace period.
    console.info('patient: leave:', err.code, err.message);
  } finally {
    sig?.close();
  }
}

/* ------------------------------------------------------------------ */
/* Called                                                              */
/* ------------------------------------------------------------------ */

function onCalled(ev) {
  if (ev.consultation && ev.consultation !== state.consultation) return;
  state.doctor = ev.doctor?.name ?? state.doctor;
  state.notice = null;
  showScreen('called', { focus: false });
  $('called-error').hidden = true;
  $('answer-button').focus();
  // Screen readers announce an alert when its text changes: give it its text again once shown.
  const text = $('called-text');
  const words = text.textContent;
  text.textContent = '';
  setTimeout(() => setText(text, words), 100);
  startChime();
}

async function onAnswer() {
  const btn = $('answer-button');
  if (btn.dataset.busy) return;
  btn.dataset.busy = '1';
  btn.setAttribute('aria-disabled', 'true');
  stopChime();
  render();
  try {
    const r = await signal.request('accept', {});
    if (r.type === 'consultation_started' && state.screen === 'called') startConsultation();
  } catch (err) {
    setText($('called-error'), errorText(err));
    $('called-error').hidden = false;
  } finally {
    delete btn.dataset.busy;
    btn.removeAttribute('aria-disabled');
    render();
  }
}

/** A short two-note chime from an oscillator (no sound file), repeated while being called. */
function chime() {
  if (!audioCtx) return;
  audioCtx.resume().catch(() => {});
  const t0 = audioCtx.currentTime + 0.02;
  [
    [660, 0],
    [880, 0.22],
  ].forEach(([hz, at]) => {
    const osc = audioCtx.createOscillator();
    const gain = audioCtx.createGain();
    osc.type = 'sine';
    osc.frequency.value = hz;
    gain.gain.setValueAtTime(0.0001, t0 + at);
    gain.gain.exponentialRampToValueAtTime(0.35, t0 + at + 0.02);
    gain.gain.exponentialRampToValueAtTime(0.0001, t0 + at + 0.2);
    osc.connect(gain).connect(audioCtx.destination);
    osc.start(t0 + at);
    osc.stop(t0 + at + 0.22);
  });
  navigator.vibrate?.([200, 100, 200]);
}

/** Creates the AudioContext during a user gesture (browsers block sound started without one). */
function primeAudio() {
  if (audioCtx) return;
  const Ctx = window.AudioContext ?? window.webkitAudioContext;
  if (Ctx) audioCtx = new Ctx();
}

function startChime() {
  stopChime();
  primeAudio();
  let count = 0;
  chime();
  chimeTimer = setInterval(() => {
    if (++count >= 10 || state.screen !== 'called') stopChime();
    else chime();
  }, 3000);
}

function stopChime() {
  clearInterval(chimeTimer);
  chimeTimer = null;
}

/* ------------------------------------------------------------------ */
/* Consultation                                                        */
/* ------------------------------------------------------------------ */

function startConsultation() {
  stopChime();
  state.notice = null;
  state.peer = null;
  setRemoteAudible(true);
  $('self-view').srcObject = localStream;
  const remote = $('remote-video');
  remote.play()?.catch(() => {});
  showScreen('consultation');
  syncLoopVideo();
}

function announce(key) {
  // Controls keep their names; the change is said in a status line.
  const el = $('consult-media-state');
  el.textContent = '';
  setTimeout(() => (el.textContent = t(key)), 50);
}

function toggleMute() {
  state.micOn = !state.micOn;
  leg?.setMicEnabled(state.micOn);
  for (const tr of localStream?.getAudioTracks() ?? []) tr.enabled = state.micOn;
  announce(state.micOn ? 'consult.unmuted' : 'consult.muted');
  render();
}

function toggleCamera() {
  state.cameraOn = !state.cameraOn;
  leg?.setCameraEnabled(state.cameraOn);
  for (const tr of localStream?.getVideoTracks() ?? []) tr.enabled = state.cameraOn;
  announce(state.cameraOn ? 'consult.cameraIsOn' : 'consult.cameraIsOff');
  render();
}

/** Next camera in the list (front/back on phones); the leg's sender gets it by replaceTrack. */
async function switchCamera() {
  if (cameras.length < 2 || !localStream) return;
  const old = localStream.getVideoTracks()[0];
  const currentId = old?.getSettings().deviceId;
  const i = cameras.findIndex((c) => c.deviceId === currentId);
  const next = cameras[(i + 1) % cameras.length];
  // Phones often cannot open two cameras at once: stop the current one first.
  old?.stop();
  let track;
  try {
    track = await openCamera(next.deviceId);
  } catch (err) {
    console.info('patient: switch camera:', err.name);
    announce('consult.switchFailed');
    track = currentId ? await openCamera(currentId).catch(() => null) : null;
  }
  if (old) localStream.removeTrack(old);
  if (track) {
    track.enabled = state.cameraOn;
    localStream.addTrack(track);
  }
  await leg?.replaceVideoTrack(track);
  $('self-view').srcObject = localStream;
  $('preview').srcObject = localStream;
  mirrorFor(localStream);
  render();
}

/** Audio only (weak networks): no video sent (the camera is released), the doctor's hidden. */
async function toggleAudioOnly() {
  const on = !state.audioOnly;
  state.audioOnly = on;
  render();
  if (on) {
    const old = localStream?.getVideoTracks()[0];
    await leg?.replaceVideoTrack(null);
    if (old) {
      old.stop();
      localStream.removeTrack(old);
      state.cameraIdBeforeAudioOnly = old.getSettings().deviceId;
    }
  } else {
    try {
      const id = state.cameraIdBeforeAudioOnly ?? cameras[0]?.deviceId;
      if (id) {
        const track = await openCamera(id);
        track.enabled = state.cameraOn;
        localStream.addTrack(track);
        await leg?.replaceVideoTrack(track);
        $('self-view').srcObject = localStream;
      }
    } catch (err) {
      console.info('patient: camera back on:', err.name);
    }
  }
  announce(on ? 'consult.audioOnlyOn' : 'consult.audioOnlyOff');
  render();
}

/* ------------------------------------------------------------------ */
/* The end                                                             */
/* ------------------------------------------------------------------ */

/** Shows the ended screen; releases the camera, the leg and (unless told) the socket. */
function finish(reason) {
  if (state.screen === 'ended') return;
  state.endReason = reason;
  clearSession();
  stopChime();
  clearTimeout(selfTestTimer);
  clearTimeout(disconnectedTimer);
  clearTimeout(renewTimer);
  renewTimer = null;
  stopLoopMeter?.();
  stopLoopMeter = null;
  leg?.close();
  stopLocal();
  for (const id of ['preview', 'self-view', 'loop-video']) $(id).srcObject = null;
  const dialog = $('end-dialog');
  if (dialog.open) dialog.close();
  if (reason !== 'patient_left' && signal && signal.state !== 'closed') {
    // Nothing more to say to the server: the consultation is over.
    const sig = signal;
    setTimeout(() => sig.close(), 0);
  }
  showScreen('ended');
}

/* ------------------------------------------------------------------ */
/* Start                                                               */
/* ------------------------------------------------------------------ */

/** The clinic from /c/<clinic>, and an appointment token (moved out of the address bar). */
function readLocation() {
  const m = /^\/c\/([^/]+)\/?$/.exec(location.pathname);
  if (m) {
    try {
      state.clinic = decodeURIComponent(m[1]);
    } catch {
      state.clinic = null;
    }
  }
  const params = new URLSearchParams(location.search);
  const token = params.get('appointment');
  if (token) {
    writeJson(sessionStorage, APPOINTMENT_KEY, token);
    params.delete('appointment');
    const rest = params.toString();
    history.replaceState(history.state, '', location.pathname + (rest ? `?${rest}` : '') + location.hash);
  }
  joinAppointmentToken = token || readJson(sessionStorage, APPOINTMENT_KEY);
  state.appointment = !!joinAppointmentToken;
  state.askClinic = !state.clinic && !state.appointment;
}

/**
 * The clinic's names, for the header before joining: the link carries only its id.
 * Best effort; `joined` brings them too.
 */
async function loadClinicNames() {
  if (!state.clinic || state.clinicNames) return;
  try {
    const r = await fetch('/api/clinics', { cache: 'no-store' });
    const found = r.ok ? (await r.json()).clinics.find((c) => c.id === state.clinic) : null;
    if (found && !state.clinicNames) {
      state.clinicNames = { name_en: found.name_en, name_ar: found.name_ar };
      setText($('clinic-name'), clinicName());
    }
  } catch {
    /* the id stays shown */
  }
}

/** A reload while waiting or in a consultation: devices again, then resume. */
async function resumeAfterReload(saved) {
  state.clinic = saved.clinic ?? state.clinic;
  state.resuming = true;
  showScreen('waiting', { focus: false });
  await startDevices();
  makeSignal();
  try {
    await signal.connect();
  } catch {
    // Not reachable now: Signal's automatic reconnect covers only an established socket.
    setTimeout(() => resumeAfterReload(saved), 3000);
    signal = null;
    return;
  }
  try {
    const r = await signal.request('resume', { resume_token: saved.token });
    state.resuming = false;
    applyJoined(r);
    followServerState(r.state);
    await startLeg();
    if (localStream?.getAudioTracks().length) {
      signal.request('device_status', { ready: true }).then(() => (state.ready = true), () => {});
    }
  } catch (err) {
    state.resuming = false;
    if (err.code === 'not_found') finish('expired');
    else finish('closed');
  }
}

function wire() {
  mountLangSwitch($('lang-switch'));
  onLangChange(() => render());

  $('consent-agree').addEventListener('click', () => {
    primeAudio(); // a user gesture: the call tone may play later
    showScreen('devices');
    startDevices();
  });
  $('device-retry').addEventListener('click', () => startDevices());
  $('device-audio-only').addEventListener('click', () => startDevices({ video: false }));
  $('camera-select').addEventListener('change', onDeviceChosen);
  $('mic-select').addEventListener('change', onDeviceChosen);
  $('join-form').addEventListener('submit', onJoin);

  $('leave-button').addEventListener('click', leaveQueue);
  $('selftest-retry').addEventListener('click', () => renewLeg());
  $('hear-myself').addEventListener('click', () => {
    hearMyself = !hearMyself;
    setRemoteAudible(hearMyself);
    render();
  });

  $('answer-button').addEventListener('click', onAnswer);

  $('mute-button').addEventListener('click', toggleMute);
  $('camera-button').addEventListener('click', toggleCamera);
  $('switch-camera').addEventListener('click', switchCamera);
  $('audio-only-button').addEventListener('click', toggleAudioOnly);
  const dialog = $('end-dialog');
  $('end-button').addEventListener('click', () => dialog.showModal());
  $('end-cancel').addEventListener('click', () => dialog.close());
  $('end-confirm').addEventListener('click', () => {
    dialog.close();
    leaveQueue();
  });
  dialog.addEventListener('close', () => {
    if (state.screen === 'consultation') $('end-button').focus();
  });

  // Devices plugged in or out: refresh the choices.
  navigator.mediaDevices?.addEventListener?.('devicechange', async () => {
    await refreshDeviceList();
    render();
  });
}

function main() {
  wire();
  readLocation();
  loadClinicNames();
  applyTranslations(document);
  const saved = savedSession();
  if (saved?.token) {
    resumeAfterReload(saved);
  } else {
    showScreen('consent', { focus: false });
  }
}

main();
