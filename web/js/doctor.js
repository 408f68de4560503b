// doctor.js - the doctor's page (/doctor): sign in, go on duty per clinic, watch the
// live queues, call patients and hold the consultation (docs/protocol.md, tabib.v1).
//
// Screens (window.tabibApp.state.screen): 'sign-in', then the desk: 'queue' while no
// patient is called, 'consultation' from `called` until the consultation ends, is
// returned to the queue or transferred.
//
// The media leg belongs to the sign-in, not to a consultation: one RTCPeerConnection is
// offered once signed in and the relay points it at each patient in turn (call next needs
// no renegotiation). Only `media` `reoffer`/`ended` (or a failed connection) make a new one.
//
// The session token lives in sessionStorage (never in the URL): a reload authenticates
// again with it, goes back on duty where the doctor was, and restores a consultation in
// progress (the server keeps both for the grace period).

import { t, hasString, getLang, onLangChange, mountLangSwitch, applyTranslations, formatDuration, formatNumber } from './i18n.js';
import { errorText } from './strings-common.js';
import { Signal } from './signal.js';
import { Leg, openLocalMedia, levelMeter, stopStream } from './media.js';
import './strings-doctor.js'; // registers the page's texts (addStrings)


const $ = (id) => document.getElementById(id);

const STORE = {
  token: 'tabib.doctor.token',
  duty: 'tabib.doctor.duty', // JSON array of clinic ids the doctor wants to be on duty for
  consultation: 'tabib.doctor.consultation', // JSON of `current` (below), for a reload
};

const SPEAKING_LEVEL = 12; // audio_level (0-100) from which the patient counts as speaking
const MEDIA_RETRY_MS = [1000, 2000, 4000, 8000, 15000];

/** What tests read (window.tabibApp.state): plain data only. */
const state = {
  screen: 'sign-in',
  user: null, // {username, role, clinics, all_clinics}
  onDuty: [], // clinic ids
  queues: {}, // clinic id -> number of waiting patients
  consultation: null, // {id, clinic, phase: 'called'|'in_consultation', patient: {name, ...}}
  peer: null, // the patient's connection: 'connected', 'disconnected', 'media_lost'
  patientAudio: 'ok', // from `audio` who=patient: 'ok', 'silent', 'no_packets'
  patientLevel: 0, // the last audio_level (0-100)
  media: 'none', // the doctor's leg: 'none', 'offering', 'answered', 'connected', 'flowing', 'ended', 'failed'
  connection: 'closed', // the Signal's state
};

let signal = null;
let leg = null;
let token = null;
let localStream = null;
let stopOwnMeter = () => {};

window.tabibApp = {
  get signal() {
    return signal;
  },
  get leg() {
    return leg;
  },
  state,
};

/* ------------------------------------------------------------------ */
/* Clinics                                                             */
/* ------------------------------------------------------------------ */

// id -> {id, name_en, name_ar}. The protocol's `authenticated` names the account's clinics
// by id only; names are taken from wherever the server gives them (objects in
// user.clinics or a top-level `clinics` list), else the id is shown.
const clinics = new Map();
let staffed = []; // the account's clinic ids, in the server's order

function learnClinics(reply) {
  const user = reply.user ?? {};
  staffed = [];
  for (const c of user.clinics ?? []) {
    const info = typeof c === 'string' ? { id: c } : c;
    if (!info?.id) continue;
    staffed.push(info.id);
    clinics.set(info.id, { ...clinics.get(info.id), ...info });
  }
  for (const c of reply.clinics ?? []) {
    if (c?.id) clinics.set(c.id, { ...clinics.get(c.id), ...c });
  }
  // An account for all clinics lists none itself: it staffs whatever the server listed.
  if (user.all_clinics && !staffed.length) staffed = [...clinics.keys()];
}

function clinicName(id) {
  const c = clinics.get(id);
  const name = getLang() === 'ar' ? c?.name_ar || c?.name_en : c?.name_en || c?.name_ar;
  // Without a name from the server, the id made readable: "general" -> "General".
  return name || id.replace(/[-_]+/g, ' ').replace(/^./, (ch) => ch.toUpperCase());
}

/** Where a patient can be transferred from `from`: every other clinic the page knows of. */
function transferTargets(from) {
  return [...clinics.keys()].filter((id) => id !== from);
}

/* ------------------------------------------------------------------ */
/* Small DOM helpers                                                   */
/* ------------------------------------------------------------------ */

/** el('li', {class: 'x', dataset: {...}}, child...) - builds markup without innerHTML. */
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') node.className = v;
    else if (k === 'text') node.textContent = v;
    else if (k === 'dataset') Object.assign(node.dataset, v);
    else if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c !== null && c !== undefined) node.append(c);
  return node;
}

/** A name in its own direction (Arabic names in an English page and the other way round). */
function bdi(text) {
  return el('bdi', { text });
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/**
 * Fills an alert (role="alert") with text, or empties it; an empty one takes no room.
 * Only a change is written: the same text again would be announced again.
 */
function showAlert(node, text) {
  if (node.textContent !== (text ?? '')) node.textContent = text ?? '';
}

let announceTimer = null;
/** A one-off message for screen readers (the visible page shows the same thing its own way). */
function announce(text) {
  const node = $('announcer');
  // Emptied first so that the same sentence twice is announced twice.
  node.textContent = '';
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => (node.textContent = text), 50);
}

function storeGet(key) {
  try {
    return sessionStorage.getItem(key);
  } catch {
    return null;
  }
}
function storeSet(key, value) {
  try {
    if (value === null || value === undefined) sessionStorage.removeItem(key);
    else sessionStorage.setItem(key, value);
  } catch {
    /* storage disabled: a reload signs out */
  }
}

/* ------------------------------------------------------------------ */
/* Screens                                                             */
/* ------------------------------------------------------------------ */

function setScreen(screen) {
  state.screen = screen;
  $('sign-in-screen').hidden = screen !== 'sign-in';
  $('desk-screen').hidden = screen === 'sign-in';
  $('desk-screen').dataset.screen = screen;
  $('account').hidden = screen === 'sign-in';
  updateTitle();
}

function updateTitle() {
  if (state.screen === 'sign-in') document.title = t('doctor.title.signIn');
  else if (state.screen === 'consultation' && current)
    document.title = t('doctor.title.consultation'); /* no name: titles end up in history and tab lists */
  else {
    const waiting = Object.values(state.queues).reduce((a, b) => a + b, 0);
    document.title = waiting ? t('doctor.title.queueWaiting', { count: formatNumber(waiting) }) : t('doctor.title.queue');
  }
}

function renderWho() {
  if (state.user) setText($('who'), t('doctor.signedInAs', { name: state.user.username }));
}

/* ------------------------------------------------------------------ */
/* Sign-in                                                             */
/* ------------------------------------------------------------------ */

let signInMessage = null; // {key, vars}: the sign-in screen's alert, re-translated on a switch

function setSignInAlert(key, vars = {}) {
  signInMessage = key ? { key, vars } : null;
  showAlert($('sign-in-alert'), key ? t(key, vars) : '');
}

function setSignInStatus(key) {
  $('sign-in-status').dataset.key = key ?? '';
  setText($('sign-in-status'), key ? t(key) : '');
}

async function onSignInSubmit(e) {
  e.preventDefault();
  const username = $('username').value.trim();
  const password = $('password').value;
  $('username').removeAttribute('aria-invalid');
  $('password').removeAttribute('aria-invalid');
  if (!username || !password) {
    if (!username) $('username').setAttribute('aria-invalid', 'true');
    if (!password) $('password').setAttribute('aria-invalid', 'true');
    setSignInAlert('doctor.signIn.missing');
    (username ? $('password') : $('username')).focus();
    return;
  }
  const button = $('sign-in-button');
  if (button.getAttribute('aria-disabled') === 'true') return; // already signing in
  button.setAttribute('aria-disabled', 'true');
  setSignInAlert(null);
  setSignInStatus('doctor.signIn.busy');
  try {
    let res;
    try {
      res = await fetch('/api/login', {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ username, password }),
        cache: 'no-store',
        credentials: 'same-origin',
      });
    } catch {
      setSignInAlert('common.cannotConnect');
      return;
    }
    const body = await res.json().catch(() => ({}));
    if (res.status === 401) {
      setSignInAlert('doctor.signIn.wrong');
      $('password').value = '';
      $('password').setAttribute('aria-invalid', 'true');
      $('password').focus();
      return;
    }
    if (res.status === 429 || body?.code === 'rate_limited') {
      setSignInAlert('doctor.signIn.throttled');
      return;
    }
    if (!res.ok || typeof body?.token !== 'string') {
      setSignInAlert(errorKey(body?.code), { message: body?.message ?? '' });
      return;
    }
    if (body.user?.role !== 'doctor') {
      setSignInAlert('doctor.signIn.notDoctor');
      return;
    }
    $('password').value = '';
    storeSet(STORE.token, body.token);
    await startSession(body.token, { fresh: true });
  } finally {
    button.removeAttribute('aria-disabled');
    setSignInStatus(null);
  }
}

/** Connects, authenticates with `tok` and opens the desk. `fresh`: just signed in (no duty yet). */
async function startSession(tok, { fresh = false } = {}) {
  token = tok;
  signal = new Signal({ onReconnect: reauthenticate });
  wireSignal(signal);
  let reply;
  try {
    await signal.connect();
    reply = await signal.request('auth', { token });
  } catch (err) {
    const s = signal;
    signal = null;
    s.close();
    if (err.code === 'unauthorized') {
      storeSet(STORE.token, null);
      setSignInAlert(fresh ? 'doctor.signIn.failed' : 'common.close.4002');
    } else {
      if (fresh) storeSet(STORE.token, null);
      setSignInAlert(err.code === 'connect_failed' ? 'common.cannotConnect' : errorKey(err.code), { message: err.message });
    }
    setScreen('sign-in');
    $('sign-in-heading').focus();
    return;
  }
  if (reply.user?.role !== 'doctor') {
    await signOut({ message: 'doctor.signIn.notDoctor' });
    return;
  }
  state.user = reply.user;
  learnClinics(reply);
  renderWho();
  if (fresh) {
    storeSet(STORE.duty, null);
    storeSet(STORE.consultation, null);
  }
  state.onDuty = [];
  state.queues = {};
  setScreen('queue');
  renderDuty();
  renderQueues();
  renderConsultation();
  $('desk-heading').focus();

  // Back where the doctor was before a reload: the same consultation, the same duty. The
  // consultation comes first so that the queue snapshots that duty brings can show it was
  // returned meanwhile (see onQueue).
  // The server says which consultation is open (a new tab, another device); this tab's own
  // note of it is used when the server's is the same one (it knows a little more).
  let saved = parseJson(storeGet(STORE.consultation));
  const open = reply.current;
  if (open && saved?.id === open.consultation) {
    // Events may have been missed while away (the patient accepted): the server's state wins.
    saved.phase = open.state === 'in_consultation' ? 'in_consultation' : 'called';
  } else if (open) {
    saved = {
      id: open.consultation,
      clinic: open.clinic,
      phase: open.state === 'in_consultation' ? 'in_consultation' : 'called',
      patient: {
        name: open.patient?.name ?? '',
        priority: open.patient?.priority ?? 'routine',
        ready: false,
        connected: true,
        ref: open.patient?.patient_ref ?? null,
      },
    };
  } else {
    saved = null; /* ended while away */
  }
  if (saved?.id) {
    current = { ...saved, restored: true };
    state.consultation = publicConsultation();
    setScreen('consultation');
    renderConsultation();
    $('consultation-heading').focus();
  }
  const wanted = parseJson(storeGet(STORE.duty)) ?? [];
  await Promise.all(wanted.filter((id) => staffed.includes(id)).map((id) => setDuty(id, true, { quiet: true })));
  // After a reload nobody clicked yet: the browser may hold the patient's sound back.
  startMedia().then(() => current && checkSound());
}

/** The shared text for a protocol error code (strings-common.js). */
function errorKey(code) {
  return code && hasString(`common.error.${code}`) ? `common.error.${code}` : 'common.error.unknown';
}

function parseJson(text) {
  try {
    return text ? JSON.parse(text) : null;
  } catch {
    return null;
  }
}

/** After an automatic reconnect: the same token again, then duty where it was wanted. */
async function reauthenticate(s) {
  try {
    await s.request('auth', { token });
  } catch (err) {
    if (err.code === 'unauthorized') {
      // The session ended while we were away (expired, signed out elsewhere).
      queueMicrotask(() => signOut({ message: 'common.close.4002', skipLogout: true }));
    }
    throw err;
  }
  // Duty survives a short drop on the server; after a long one it was taken away. Asking
  // again is harmless either way and brings a fresh queue snapshot.
  await Promise.all(state.onDuty.map((id) => s.request('duty', { clinic: id, on: true }).catch(() => {})));
  if (leg && ['failed', 'closed'].includes(leg.connectionState)) renewLeg();
}

async function signOut({ message = 'doctor.signIn.signedOut', skipLogout = false } = {}) {
  if (signal && !skipLogout) {
    try {
      await signal.request('logout', {}, { timeoutMs: 3000 });
    } catch {
      /* signed out locally anyway: the token is forgotten below */
    }
  }
  const s = signal;
  signal = null;
  s?.close();
  stopMedia();
  storeSet(STORE.token, null);
  storeSet(STORE.duty, null);
  storeSet(STORE.consultation, null);
  token = null;
  state.user = null;
  state.onDuty = [];
  state.queues = {};
  state.connection = 'closed';
  clinics.clear();
  staffed = [];
  queueRows.clear();
  queueData.clear();
  seen.clear();
  lastOutcome = null;
  $('queue-list').replaceChildren();
  $('duty-list').replaceChildren();
  clearConsultation();
  setBanner(null);
  showAlert($('desk-alert'), '');
  setSignInAlert(null);
  setScreen('sign-in');
  setSignInStatus(message);
  if (message !== 'doctor.signIn.signedOut') setSignInAlert(message);
  $('sign-in-heading').focus();
}

/* ------------------------------------------------------------------ */
/* The socket                                                          */
/* ------------------------------------------------------------------ */

let bannerKey = null;
function setBanner(key, vars = {}) {
  bannerKey = key ? { key, vars } : null;
  setText($('conn-banner'), key ? t(key, vars) : '');
}

function wireSignal(s) {
  s.onState((st, info) => {
    if (s !== signal) return;
    state.connection = st;
    if (st === 'reconnecting') setBanner('common.reconnecting');
    else if (st === 'open' && bannerKey) {
      setBanner(null);
      announce(t('common.reconnected'));
    } else if (st === 'closed' && info) {
      // Final closes (docs/protocol.md, "Closing"): this page's session is over.
      if ([4001, 4002, 4003].includes(info.code)) {
        signOut({ message: `common.close.${info.code}`, skipLogout: true });
      } else if (info.code !== 1000) {
        setBanner(info.code === 1008 ? 'common.close.1008' : 'common.offline', { reason: info.reason ?? '' });
      }
    }
  });
  s.on('queue', onQueue);
  s.on('consultation_started', onConsultationStarted);
  s.on('peer', onPeer);
  s.on('peer_devices', onPeerDevices);
  s.on('ended', onEnded);
  s.on('media', onMediaEvent);
  s.on('audio', onAudio);
  s.on('audio_level', onAudioLevel);
}

/** A request whose failure is shown in the desk's alert; resolves the reply or null. */
async function act(type, fields) {
  if (!signal) return null;
  try {
    const reply = await signal.request(type, fields);
    showAlert($('desk-alert'), '');
    return reply;
  } catch (err) {
    showAlert($('desk-alert'), errorText(err));
    throw err;
  }
}

/* ------------------------------------------------------------------ */
/* Duty                                                                */
/* ------------------------------------------------------------------ */

function renderDuty() {
  const list = $('duty-list');
  $('duty-empty').hidden = staffed.length > 0;
  list.closest('fieldset').hidden = staffed.length === 0;
  const byId = new Map([...list.children].map((li) => [li.dataset.clinic, li]));
  for (const id of staffed) {
    let li = byId.get(id);
    if (!li) {
      const input = el('input', {
        type: 'checkbox',
        id: `duty-${id}`,
        onchange: (e) => setDuty(id, e.target.checked),
      });
      li = el(
        'li',
        { class: 'duty-item', dataset: { clinic: id } },
        // The state word is for the eye; the checkbox says it to screen readers itself.
        el('label', { class: 'check duty-check', for: `duty-${id}` }, input, el('span', { class: 'duty-name' }), el('span', { class: 'duty-state', 'aria-hidden': 'true' })),
      );
      list.append(li);
    }
    const on = state.onDuty.includes(id);
    li.querySelector('input').checked = on;
    setText(li.querySelector('.duty-name'), clinicName(id));
    setText(li.querySelector('.duty-state'), on ? t('doctor.duty.on') : t('doctor.duty.off'));
    li.classList.toggle('on', on);
  }
}

async function setDuty(id, on, { quiet = false } = {}) {
  try {
    await act('duty', { clinic: id, on });
  } catch (err) {
    if (err.code === 'conflict') showAlert($('desk-alert'), t('doctor.duty.busy'));
    renderDuty(); // the checkbox goes back to what the server has
    return;
  }
  if (on && !state.onDuty.includes(id)) state.onDuty.push(id);
  if (!on) {
    state.onDuty = state.onDuty.filter((c) => c !== id);
    delete state.queues[id];
    queueData.delete(id);
    seen.delete(id);
  }
  storeSet(STORE.duty, JSON.stringify(state.onDuty));
  renderDuty();
  renderQueues();
  if (!quiet) announce(t(on ? 'doctor.duty.nowOn' : 'doctor.duty.nowOff', { clinic: clinicName(id) }));
}

/* ------------------------------------------------------------------ */
/* Queues                                                              */
/* ------------------------------------------------------------------ */

const queueData = new Map(); // clinic -> {patients, doctorsOnDuty, at (performance.now())}
const queueRows = new Map(); // consultation id -> <li>
const seen = new Map(); // clinic -> Set of consultation ids already announced

function onQueue(ev) {
  if (!ev?.clinic) return;
  // The server pushes `queue` only to doctors on duty for the clinic: if the page thought
  // otherwise (duty kept from an earlier page within the grace period), it follows the server.
  if (!state.onDuty.includes(ev.clinic)) {
    if (!staffed.includes(ev.clinic)) return;
    state.onDuty.push(ev.clinic);
    storeSet(STORE.duty, JSON.stringify(state.onDuty));
    renderDuty();
  }
  const patients = Array.isArray(ev.patients) ? ev.patients : [];
  const before = seen.get(ev.clinic);
  const ids = new Set(patients.map((p) => p.consultation));
  if (before) {
    const arrived = patients.filter((p) => !before.has(p.consultation));
    // Without the names: the queue shows them (and a name in two places confuses a search).
    if (arrived.length) {
      const urgent = arrived.some((p) => p.priority === 'urgent');
      announce(t(urgent ? 'doctor.queue.arrivedUrgent' : 'doctor.queue.arrived', {
        clinic: clinicName(ev.clinic),
        count: formatNumber(patients.length),
      }));
    }
  }
  seen.set(ev.clinic, ids);
  queueData.set(ev.clinic, { patients, doctorsOnDuty: ev.doctors_on_duty, at: performance.now() });
  state.queues[ev.clinic] = patients.length;
  // A restored consultation that is waiting again was returned while the page was away.
  if (current?.restored && ids.has(current.id)) finishConsultation('doctor.returned');
  renderQueues();
}

function waitedNow(p, at) {
  return (p.waited_s ?? 0) + (performance.now() - at) / 1000;
}

/** Draws one card per clinic on duty; rows are kept by consultation id, so focus and selects survive updates. */
function renderQueues() {
  const list = $('queue-list');
  $('queues-off').hidden = state.onDuty.length > 0;
  const cards = new Map([...list.children].map((c) => [c.dataset.clinic, c]));
  for (const [id, card] of cards) if (!state.onDuty.includes(id)) card.remove();
  let prev = null;
  for (const id of staffed.filter((c) => state.onDuty.includes(c))) {
    let card = cards.get(id);
    if (!card) card = makeQueueCard(id);
    if (card.previousElementSibling !== prev || card.parentNode !== list) {
      if (prev) prev.after(card);
      else list.prepend(card);
    }
    prev = card;
    updateQueueCard(card, id);
  }
  // Rows of patients who left every queue.
  const live = new Set();
  for (const q of queueData.values()) for (const p of q.patients) live.add(p.consultation);
  for (const [cid, row] of queueRows) {
    if (!live.has(cid)) {
      row.remove();
      queueRows.delete(cid);
    }
  }
  updateTitle();
}

function makeQueueCard(id) {
  const headingId = `queue-h-${id}`;
  const callNextButton = el('button', {
    type: 'button',
    class: 'button primary call-next',
    'aria-describedby': headingId,
    dataset: { clinic: id },
    onclick: () => callNext(id),
  });
  return el(
    'section',
    { class: 'card queue-card', 'aria-labelledby': headingId, dataset: { clinic: id } },
    el('div', { class: 'queue-head' }, el('h3', { id: headingId, class: 'queue-title' }), el('p', { class: 'queue-count' })),
    callNextButton,
    el('p', { class: 'queue-hint muted' }),
    el('ol', { class: 'queue-patients' }),
  );
}

function updateQueueCard(card, id) {
  const q = queueData.get(id);
  const patients = q?.patients ?? [];
  setText(card.querySelector('.queue-title'), clinicName(id));
  const urgent = patients.filter((p) => p.priority === 'urgent').length;
  let count = q ? t(patients.length === 1 ? 'doctor.queue.countOne' : 'doctor.queue.count', { count: formatNumber(patients.length) }) : t('common.loading');
  if (urgent) count += ` · ${t('doctor.queue.urgentCount', { count: formatNumber(urgent) })}`;
  if (q?.doctorsOnDuty > 1) count += ` · ${t('doctor.queue.doctors', { count: formatNumber(q.doctorsOnDuty) })}`;
  setText(card.querySelector('.queue-count'), count);

  const callNextButton = card.querySelector('.call-next');
  setText(callNextButton, t('doctor.queue.callNext'));
  // aria-disabled, not disabled: the button keeps its place in the tab order and can hold
  // the focus after a consultation ends, even while nobody waits.
  const blocked = !patients.length || !!current;
  if (blocked) callNextButton.setAttribute('aria-disabled', 'true');
  else callNextButton.removeAttribute('aria-disabled');
  const hint = card.querySelector('.queue-hint');
  setText(hint, !q ? '' : current ? t('doctor.queue.busy') : patients.length ? '' : t('doctor.queue.empty'));
  hint.hidden = !hint.textContent;

  const ol = card.querySelector('.queue-patients');
  ol.hidden = !patients.length;
  let prev = null;
  for (const p of patients) {
    let row = queueRows.get(p.consultation);
    if (!row) {
      row = makeRow(p.consultation);
      queueRows.set(p.consultation, row);
    }
    updateRow(row, p, id, q.at);
    if (row.parentNode !== ol || row.previousElementSibling !== prev) {
      if (prev) prev.after(row);
      else ol.prepend(row);
    }
    prev = row;
  }
  for (const row of [...ol.children]) if (!patients.some((p) => p.consultation === row.dataset.consultation)) row.remove();
}

// A patient's name is written once per row (the tests, and people searching the page,
// find it once); the row's controls take it into their names with aria-labelledby.
function makeRow(cid) {
  const ids = { name: `pname-${cid}`, call: `call-${cid}`, target: `target-${cid}`, targetLabel: `target-label-${cid}`, transfer: `transfer-${cid}` };
  return el(
    'li',
    { class: 'patient', dataset: { consultation: cid } },
    el('div', { class: 'patient-line' }, el('span', { class: 'patient-name', id: ids.name }), el('span', { class: 'badge urgent' })),
    el('p', { class: 'patient-meta' }, el('span', { class: 'waited' }), el('span', { class: 'ready' }), el('span', { class: 'offline' })),
    el(
      'div',
      { class: 'row patient-actions' },
      el('button', {
        type: 'button',
        id: ids.call,
        class: 'button call',
        'aria-labelledby': `${ids.call} ${ids.name}`, // "Call Maryam"
        onclick: () => callPatient(cid),
      }),
      el(
        'div',
        { class: 'row transfer' },
        el('span', { class: 'visually-hidden target-label', id: ids.targetLabel }),
        el('select', { id: ids.target, class: 'transfer-target', 'aria-labelledby': `${ids.targetLabel} ${ids.name}` }),
        el('button', {
          type: 'button',
          id: ids.transfer,
          class: 'button transfer-button',
          'aria-labelledby': `${ids.transfer} ${ids.name}`, // "Transfer Maryam"
          onclick: () => transferWaiting(cid),
        }),
      ),
    ),
  );
}

function updateRow(row, p, clinic, at) {
  row.dataset.clinic = clinic;
  row.dataset.waited = String(p.waited_s ?? 0);
  row.dataset.at = String(at);
  row.dataset.name = p.name;
  row.classList.toggle('is-urgent', p.priority === 'urgent');
  const nameNode = row.querySelector('.patient-name');
  if (nameNode.textContent !== p.name) nameNode.replaceChildren(bdi(p.name));
  const badge = row.querySelector('.badge.urgent');
  badge.hidden = p.priority !== 'urgent';
  setText(badge, t('doctor.queue.urgent'));
  setText(row.querySelector('.waited'), t('doctor.queue.waited', { time: formatDuration(waitedNow(p, at)) }));
  const ready = row.querySelector('.ready');
  setText(ready, p.ready ? t('doctor.queue.ready') : t('doctor.queue.notReady'));
  ready.classList.toggle('is-ready', !!p.ready);
  const offline = row.querySelector('.offline');
  offline.hidden = p.connected !== false;
  setText(offline, t('doctor.queue.disconnected'));

  const call = row.querySelector('.button.call');
  setText(call, t('doctor.queue.call'));
  if (current) call.setAttribute('aria-disabled', 'true');
  else call.removeAttribute('aria-disabled');

  const targets = transferTargets(clinic);
  row.querySelector('.transfer').hidden = !targets.length;
  setText(row.querySelector('.target-label'), t('doctor.queue.transferTarget'));
  fillClinicSelect(row.querySelector('select'), targets);
  setText(row.querySelector('.transfer-button'), t('doctor.queue.transfer'));
}

/** Options for `ids`, keeping the selection. */
function fillClinicSelect(select, ids) {
  const keep = select.value;
  const same = select.options.length === ids.length && ids.every((id, i) => select.options[i].value === id);
  if (!same) select.replaceChildren(...ids.map((id) => el('option', { value: id })));
  for (const o of select.options) setText(o, clinicName(o.value));
  if (ids.includes(keep)) select.value = keep;
}

/** Each second: the waiting times and the peer's grace countdown move on. */
function tick() {
  for (const row of queueRows.values()) {
    const waited = Number(row.dataset.waited) + (performance.now() - Number(row.dataset.at)) / 1000;
    setText(row.querySelector('.waited'), t('doctor.queue.waited', { time: formatDuration(waited) }));
  }
  renderPeer();
}

/* ------------------------------------------------------------------ */
/* Calling                                                             */
/* ------------------------------------------------------------------ */

// The consultation this doctor holds: {id, clinic, phase, patient: {name, priority, ready,
// connected, ref}, restored (taken from sessionStorage after a reload)} or null. Mirrored in
// state.consultation and kept in sessionStorage.
let current = null;
let peerInfo = null; // {state, deadline (performance.now() ms) or null}
let patientAudio = 'ok';
let selfAudio = 'ok';

function publicConsultation() {
  return current && { id: current.id, clinic: current.clinic, phase: current.phase, patient: { ...current.patient } };
}

function saveConsultation() {
  state.consultation = publicConsultation();
  storeSet(STORE.consultation, current ? JSON.stringify({ ...current, restored: undefined }) : null);
}

function explainBusy() {
  showAlert($('desk-alert'), t('doctor.queue.busyAlert', { name: current.patient.name }));
  $('consultation-heading').focus();
}

async function callNext(clinic) {
  if (current) return explainBusy();
  if (!queueData.get(clinic)?.patients.length) {
    showAlert($('desk-alert'), t('doctor.queue.noneWaiting', { clinic: clinicName(clinic) }));
    return;
  }
  try {
    const reply = await act('call_next', { clinic });
    called(reply, clinic);
  } catch {
    /* shown */
  }
}

async function callPatient(cid) {
  if (current) return explainBusy();
  const clinic = queueRows.get(cid)?.dataset.clinic;
  try {
    const reply = await act('call', { consultation: cid });
    called(reply, clinic);
  } catch {
    /* shown */
  }
}

function called(reply, clinic) {
  const p = reply.patient ?? {};
  current = {
    id: reply.consultation,
    clinic: reply.clinic ?? clinic,
    phase: 'called',
    patient: {
      name: p.name ?? '',
      priority: p.priority ?? 'routine',
      ready: !!p.ready,
      connected: p.connected !== false,
      ref: p.patient_ref ?? reply.patient_ref ?? null,
    },
  };
  peerInfo = current.patient.connected ? null : { state: 'disconnected', deadline: null };
  state.peer = peerInfo ? 'disconnected' : 'connected';
  patientAudio = 'ok';
  saveConsultation();
  setScreen('consultation');
  renderConsultation();
  renderQueues();
  $('consultation-heading').focus();
  announce(t('doctor.consult.calling', { name: current.patient.name }));
}

async function transferWaiting(cid) {
  const row = queueRows.get(cid);
  const target = row?.querySelector('select').value;
  if (!target) return;
  const name = row.dataset.name;
  try {
    await act('transfer', { consultation: cid, clinic: target });
    announce(t('doctor.transferred', { name, clinic: clinicName(target) }));
  } catch {
    /* shown */
  }
}

/* ------------------------------------------------------------------ */
/* The consultation                                                    */
/* ------------------------------------------------------------------ */

function onConsultationStarted(ev) {
  if (!current || ev.consultation !== current.id) return;
  current.phase = 'in_consultation';
  current.startedAt = Date.now();
  saveConsultation();
  renderConsultation();
  announce(t('doctor.consult.startedAnnounce', { name: current.patient.name }));
  checkSound();
}

function onPeerDevices(ev) {
  if (!current || ev.consultation !== current.id) return;
  current.patient.ready = !!ev.ready;
  saveConsultation();
  renderConsultation();
}

function onPeer(ev) {
  if (!current || ev.consultation !== current.id || ev.who !== 'patient') return;
  const name = current.patient.name;
  if (ev.state === 'connected') {
    const was = peerInfo?.state;
    peerInfo = null;
    current.patient.connected = true;
    if (was) announce(t('doctor.peer.back', { name }));
  } else if (ev.state === 'disconnected' || ev.state === 'media_lost') {
    const grace = Number(ev.grace_s);
    peerInfo = { state: ev.state, deadline: Number.isFinite(grace) ? performance.now() + grace * 1000 : null };
    if (ev.state === 'disconnected') current.patient.connected = false;
    announce(t(ev.state === 'disconnected' ? 'doctor.peer.disconnectedAnnounce' : 'doctor.peer.mediaLostAnnounce', {
      name,
      seconds: Number.isFinite(grace) ? formatNumber(grace) : '?',
    }));
  }
  state.peer = peerInfo?.state ?? 'connected';
  saveConsultation();
  renderPeer();
}

/**
 * The patient's sound arrives again after `media_lost`: their new leg connected (the server
 * sends no `peer` event for that, only the audio events start again).
 */
function mediaBack() {
  if (peerInfo?.state !== 'media_lost') return;
  peerInfo = null;
  state.peer = 'connected';
  announce(t('doctor.peer.mediaBack', { name: current.patient.name }));
  renderPeer();
}

function renderPeer() {
  const node = $('peer-status');
  if (!current || !peerInfo) {
    node.hidden = true;
    node.textContent = '';
    node.classList.remove('warn');
    return;
  }
  const left = peerInfo.deadline === null ? null : Math.max(0, Math.ceil((peerInfo.deadline - performance.now()) / 1000));
  const key =
    peerInfo.state === 'media_lost'
      ? left === null ? 'doctor.peer.mediaLost' : 'doctor.peer.mediaLostCountdown'
      : left === null ? 'doctor.peer.disconnected' : 'doctor.peer.disconnectedCountdown';
  node.hidden = false;
  node.classList.add('warn');
  setText(node, t(key, { name: current.patient.name, time: formatDuration(left ?? 0) }));
}

function onAudio(ev) {
  if (!current || (ev.consultation && ev.consultation !== current.id)) return;
  if (ev.who === 'patient') {
    patientAudio = ev.state;
    state.patientAudio = ev.state;
    if (ev.state === 'ok') mediaBack();
  } else if (ev.who === 'doctor') {
    selfAudio = ev.state;
  }
  renderAudioAlerts();
}

function renderAudioAlerts() {
  const name = current?.patient.name ?? '';
  const pKey = { silent: 'doctor.audio.patientSilent', no_packets: 'doctor.audio.patientNoPackets' }[patientAudio];
  showAlert($('patient-alert'), current && pKey ? t(pKey, { name }) : '');
  // Silence is expected while the doctor muted themselves: no warning then.
  const sKey = { silent: 'doctor.audio.selfSilent', no_packets: 'doctor.audio.selfNoPackets' }[selfAudio];
  showAlert($('self-alert'), current && sKey && leg?.micEnabled !== false ? t(sKey) : '');
}

function onAudioLevel(ev) {
  if (!current || (ev.consultation && ev.consultation !== current.id) || ev.who !== 'patient') return;
  const level = Math.max(0, Math.min(100, Number(ev.level) || 0));
  mediaBack();
  state.patientLevel = level;
  setMeter($('patient-level'), level);
  setText($('patient-speaking'), level >= SPEAKING_LEVEL ? t('doctor.level.speaking') : '');
}

function setMeter(node, level) {
  const v = Math.round(level);
  node.setAttribute('aria-valuenow', String(v));
  node.setAttribute('aria-valuetext', t('doctor.level.value', { level: formatNumber(v), max: formatNumber(100) }));
  node.firstElementChild.style.inlineSize = `${v}%`;
}

function onEnded(ev) {
  if (!current || ev.consultation !== current.id) return;
  finishConsultation(endedKey(ev.reason));
}

function endedKey(reason) {
  return hasString(`doctor.ended.${reason}`) ? `doctor.ended.${reason}` : 'doctor.ended.other';
}

/**
 * The consultation is over (whatever the reason): back to the queue, the outcome said in
 * words (`key` with `vars`), and the next call one press away.
 */
function finishConsultation(key, vars = {}) {
  const clinic = current.clinic;
  lastOutcome = { key, vars };
  clearConsultation();
  setScreen('queue');
  renderQueues();
  renderConsultation();
  announce(t(lastOutcome.key, lastOutcome.vars));
  focusCallNext(clinic);
}

let lastOutcome = null; // the idle panel's last line: {key, vars}

function focusCallNext(clinic) {
  const buttons = [...document.querySelectorAll('.call-next')];
  const target = buttons.find((b) => b.dataset.clinic === clinic) ?? buttons[0];
  (target ?? $('duty-heading')).focus();
}

function clearConsultation() {
  current = null;
  peerInfo = null;
  patientAudio = 'ok';
  selfAudio = 'ok';
  state.consultation = null;
  state.peer = null;
  state.patientAudio = 'ok';
  state.patientLevel = 0;
  storeSet(STORE.consultation, null);
  if ($('end-dialog').open) $('end-dialog').close();
  $('sound-button').hidden = true;
  renderAudioAlerts();
  renderPeer();
  setMeter($('patient-level'), 0);
  setText($('patient-speaking'), '');
}

function renderConsultation() {
  const active = !!current;
  const heading = $('consultation-heading');
  if (active) {
    heading.replaceChildren(...splitAround(t('doctor.consult.heading', { name: '\u0000' }), current.patient.name));
  } else {
    setText(heading, t('doctor.consult.idleHeading'));
  }
  const status = $('consultation-status');
  if (active) {
    const bits = [];
    bits.push(t(current.phase === 'called' ? 'doctor.consult.waitingAccept' : 'doctor.consult.inProgress', { name: current.patient.name }));
    bits.push(clinicName(current.clinic));
    if (current.patient.priority === 'urgent') bits.push(t('doctor.queue.urgent'));
    bits.push(current.patient.ready ? t('doctor.queue.ready') : t('doctor.queue.notReady'));
    if (current.patient.ref) bits.push(t('doctor.consult.ref', { ref: current.patient.ref }));
    setText(status, bits.join(' · '));
  } else {
    setText(status, lastOutcome ? `${t(lastOutcome.key, lastOutcome.vars)} ${t('doctor.consult.idleHint')}` : t('doctor.consult.idleHint'));
  }
  $('consultation').classList.toggle('is-active', active);
  $('consult-actions').hidden = !active;
  $('patient-level-row').hidden = !active;
  const targets = active ? transferTargets(current.clinic) : [];
  $('consult-transfer').hidden = !targets.length;
  fillClinicSelect($('consult-transfer-target'), targets);
  renderStage();
  renderPeer();
  renderAudioAlerts();
  renderMediaControls();
  updateTitle();
}

/** `template` split at the \0 placeholder, with `name` as a <bdi> in between. */
function splitAround(template, name) {
  const [a, b = ''] = template.split('\u0000');
  return [a, bdi(name), b];
}

function renderStage() {
  const note = $('stage-note');
  const video = $('remote-video');
  let text = '';
  if (!current) text = '';
  else if (audioOnly) text = t('doctor.stage.audioOnly', { name: current.patient.name });
  else if (current.phase === 'called') text = t('doctor.stage.calling', { name: current.patient.name });
  // The remote video only shows during a consultation (between patients it is black).
  video.hidden = !current || current.phase !== 'in_consultation' || audioOnly;
  note.hidden = !text;
  setText(note, text);
}

async function returnToQueue() {
  if (!current) return;
  const id = current.id;
  try {
    await act('return_to_queue', { consultation: id });
    if (current?.id === id) finishConsultation('doctor.returned');
  } catch (err) {
    if (['not_found', 'conflict'].includes(err.code) && current?.id === id) finishConsultation('doctor.ended.gone');
  }
}

async function transferCurrent() {
  if (!current) return;
  const target = $('consult-transfer-target').value;
  if (!target) return;
  const id = current.id;
  try {
    await act('transfer', { consultation: id, clinic: target });
    // The `ended` (reason transferred) that follows finds no current consultation.
    if (current?.id === id) finishConsultation('doctor.transferred', { clinic: clinicName(target) });
  } catch (err) {
    if (err.code === 'not_found' && current?.id === id) finishConsultation('doctor.ended.gone');
  }
}

function fillEndDialog() {
  if (current) $('end-dialog-text').replaceChildren(...splitAround(t('doctor.endDialog.text', { name: '\u0000' }), current.patient.name));
}

function openEndDialog() {
  if (!current) return;
  fillEndDialog();
  $('end-dialog').showModal();
  $('end-cancel').focus(); // the safe choice first
}

async function confirmEnd() {
  $('end-dialog').close();
  if (!current) return;
  const id = current.id;
  try {
    const reply = await act('end', { consultation: id });
    if (current?.id === id) finishConsultation(endedKey(reply.reason ?? 'completed'));
  } catch (err) {
    if (['not_found', 'conflict'].includes(err.code) && current?.id === id) finishConsultation('doctor.ended.gone');
  }
}

/* ------------------------------------------------------------------ */
/* Media                                                               */
/* ------------------------------------------------------------------ */

let audioOnly = false;
let mediaError = null; // the DOMException of getUserMedia, shown with a retry button
let mediaRetry = 0;
let mediaRetryTimer = null;

/** The camera and microphone, then the leg (once per sign-in). Without devices the doctor still sees and hears. */
async function startMedia() {
  if (!signal) return;
  mediaError = null;
  let stream = null;
  try {
    stream = await openLocalMedia({ video: !audioOnly });
  } catch (err) {
    if (err?.name === 'NotFoundError' && !audioOnly) {
      // No camera: a microphone alone still makes a consultation.
      try {
        stream = await openLocalMedia({ video: false });
      } catch (err2) {
        mediaError = err2;
      }
    } else {
      mediaError = err;
    }
  }
  if (!signal) {
    stopStream(stream);
    return;
  }
  if (stream) useLocalStream(stream);
  if (!leg) {
    leg = new Leg(signal, localStream ?? new MediaStream(), { remoteVideo: $('remote-video'), remoteAudio: $('remote-audio') });
    leg.onState(onLegState);
    await startLeg();
  } else if (stream) {
    await leg.replaceAudioTrack?.(stream.getAudioTracks()[0] ?? null);
    await leg.replaceVideoTrack(stream.getVideoTracks()[0] ?? null);
  }
  renderMediaControls();
}

function useLocalStream(stream) {
  stopOwnMeter();
  if (localStream && localStream !== stream) stopStream(localStream);
  localStream = stream;
  $('self-view').srcObject = stream.getVideoTracks().length ? new MediaStream(stream.getVideoTracks()) : null;
  stopOwnMeter = levelMeter(stream, (level) => setMeter($('own-level'), level * 100));
}

async function startLeg() {
  state.media = 'offering';
  try {
    await leg.start();
    state.media = 'answered';
    mediaRetry = 0;
    showAlert($('media-alert'), '');
  } catch (err) {
    state.media = 'failed';
    if (err.code !== 'disconnected') showAlert($('media-alert'), t('doctor.media.failed', { reason: errorText(err) }));
    scheduleRenew();
  }
}

function renewLeg() {
  if (!leg || !signal) return;
  clearTimeout(mediaRetryTimer);
  mediaRetryTimer = null;
  state.media = 'offering';
  leg.renew().then(
    () => {
      state.media = 'answered';
      mediaRetry = 0;
      showAlert($('media-alert'), '');
    },
    (err) => {
      state.media = 'failed';
      if (err.code !== 'disconnected') showAlert($('media-alert'), t('doctor.media.failed', { reason: errorText(err) }));
      scheduleRenew();
    },
  );
}

/** Tries a new leg again later, a little later each time. */
function scheduleRenew() {
  if (mediaRetryTimer || !signal) return;
  const delay = MEDIA_RETRY_MS[Math.min(mediaRetry, MEDIA_RETRY_MS.length - 1)];
  mediaRetry++;
  mediaRetryTimer = setTimeout(() => {
    mediaRetryTimer = null;
    renewLeg();
  }, delay);
}

function onLegState(st) {
  if (st === 'connected') {
    mediaRetry = 0;
    showAlert($('media-alert'), '');
  } else if (st === 'failed') {
    state.media = 'failed';
    scheduleRenew();
  }
}

function onMediaEvent(ev) {
  if (ev.state === 'connected' || ev.state === 'flowing') {
    state.media = ev.state;
    showAlert($('media-alert'), '');
  } else if (ev.state === 'reoffer') {
    // The patient's media lives on another worker: a new connection lands there.
    renewLeg();
  } else if (ev.state === 'ended') {
    state.media = 'ended';
    scheduleRenew();
  }
}

function stopMedia() {
  clearTimeout(mediaRetryTimer);
  mediaRetryTimer = null;
  mediaRetry = 0;
  stopOwnMeter();
  stopOwnMeter = () => {};
  leg?.close();
  leg = null;
  stopStream(localStream);
  localStream = null;
  $('self-view').srcObject = null;
  audioOnly = false;
  mediaError = null;
  state.media = 'none';
  setMeter($('own-level'), 0);
  showAlert($('media-alert'), '');
}

function renderMediaControls() {
  const mic = $('mic-button');
  const cam = $('camera-button');
  const micOn = leg?.micEnabled !== false;
  const camOn = leg?.cameraEnabled !== false;
  const hasVideo = !!localStream?.getVideoTracks().length;
  mic.dataset.i18n = micOn ? 'common.mute' : 'common.unmute';
  setText(mic, t(mic.dataset.i18n));
  mic.classList.toggle('is-off', !micOn);
  mic.hidden = !localStream?.getAudioTracks().length;
  cam.dataset.i18n = camOn ? 'common.cameraOff' : 'common.cameraOn';
  setText(cam, t(cam.dataset.i18n));
  cam.classList.toggle('is-off', !camOn);
  cam.hidden = audioOnly || !hasVideo;
  const ao = $('audio-only-button');
  ao.setAttribute('aria-pressed', String(audioOnly));
  ao.hidden = !localStream && !audioOnly;
  $('media-retry').hidden = !mediaError;
  if (mediaError) showAlert($('media-alert'), errorText(mediaError));
  const selfNote = $('self-note');
  const selfText = audioOnly || !hasVideo ? t('doctor.self.noVideo') : !camOn ? t('doctor.self.cameraOff') : '';
  selfNote.hidden = !selfText;
  setText(selfNote, selfText);
  $('self-view').classList.toggle('is-off', !!selfText);
  renderStage();
}

function toggleMic() {
  if (!leg) return;
  leg.setMicEnabled(!leg.micEnabled);
  renderMediaControls();
  renderAudioAlerts();
  announce(t(leg.micEnabled ? 'common.micOn' : 'common.micOff'));
}

function toggleCamera() {
  if (!leg) return;
  leg.setCameraEnabled(!leg.cameraEnabled);
  renderMediaControls();
}

/** Audio only: no video either way on this side (the camera is released, the patient's video hidden). */
async function toggleAudioOnly() {
  if (!leg) return;
  const button = $('audio-only-button');
  if (button.getAttribute('aria-disabled') === 'true') return;
  button.setAttribute('aria-disabled', 'true');
  try {
    if (!audioOnly) {
      audioOnly = true;
      for (const track of localStream?.getVideoTracks() ?? []) {
        track.stop();
        localStream.removeTrack(track);
      }
      $('self-view').srcObject = null;
      await leg.replaceVideoTrack(null);
    } else {
      const fresh = await openLocalMedia({ video: true });
      for (const track of fresh.getAudioTracks()) track.stop(); // the microphone already runs
      const video = fresh.getVideoTracks()[0];
      localStream?.addTrack(video);
      $('self-view').srcObject = new MediaStream([video]);
      await leg.replaceVideoTrack(video);
      audioOnly = false;
    }
  } catch (err) {
    showAlert($('media-alert'), errorText(err));
  } finally {
    button.removeAttribute('aria-disabled');
    renderMediaControls();
  }
}

/** If the browser held the patient's sound back (a reload without a click), offer a button. */
function checkSound() {
  setTimeout(() => {
    const audio = $('remote-audio');
    $('sound-button').hidden = !(current && audio.srcObject && audio.paused);
  }, 1000);
}

function playSound() {
  const audio = $('remote-audio');
  audio.play().then(
    () => ($('sound-button').hidden = true),
    () => {},
  );
  $('remote-video').play().catch(() => {});
}

/* ------------------------------------------------------------------ */
/* Language                                                            */
/* ------------------------------------------------------------------ */

function rerender() {
  applyTranslations();
  renderWho();
  if (signInMessage) showAlert($('sign-in-alert'), t(signInMessage.key, signInMessage.vars));
  if ($('sign-in-status').dataset.key) setText($('sign-in-status'), t($('sign-in-status').dataset.key));
  if (bannerKey) setText($('conn-banner'), t(bannerKey.key, bannerKey.vars));
  if (state.screen !== 'sign-in') {
    renderDuty();
    renderQueues();
    renderConsultation();
    if ($('end-dialog').open) fillEndDialog();
  }
  updateTitle();
}

/* ------------------------------------------------------------------ */
/* Start                                                               */
/* ------------------------------------------------------------------ */

function init() {
  applyTranslations();
  mountLangSwitch($('lang-switch'));
  onLangChange(rerender);
  $('sign-in-form').addEventListener('submit', onSignInSubmit);
  $('sign-out').addEventListener('click', () => signOut());
  $('mic-button').addEventListener('click', toggleMic);
  $('camera-button').addEventListener('click', toggleCamera);
  $('audio-only-button').addEventListener('click', toggleAudioOnly);
  $('sound-button').addEventListener('click', playSound);
  $('media-retry').addEventListener('click', () => startMedia());
  $('return-button').addEventListener('click', returnToQueue);
  $('consult-transfer-button').addEventListener('click', transferCurrent);
  $('end-button').addEventListener('click', openEndDialog);
  $('end-confirm').addEventListener('click', confirmEnd);
  $('end-cancel').addEventListener('click', () => $('end-dialog').close());
  $('end-dialog').addEventListener('close', () => {
    if (current) $('end-button').focus();
  });
  setInterval(tick, 1000);
  renderConsultation();
  setScreen('sign-in');

  const saved = storeGet(STORE.token);
  if (saved) {
    setSignInStatus('doctor.signIn.resuming');
    startSession(saved).finally(() => {
      if (state.screen !== 'sign-in' || $('sign-in-status').dataset.key === 'doctor.signIn.resuming') setSignInStatus(null);
    });
  } else {
    $('username').focus();
  }
}

init();
