// admin.js - the administration page (/admin): sign-in, the live overview of the
// clinics with today's waits against the service target, the audit log's chain
// verification, the audit search with its session timelines, and the exports.
//
// Live figures come over the WebSocket (`overview`, docs/protocol.md); the audit
// log over HTTPS with the session token as a Bearer header (docs/audit.md). The
// token lives in sessionStorage only: never in a URL, gone with the tab.
//
// Tests read window.tabibApp.state: screen ('sign-in' | 'dashboard'), lastSearch
// (the sessions shown), timeline, overview, stats, verify.

import {
  t,
  hasString,
  getLang,
  onLangChange,
  mountLangSwitch,
  applyTranslations,
  formatNumber,
  formatDuration,
} from './i18n.js';
import { Signal } from './signal.js';
import './strings-common.js';
import { pluralKey } from './strings-admin.js';

/** The service's promise: nobody waits longer than this (seconds). */
export const TARGET_WAIT_S = 15 * 60;
const OVERVIEW_INTERVAL_MS = 5000; // admins get no pushed `queue` events: they ask
const STATS_INTERVAL_MS = 60000; // each stats query is itself audited: not every 5 s
const PAGE_SIZE = 50;
const TIMELINE_PAGE = 500; // the API's largest page
const TIMELINE_MAX = 2000; // a session with more events is exported, not listed
const TOKEN_KEY = 'tabib.admin.token';

const END_REASONS = [
  'completed',
  'patient_left',
  'doctor_ended',
  'abandoned',
  'transferred',
  'connection_lost',
  'server_shutdown',
  'server_restart',
];
const OUTCOMES = ['ok', 'denied', 'failed', 'warning'];
// The event catalogue of docs/audit.md, offered as suggestions for the type filter.
const EVENT_TYPES = [
  'queue_joined', 'queue_full', 'appointment_refused', 'consultation_called', 'returned_to_queue',
  'consultation_started', 'consultation_ended', 'participant_disconnected', 'participant_resumed',
  'resume_refused', 'duty_started', 'duty_ended', 'media_offer', 'media_connected', 'media_flowing',
  'media_ended', 'media_lost', 'microphone_silent', 'microphone_ok', 'media_summary', 'sign_in',
  'sign_in_failed', 'sign_in_throttled', 'session_resumed', 'sign_out', 'access_denied',
  'connection_closed_for_flood', 'appointment_issued', 'user_added', 'user_disabled',
  'password_changed', 'audit_search', 'audit_export', 'server_started', 'server_stopped',
];

const $ = (id) => document.getElementById(id);

const state = {
  screen: 'sign-in',
  user: null,
  overview: null, // the `overview` reply's clinics
  overviewAt: null, // when it arrived (ms)
  overviewError: null,
  stats: null, // {status: 'ok', clinics: [...]} | {status: 'unavailable'} | {status: 'error', message}
  verify: null, // {status: 'checking' | 'ok' | 'broken' | 'unavailable' | 'error', ...}
  lastSearch: [], // the sessions shown in the results table
  nextCursor: null,
  lastFilters: null,
  searching: false,
  timeline: null, // {session, events, truncated, loading, error}
};
window.tabibApp = { signal: null, state };

let signal = null;
let token = null;
let overviewTimer = null;
let statsTimer = null;
let overviewBusy = false;
let overClinics = new Set(); // clinics over target at the last look, to announce new ones
let timelineOpener = null; // the button that opened the timeline, to return focus to

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */
/* ------------------------------------------------------------------ */

/** Puts a translated message in `el` and shows it; it is re-translated on a language switch. */
function say(el, key, vars = {}) {
  el.dataset.i18n = key;
  el.dataset.i18nVars = JSON.stringify(vars);
  el.textContent = t(key, vars);
  el.hidden = false;
}

/** Empties and hides a message element. */
function hush(el, { hide = true } = {}) {
  delete el.dataset.i18n;
  delete el.dataset.i18nVars;
  el.textContent = '';
  if (hide) el.hidden = true;
}

/** t() with the plural form for `count` (English "1 session"), count formatted. */
function tn(key, count, vars = {}) {
  return t(pluralKey(getLang(), key, count), { ...vars, count: formatNumber(count) });
}

/** document.createElement with attributes/properties and children. */
function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'className') node.className = v;
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) if (c !== null && c !== undefined && c !== false) node.append(c);
  return node;
}

const SVG_NS = 'http://www.w3.org/2000/svg';

/** A decorative icon (the text beside it says the same): 'warning', a triangle with "!"; 'ok', a circle with a tick. */
function icon(kind) {
  const shapes = {
    warning: ['M12 2.5 23 21.5H1z', 'M11 9h2v6h-2zM11 17h2v2h-2z'],
    ok: ['M12 1.5a10.5 10.5 0 1 0 0 21 10.5 10.5 0 0 0 0-21z', 'M10.3 16.6 5.9 12.2l1.5-1.5 2.9 2.9 6.3-6.3 1.5 1.5z'],
  };
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', '0 0 24 24');
  svg.setAttribute('aria-hidden', 'true');
  svg.setAttribute('focusable', 'false');
  svg.setAttribute('class', `admin-icon admin-icon-${kind}`);
  shapes[kind].forEach((d, i) => {
    const p = document.createElementNS(SVG_NS, 'path');
    p.setAttribute('d', d);
    p.setAttribute('class', i === 0 ? 'admin-icon-shape' : 'admin-icon-mark');
    svg.append(p);
  });
  return svg;
}

/**
 * The text of `key` as nodes, with `value` in a <bdi> where the {name} placeholder is, so
 * that a name in the other script keeps its own direction inside the sentence.
 */
function withBdi(key, name, value, vars = {}) {
  const mark = '\u0000';
  const [before, after = ''] = t(key, { ...vars, [name]: mark }).split(mark);
  return [before, el('bdi', { text: value }), after].filter((x) => x !== '');
}

/** A time from the API (ISO text or ms) as a Date, or null. */
function toDate(v) {
  if (v === null || v === undefined || v === '') return null;
  const d = new Date(typeof v === 'string' && /^\d+$/.test(v) ? Number(v) : v);
  return Number.isNaN(d.getTime()) ? null : d;
}

function formatDateTime(date, { seconds = false } = {}) {
  return new Intl.DateTimeFormat(getLang(), {
    dateStyle: 'medium',
    timeStyle: seconds ? 'medium' : 'short',
  }).format(date);
}

function formatClock(date) {
  return new Intl.DateTimeFormat(getLang(), { hour: 'numeric', minute: '2-digit', second: '2-digit' }).format(date);
}

/** A <time> element for an API time (local, in the current language). */
function timeEl(value, opts) {
  const d = toDate(value);
  if (!d) return notRecorded();
  return el('time', { datetime: d.toISOString(), text: formatDateTime(d, opts) });
}

/** "—" for the eye and "not recorded" for the ear. */
function notRecorded() {
  return el(
    'span',
    {},
    el('span', { 'aria-hidden': 'true', text: '—' }),
    el('span', { className: 'visually-hidden', text: t('admin.notRecorded') }),
  );
}

/** Text for a translated code (`admin.<group>.<code>`), falling back to the code itself. */
function label(group, code) {
  const key = `admin.${group}.${code}`;
  return hasString(key) ? t(key) : code; // a code newer than this page: shown as it is
}

function clinicName(id) {
  const c = state.overview?.find((x) => x.id === id);
  if (!c) return id ?? '';
  return (getLang() === 'ar' ? c.name_ar : c.name_en) || c.id;
}

/** The translated actor of an event: "Doctor dr.amal", "Patient مريم", "System". */
function actorText(ev) {
  const role = ev.actor?.role ?? 'system';
  const roleText = label('role', role);
  let who = ev.actor?.id ?? '';
  if (role === 'patient') who = ev.patient?.name ?? ''; // a patient's actor id is the consultation id
  return who ? `${roleText} ${who}` : roleText;
}

/* ------------------------------------------------------------------ */
/* HTTPS API                                                           */
/* ------------------------------------------------------------------ */

class ApiError extends Error {
  constructor(status, code, message) {
    super(message || code || `HTTP ${status}`);
    this.status = status;
    this.code = code;
  }
}

/** GET `path` with the session token; resolves the JSON (or the Response with raw). */
async function api(path, { raw = false } = {}) {
  let res;
  try {
    res = await fetch(path, { headers: { Authorization: `Bearer ${token}` }, cache: 'no-store' });
  } catch {
    throw new ApiError(0, 'network', '');
  }
  if (res.ok) return raw ? res : res.json();
  let body = null;
  try {
    body = await res.json();
  } catch {
    /* a plain-text answer (404 "not found") */
  }
  throw new ApiError(res.status, body?.code ?? '', body?.message ?? '');
}

/** The query string of a filter object; values percent-encoded (a space is %20, not +). */
function query(params) {
  return Object.entries(params)
    .filter(([, v]) => v !== undefined && v !== null && v !== '')
    .map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`)
    .join('&');
}

/**
 * Shows an API failure in `alertEl` (role=alert). 401 ends the session: back to sign-in.
 * Returns true when the page went back to sign-in.
 */
function showApiError(err, alertEl) {
  if (err.status === 401) {
    endSession('admin.signIn.sessionEnded');
    return true;
  }
  const [key, vars] = apiErrorText(err);
  say(alertEl, key, vars);
  return false;
}

function apiErrorText(err) {
  switch (err.status) {
    case 0:
      return ['admin.error.network', {}];
    case 403:
      return ['admin.error.forbidden', {}];
    case 400:
      return ['admin.error.badRequest', { message: err.message }];
    case 413:
      return ['admin.error.tooMany', { message: err.message }];
    case 503:
      return ['admin.error.busy', {}];
    default:
      return ['admin.error.server', { status: err.status }];
  }
}

/* ------------------------------------------------------------------ */
/* Signing in and out                                                  */
/* ------------------------------------------------------------------ */

function showScreen(screen) {
  state.screen = screen;
  $('sign-in-screen').hidden = screen !== 'sign-in';
  $('dashboard-screen').hidden = screen !== 'dashboard';
  $('sign-out').hidden = screen !== 'dashboard';
  $('who').hidden = screen !== 'dashboard';
}

let signingIn = false;

async function onSignInSubmit(e) {
  e.preventDefault();
  if (signingIn) return;
  const username = $('username').value.trim();
  const password = $('password').value;
  hush($('sign-in-alert'));
  if (!username || !password) {
    say($('sign-in-alert'), 'admin.signIn.missing');
    (username ? $('password') : $('username')).focus();
    return;
  }
  signingIn = true;
  say($('sign-in-status'), 'admin.signIn.busy');
  try {
    let res;
    try {
      res = await fetch('/api/login', {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ username, password }),
        cache: 'no-store',
      });
    } catch {
      say($('sign-in-alert'), 'admin.error.network');
      return;
    }
    const body = await res.json().catch(() => null);
    if (res.status === 401) {
      say($('sign-in-alert'), 'admin.signIn.wrong');
      $('password').select();
      $('password').focus();
      return;
    }
    if (res.status === 429) {
      say($('sign-in-alert'), 'admin.signIn.throttled');
      return;
    }
    if (!res.ok || !body?.token) {
      say($('sign-in-alert'), 'admin.error.server', { status: res.status });
      return;
    }
    $('password').value = '';
    if (body.user?.role !== 'admin') {
      // A doctor's account: this page is not theirs. The token is dropped unused (it expires
      // by itself): signing it out would take an `auth` on a new socket, which would close
      // the doctor's own page's connection (4001) in the middle of their work.
      say($('sign-in-alert'), 'admin.signIn.notAdmin');
      return;
    }
    try {
      sessionStorage.setItem(TOKEN_KEY, body.token);
    } catch {
      /* storage disabled: the sign-in lasts as long as the page */
    }
    await startSession(body.token, { fresh: true });
  } finally {
    signingIn = false;
    hush($('sign-in-status'), { hide: false });
  }
}

/**
 * Opens the WebSocket and authenticates with `tok`; on success shows the dashboard.
 * `fresh`: just signed in (otherwise a token kept from earlier in this tab).
 */
async function startSession(tok, { fresh = false } = {}) {
  token = tok;
  const s = new Signal({
    // After a drop the new connection is nobody until it authenticates again.
    onReconnect: async (sig) => {
      try {
        await sig.request('auth', { token });
      } catch (err) {
        if (err.code === 'unauthorized') endSession('admin.signIn.sessionEnded');
        throw err;
      }
    },
  });
  signal = s;
  window.tabibApp.signal = s;
  s.onState((st, info) => onConnState(s, st, info));
  try {
    await s.connect();
    const reply = await s.request('auth', { token: tok });
    state.user = reply.user;
  } catch (err) {
    if (signal !== s) return; // signed out meanwhile
    signal = null;
    window.tabibApp.signal = null;
    s.close();
    if (err.code === 'unauthorized') {
      forgetToken();
      showSignIn('admin.signIn.sessionEnded');
    } else {
      // The server is unreachable: keep the token, a reload may work.
      showSignIn('admin.conn.failed');
    }
    return;
  }
  if (state.user?.role !== 'admin') {
    endSession('admin.signIn.notAdmin');
    return;
  }
  enterDashboard(fresh);
}

function onConnState(s, st, info) {
  if (s !== signal) return; // an old connection we closed ourselves
  const banner = $('conn-banner');
  if (st === 'reconnecting') {
    say(banner, 'admin.conn.reconnecting');
  } else if (st === 'open') {
    hush(banner);
    if (state.screen === 'dashboard') refreshOverview();
  } else if (st === 'closed') {
    const code = info?.code;
    if (code === 4001) endSession('admin.signIn.elsewhere');
    else if (code === 4002) endSession('admin.signIn.sessionEnded');
    else if (code === 4003) endSession('admin.signIn.disabled');
    else if (state.screen === 'dashboard') say(banner, 'admin.conn.closed');
  }
}

function forgetToken() {
  token = null;
  try {
    sessionStorage.removeItem(TOKEN_KEY);
  } catch {
    /* nothing kept */
  }
}

/** The "Sign out" button: ends the session on the server, then locally. */
async function signOut() {
  const s = signal;
  if (s) {
    try {
      await s.request('logout', {}, { timeoutMs: 3000 });
    } catch {
      /* the connection is gone: the token expires on its own */
    }
  }
  endSession('admin.signIn.signedOut', { polite: true });
}

/**
 * Back to the sign-in screen with a message: stops the timers, closes the socket and
 * removes every record the dashboard showed from the page.
 */
function endSession(key, { polite = false } = {}) {
  const s = signal;
  signal = null;
  window.tabibApp.signal = null;
  if (s) s.close();
  forgetToken();
  clearInterval(overviewTimer);
  clearInterval(statsTimer);
  overviewTimer = statsTimer = null;
  Object.assign(state, {
    user: null,
    overview: null,
    overviewAt: null,
    overviewError: null,
    stats: null,
    verify: null,
    lastSearch: [],
    nextCursor: null,
    lastFilters: null,
    timeline: null,
  });
  overClinics = new Set();
  closeTimeline({ restoreFocus: false });
  for (const id of ['results-body', 'clinic-list', 'timeline-heading', 'timeline-meta', 'overview-summary',
    'overview-updated', 'overview-note', 'verify-status', 'verify-head-value', 'verify-time', 'who', 'announcer'])
    hush($(id), { hide: false });
  $('results-region').hidden = true;
  $('results-hint').hidden = true;
  $('load-more').hidden = true;
  $('verify-head').hidden = true;
  $('search-form').reset();
  for (const id of ['dashboard-alert', 'search-alert', 'search-form-alert', 'timeline-alert', 'verify-alert', 'conn-banner'])
    hush($(id));
  hush($('search-status'), { hide: false });
  showSignIn(key, {}, { polite });
}

function showSignIn(key, vars = {}, { polite = false } = {}) {
  showScreen('sign-in');
  hush($('sign-in-alert'));
  hush($('sign-in-status'), { hide: false });
  if (key) say(polite ? $('sign-in-status') : $('sign-in-alert'), key, vars);
  document.title = t('admin.title');
  $('username').focus();
}

/* ------------------------------------------------------------------ */
/* Dashboard                                                           */
/* ------------------------------------------------------------------ */

function enterDashboard(fresh) {
  showScreen('dashboard');
  renderWho();
  fillSelects();
  renderTarget();
  $('overview-summary').textContent = t('admin.overview.loading');
  refreshOverview();
  refreshStats();
  verifyChain();
  overviewTimer = setInterval(() => {
    if (!document.hidden) refreshOverview();
  }, OVERVIEW_INTERVAL_MS);
  statsTimer = setInterval(() => {
    if (!document.hidden) refreshStats();
  }, STATS_INTERVAL_MS);
  runSearch();
  // After signing in, start reading at the top of the dashboard.
  if (fresh) $('dashboard-heading').focus();
}

function renderWho() {
  if (state.user) $('who').textContent = t('admin.signedInAs', { name: state.user.username });
}

function renderTarget() {
  $('overview-target').textContent = t('admin.overview.target', { target: formatDuration(TARGET_WAIT_S) });
}

/* ---------------- Live overview ---------------- */

async function refreshOverview() {
  const s = signal;
  if (!s || overviewBusy || state.screen !== 'dashboard') return;
  overviewBusy = true;
  try {
    const reply = await s.request('overview', {}, { timeoutMs: 8000 });
    if (s !== signal) return;
    const firstTime = !state.overview;
    const clinicsChanged = firstTime || reply.clinics.map((c) => c.id).join() !== state.overview.map((c) => c.id).join();
    state.overview = reply.clinics;
    state.overviewAt = Date.now();
    state.overviewError = null;
    if (clinicsChanged) {
      fillClinicSelect();
      if (state.lastSearch.length) renderResults(); // clinic names in the table
    }
    renderOverview();
  } catch (err) {
    if (s !== signal) return;
    if (err.code === 'unauthorized') return endSession('admin.signIn.sessionEnded');
    // A drop is shown by the banner and fixed by the reconnect; anything else is said here.
    if (err.code !== 'disconnected' && err.code !== 'closed') {
      state.overviewError = err.message || err.code;
      renderOverview();
    }
  } finally {
    overviewBusy = false;
  }
}

async function refreshStats() {
  if (state.screen !== 'dashboard') return;
  // Today, from the admin's local midnight.
  const midnight = new Date();
  midnight.setHours(0, 0, 0, 0);
  try {
    const body = await api(`/api/audit/stats?${query({ from: midnight.toISOString() })}`);
    state.stats = { status: 'ok', clinics: body.clinics ?? [], from: body.from, to: body.to };
  } catch (err) {
    if (err.status === 401) return showApiError(err, $('dashboard-alert'));
    // Until the server has the endpoint (404), or where it cannot say (501): "not available".
    if (err.status === 404 || err.status === 501 || err.status === 405) state.stats = { status: 'unavailable' };
    else {
      const [key, vars] = apiErrorText(err);
      state.stats = { status: 'error', message: t(key, vars) };
    }
  }
  if (state.screen === 'dashboard') renderOverview();
}

/** Today's figures of a clinic from /api/audit/stats, or null. */
function statsOf(id) {
  return state.stats?.status === 'ok' ? (state.stats.clinics.find((x) => x.clinic === id) ?? null) : null;
}

/** Why a clinic is over target (translation keys), empty when within it. */
function overReasons(c) {
  const reasons = [];
  if (c.waiting > 0 && c.longest_wait_s > TARGET_WAIT_S) reasons.push('admin.overview.overLongest');
  const st = statsOf(c.id);
  if (st && typeof st.p90_wait_s === 'number' && st.p90_wait_s > TARGET_WAIT_S) reasons.push('admin.overview.overP90');
  return reasons;
}

function statValue(c, field, fmt) {
  if (state.stats?.status !== 'ok') return t('admin.overview.notAvailable');
  const st = statsOf(c.id);
  const v = st?.[field];
  return typeof v === 'number' ? fmt(v) : t('admin.overview.noData');
}

function renderOverview() {
  if (!state.overview) {
    if (state.overviewError) say($('overview-summary'), 'admin.overview.failed', { message: state.overviewError });
    return;
  }
  const target = formatDuration(TARGET_WAIT_S);
  const list = $('clinic-list');
  const items = [];
  const nowOver = new Set();
  for (const c of state.overview) {
    const reasons = overReasons(c);
    const over = reasons.length > 0;
    if (over) nowOver.add(c.id);
    const name = clinicName(c.id);
    const headingId = `clinic-${c.id}-name`;
    const rows = [
      ['admin.overview.doctors', formatNumber(c.doctors_on_duty)],
      ['admin.overview.waiting', formatNumber(c.waiting)],
      ['admin.overview.longest', c.waiting > 0 ? formatDuration(c.longest_wait_s) : t('admin.overview.noneWaiting')],
      ['admin.overview.inConsultation', formatNumber(c.in_consultation)],
      ['admin.overview.called', formatNumber(c.called)],
      ['admin.overview.median', statValue(c, 'median_wait_s', formatDuration)],
      ['admin.overview.p90', statValue(c, 'p90_wait_s', formatDuration)],
      ['admin.overview.sessionsToday', statValue(c, 'sessions', formatNumber)],
      ['admin.overview.medianDuration', statValue(c, 'median_duration_s', formatDuration)],
    ];
    items.push(
      el(
        'li',
        { className: `card admin-clinic${over ? ' is-over' : ''}`, 'data-clinic': c.id },
        el('h3', { id: headingId, text: name }),
        el(
          'p',
          { className: `admin-badge ${over ? 'is-over' : 'is-ok'}` },
          icon(over ? 'warning' : 'ok'),
          el('span', { text: t(over ? 'admin.overview.overTarget' : 'admin.overview.withinTarget') }),
        ),
        over ? el('ul', { className: 'admin-reasons' }, reasons.map((k) => el('li', { text: t(k, { target }) }))) : null,
        el(
          'dl',
          { className: 'admin-figures' },
          rows.map(([k, v]) =>
            el('div', { className: k === 'admin.overview.longest' || k === 'admin.overview.p90' ? 'is-key' : null },
              el('dt', { text: t(k) }), el('dd', { text: v })),
          ),
        ),
      ),
    );
  }
  list.replaceChildren(...items);

  const summary = $('overview-summary');
  hush(summary, { hide: false });
  summary.classList.toggle('is-over', nowOver.size > 0);
  if (!state.overview.length) summary.textContent = t('admin.overview.none');
  else if (nowOver.size)
    summary.replaceChildren(icon('warning'), el('span', { text: tn('admin.overview.summaryOver', nowOver.size, { total: formatNumber(state.overview.length), target }) }));
  else summary.replaceChildren(icon('ok'), el('span', { text: t('admin.overview.summaryOk', { target }) }));

  // Say it once when a clinic goes over target, not at every refresh.
  const fresh = [...nowOver].filter((id) => !overClinics.has(id));
  if (fresh.length) {
    $('announcer').textContent = fresh.map((id) => t('admin.overview.nowOver', { clinic: clinicName(id), target })).join(' ');
  }
  overClinics = nowOver;

  const note = $('overview-note');
  if (state.overviewError) say(note, 'admin.overview.failed', { message: state.overviewError });
  else if (state.stats?.status === 'unavailable') say(note, 'admin.overview.statsUnavailable');
  else if (state.stats?.status === 'error') say(note, 'admin.overview.statsFailed', { message: state.stats.message });
  else hush(note);

  if (state.overviewAt) $('overview-updated').textContent = t('admin.overview.updated', { time: formatClock(new Date(state.overviewAt)) });
}

/* ---------------- Chain verification ---------------- */

async function verifyChain() {
  if (state.screen !== 'dashboard') return;
  state.verify = { status: 'checking' };
  renderVerify();
  try {
    const body = await api('/api/audit/verify');
    state.verify = body.ok
      ? { status: 'ok', events: body.events, head: body.head ?? '' }
      : { status: 'broken', events: body.events, at: body.broken_at ?? null };
  } catch (err) {
    if (err.status === 401) return showApiError(err, $('dashboard-alert'));
    if (err.status === 404 || err.status === 501 || err.status === 405) state.verify = { status: 'unavailable' };
    else {
      const [key, vars] = apiErrorText(err);
      state.verify = { status: 'error', message: t(key, vars) };
    }
  }
  state.verify.at_ms = Date.now();
  if (state.screen === 'dashboard') renderVerify();
}

function renderVerify() {
  const v = state.verify;
  const status = $('verify-status');
  const alert = $('verify-alert');
  const head = $('verify-head');
  status.classList.remove('is-ok');
  if (!v) return;
  hush(alert);
  head.hidden = true;
  switch (v.status) {
    case 'checking':
      say(status, 'admin.verify.checking');
      break;
    case 'ok': {
      const short = v.head ? `${v.head.slice(0, 8)}…` : '';
      hush(status, { hide: false });
      status.classList.add('is-ok');
      status.replaceChildren(
        icon('ok'),
        el('span', {
          text: v.head
            ? t('admin.verify.ok', { events: formatNumber(v.events), head: short })
            : t('admin.verify.okEmpty', { events: formatNumber(v.events) }),
        }),
      );
      if (v.head) {
        $('verify-head-value').textContent = v.head;
        head.hidden = false;
      }
      break;
    }
    case 'broken': {
      hush(status, { hide: false });
      const at = v.at;
      const when = toDate(at?.time);
      const text = at
        ? t('admin.verify.broken', {
            id: formatNumber(at.id),
            type: at.type ? label('event', at.type) : '?',
            time: when ? formatDateTime(when, { seconds: true }) : String(at.time ?? '?'),
          })
        : t('admin.verify.brokenShort', { events: formatNumber(v.events ?? 0) });
      delete alert.dataset.i18n;
      alert.replaceChildren(icon('warning'), el('span', { text }));
      alert.hidden = false;
      break;
    }
    case 'unavailable':
      say(status, 'admin.verify.unavailable');
      break;
    case 'error':
      say(status, 'admin.verify.failed', { message: v.message });
      break;
  }
  $('verify-time').textContent = v.at_ms ? t('admin.verify.checkedAt', { time: formatClock(new Date(v.at_ms)) }) : '';
}

/* ---------------- Search ---------------- */

function fillSelects() {
  fillClinicSelect();
  const reason = $('f-end-reason');
  const rv = reason.value;
  reason.replaceChildren(
    el('option', { value: '', text: t('admin.search.anyReason') }),
    ...END_REASONS.map((r) => el('option', { value: r, text: label('reason', r) })),
  );
  reason.value = rv;
  const outcome = $('f-outcome');
  const ov = outcome.value;
  outcome.replaceChildren(
    el('option', { value: '', text: t('admin.search.anyOutcome') }),
    ...OUTCOMES.map((o) => el('option', { value: o, text: label('outcome', o) })),
  );
  outcome.value = ov;
  // Suggestions show the code and, beside it, what it means in the current language.
  $('event-types').replaceChildren(...EVENT_TYPES.map((ty) => el('option', { value: ty, label: label('event', ty) })));
}

function fillClinicSelect() {
  const sel = $('f-clinic');
  const v = sel.value;
  const clinics = state.overview ?? [];
  sel.replaceChildren(
    el('option', { value: '', text: t('admin.search.anyClinic') }),
    ...clinics.map((c) => el('option', { value: c.id, text: clinicName(c.id) })),
  );
  // Keep a choice whose clinic is (still) listed.
  sel.value = clinics.some((c) => c.id === v) ? v : '';
}

/** The form's filters for the audit API; throws {key} when they do not make sense. */
function readFilters() {
  const f = {};
  const text = (id) => $(id).value.trim();
  if (text('f-clinic')) f.clinic = text('f-clinic');
  if (text('f-doctor')) f.doctor = text('f-doctor');
  if (text('f-patient')) f.patient = text('f-patient');
  if (text('f-end-reason')) f.end_reason = text('f-end-reason');
  if (text('f-outcome')) f.outcome = text('f-outcome');
  if (text('f-type')) f.type = text('f-type');
  // datetime-local gives local wall time without a zone; Date reads it as local, and the
  // API wants UTC.
  const from = $('f-from').value ? new Date($('f-from').value) : null;
  const to = $('f-to').value ? new Date($('f-to').value) : null;
  if (from && !Number.isNaN(from.getTime())) f.from = from.toISOString();
  if (to && !Number.isNaN(to.getTime())) f.to = to.toISOString();
  if (f.from && f.to && from >= to) {
    const err = new Error('bad range');
    err.key = 'admin.search.badRange';
    err.field = 'f-from';
    throw err;
  }
  return f;
}

/** Reads the form's filters, or shows why they cannot be used (and returns null). */
function formFilters() {
  const alert = $('search-form-alert');
  hush(alert);
  $('f-from').removeAttribute('aria-invalid');
  try {
    return readFilters();
  } catch (err) {
    if (!err.key) throw err;
    say(alert, err.key);
    $(err.field).setAttribute('aria-invalid', 'true');
    $(err.field).focus();
    return null;
  }
}

async function onSearchSubmit(e) {
  e.preventDefault();
  const filters = formFilters();
  if (filters) runSearch(filters);
}

let searchSeq = 0; // the newest search; answers to older ones are dropped
let loadingMore = false;

/**
 * A first page of sessions for `filters` (a new search, which supersedes one under way),
 * or the next page of the last search (`more`).
 */
async function runSearch(filters = {}, { more = false } = {}) {
  if (more && (loadingMore || !state.nextCursor)) return;
  const seq = more ? searchSeq : ++searchSeq;
  if (more) loadingMore = true;
  state.searching = true;
  const alert = $('search-alert');
  hush(alert);
  say($('search-status'), more ? 'admin.search.loadingMore' : 'admin.search.searching');
  const params = { ...(more ? state.lastFilters : filters), limit: PAGE_SIZE };
  if (more) params.cursor = state.nextCursor;
  try {
    const body = await api(`/api/audit/sessions?${query(params)}`);
    if (seq !== searchSeq || state.screen !== 'dashboard') return;
    const got = body.sessions ?? [];
    const firstNew = state.lastSearch.length;
    if (more) state.lastSearch = state.lastSearch.concat(got);
    else {
      state.lastSearch = got;
      state.lastFilters = filters;
      closeTimeline({ restoreFocus: false });
    }
    state.nextCursor = body.next_cursor ?? null;
    renderResults();
    const status = $('search-status');
    hush(status, { hide: false });
    status.textContent = more ? tn('admin.search.loadedMore', got.length) : resultCountText();
    // "Load more" disappears on the last page: keep the keyboard where the new rows are.
    if (more && !state.nextCursor) {
      const btn = $('results-body').rows[firstNew]?.querySelector('button');
      (btn ?? $('results-region')).focus();
    }
  } catch (err) {
    if (seq !== searchSeq) return;
    if (!(err instanceof ApiError)) throw err;
    hush($('search-status'), { hide: false });
    if (!more) {
      // Rows of the previous filters under an error about the new ones would mislead.
      Object.assign(state, { lastSearch: [], nextCursor: null, lastFilters: filters });
      closeTimeline({ restoreFocus: false });
      renderResults();
    }
    showApiError(err, alert);
  } finally {
    if (more) loadingMore = false;
    if (seq === searchSeq) state.searching = false;
  }
}

function resultCountText() {
  const n = state.lastSearch.length;
  if (!n) return t('admin.search.none');
  return tn(state.nextCursor ? 'admin.search.countMore' : 'admin.search.count', n);
}

function renderResults() {
  const body = $('results-body');
  const rows = state.lastSearch.map((s) => {
    const name = s.patient?.name || t('admin.unnamed');
    const open = el(
      'button',
      { type: 'button', className: 'admin-link', 'data-consultation': s.consultation },
      el('span', { dir: 'auto', text: name }),
    );
    open.addEventListener('click', () => openTimeline(s, open));
    return el(
      'tr',
      { 'data-consultation': s.consultation },
      el('th', { scope: 'row' }, open),
      el('td', { text: clinicName(s.clinic) }),
      el('td', { dir: 'auto' }, s.doctor ? s.doctor : notRecorded()),
      el('td', {}, timeEl(s.queued_at)),
      el('td', {}, typeof s.wait_s === 'number' ? formatDuration(s.wait_s) : notRecorded()),
      el('td', {}, typeof s.duration_s === 'number' ? formatDuration(s.duration_s) : notRecorded()),
      el('td', { text: s.end_reason ? label('reason', s.end_reason) : t('admin.stillOpen') }),
    );
  });
  body.replaceChildren(...rows);
  const any = rows.length > 0;
  $('results-region').hidden = !any;
  $('results-hint').hidden = !any;
  $('load-more').hidden = !state.nextCursor;
}

/* ---------------- Session timeline ---------------- */

async function openTimeline(session, opener) {
  timelineOpener = opener;
  state.timeline = { session, events: [], truncated: false, loading: true, error: null };
  const section = $('timeline');
  section.hidden = false;
  hush($('timeline-alert'));
  renderTimeline();
  $('timeline-heading').focus();
  const events = [];
  let cursor = null;
  let truncated = false;
  try {
    do {
      const body = await api(
        `/api/audit/events?${query({ consultation: session.consultation, limit: TIMELINE_PAGE, cursor })}`,
      );
      if (state.timeline?.session !== session) return; // another one was opened meanwhile
      events.push(...(body.events ?? []));
      cursor = body.next_cursor ?? null;
      if (cursor && events.length >= TIMELINE_MAX) {
        truncated = true;
        break;
      }
    } while (cursor);
  } catch (err) {
    if (state.timeline?.session !== session) return;
    state.timeline.loading = false;
    hush($('timeline-status'), { hide: false });
    if (err instanceof ApiError) showApiError(err, $('timeline-alert'));
    else throw err;
    return;
  }
  // The API gives the newest first; a timeline reads oldest first.
  events.sort((a, b) => a.id - b.id);
  Object.assign(state.timeline, { events, truncated, loading: false });
  renderTimeline();
}

function closeTimeline({ restoreFocus = true } = {}) {
  const wasOpen = !$('timeline').hidden;
  state.timeline = null;
  $('timeline').hidden = true;
  $('timeline-list').replaceChildren();
  $('quality-body').replaceChildren();
  if (restoreFocus && wasOpen) {
    // The rows are redrawn on a language switch: find the opener's successor by its id.
    const id = timelineOpener?.dataset.consultation;
    const again = id ? $('results-body').querySelector(`button[data-consultation="${CSS.escape(id)}"]`) : null;
    (timelineOpener?.isConnected ? timelineOpener : again ?? $('results-region')).focus();
  }
  timelineOpener = null;
}

/** A short, translated line of what is particular to an event, or null. */
function eventDetail(ev) {
  const d = ev.detail ?? {};
  switch (ev.type) {
    case 'consultation_ended':
      return d.reason ? t('admin.timeline.reason', { reason: label('reason', d.reason) }) : null;
    case 'consultation_called':
      return typeof d.waited_s === 'number' ? t('admin.timeline.waited', { wait: formatDuration(d.waited_s) }) : null;
    case 'queue_joined': {
      const parts = [];
      if (d.via || d.priority)
        parts.push(
          t('admin.timeline.via', {
            via: d.via ? label('via', d.via) : '?',
            priority: d.priority ? label('priority', d.priority) : '?',
          }),
        );
      if (d.from_consultation) parts.push(t('admin.timeline.transferredFrom', { id: d.from_consultation }));
      return parts.join(' · ') || null;
    }
    case 'media_ended':
      return d.reason ? t('admin.timeline.reason', { reason: d.reason }) : null;
    default:
      return null;
  }
}

function renderTimeline() {
  const tl = state.timeline;
  if (!tl) return;
  const s = tl.session;
  const name = s.patient?.name || t('admin.unnamed');
  const heading = $('timeline-heading');
  // The name keeps its own direction inside the sentence.
  heading.replaceChildren(...withBdi('admin.timeline.heading', 'name', name));
  $('timeline-meta').replaceChildren(
    ...withBdi('admin.timeline.meta', 'id', s.consultation, { clinic: clinicName(s.clinic) }),
    ' · ',
    timeEl(s.queued_at),
  );
  const status = $('timeline-status');
  if (tl.loading) {
    say(status, 'admin.timeline.loading');
    $('timeline-list').replaceChildren();
    $('quality').hidden = true;
    return;
  }
  hush(status, { hide: false });
  status.textContent = tl.events.length ? tn('admin.timeline.count', tl.events.length) : t('admin.timeline.none');
  if (tl.truncated) status.textContent += ` ${t('admin.timeline.truncated', { count: formatNumber(tl.events.length) })}`;

  const items = tl.events.map((ev) => {
    const d = toDate(ev.time);
    const known = hasString(`admin.event.${ev.type}`);
    const typeText = known ? label('event', ev.type) : null;
    const detail = eventDetail(ev);
    return el(
      'li',
      { className: `admin-event outcome-${ev.outcome ?? 'ok'}`, 'data-type': ev.type },
      d ? el('time', { datetime: d.toISOString(), text: formatClock(d) }) : notRecorded(),
      el('span', { className: 'admin-event-type' }, known ? typeText : el('code', { dir: 'ltr', text: ev.type })),
      el('span', { className: 'admin-event-actor' }, ...withBdi('admin.timeline.by', 'actor', actorText(ev))),
      detail ? el('span', { className: 'admin-event-detail', text: detail }) : null,
      ev.outcome && ev.outcome !== 'ok'
        ? el('span', { className: 'admin-event-outcome' }, icon('warning'), el('span', { text: t('admin.timeline.outcome', { outcome: label('outcome', ev.outcome) }) }))
        : null,
    );
  });
  $('timeline-list').replaceChildren(...items);
  renderQuality(tl);
}

/** The media quality summary: the session's `quality`, else the media_summary events. */
function qualityOf(tl) {
  const q = { ...(tl.session.quality ?? {}) };
  for (const ev of tl.events) {
    if (ev.type !== 'media_summary') continue;
    const who = ev.actor?.role === 'doctor' ? 'doctor' : 'patient';
    if (!q[who]) q[who] = ev.detail ?? {};
  }
  return ['patient', 'doctor'].filter((w) => q[w] && typeof q[w] === 'object').map((w) => [w, q[w]]);
}

function renderQuality(tl) {
  const parts = qualityOf(tl);
  const box = $('quality-body');
  $('quality').hidden = false;
  if (!parts.length) {
    box.replaceChildren(el('p', { className: 'muted', text: t('admin.quality.none') }));
    return;
  }
  // A participant whose leg was not measured ({"leg": "none" | "gone", reason}) gets a sentence;
  // the measured ones get the table.
  const measured = parts.filter(([, q]) => !q.leg);
  const notes = parts
    .filter(([, q]) => q.leg)
    .map(([who, q]) => {
      const why = q.reason ?? q.leg;
      return el('p', { className: 'muted', text: t('admin.quality.notMeasured', { who: label('role', who), why: label('leg', why) }) });
    });
  const num = (v) => (typeof v === 'number' ? formatNumber(v, { maximumFractionDigits: 2 }) : '?');
  const ms = (v) =>
    typeof v === 'number' && v >= 0
      ? t('admin.quality.ms', { n: formatNumber(v, { maximumFractionDigits: 1 }) })
      : t('admin.quality.unknown');
  const rows = [
    ['admin.quality.duration', (q) => (typeof q.duration_s === 'number' ? formatDuration(q.duration_s) : t('admin.quality.unknown'))],
    ['admin.quality.audio', (q) => q.audio?.received
      ? t('admin.quality.audioValue', { codec: q.audio.codec ?? '?', packets: num(q.audio.received.packets), lost: num(q.audio.received.lost), jitter: num(q.audio.received.jitter_ms) })
      : t('admin.quality.unknown')],
    ['admin.quality.video', (q) => q.video?.received
      ? t('admin.quality.videoValue', { codec: q.video.codec ?? '?', packets: num(q.video.received.packets), lost: num(q.video.received.lost) })
      : t('admin.quality.unknown')],
    ['admin.quality.sentLoss', (q) => t('admin.quality.sentValue', {
      audio: num(q.audio?.sent?.peer_fraction_lost_pct),
      video: num(q.video?.sent?.peer_fraction_lost_pct),
    })],
    ['admin.quality.rtt', (q) => ms(q.rtt_ms)],
    ['admin.quality.ice', (q) => (q.ice ? [q.ice.protocol, q.ice.type].filter(Boolean).join(' / ') : t('admin.quality.unknown'))],
  ];
  const table = measured.length
    ? el(
        'div',
        { className: 'table-wrap admin-scroll', role: 'region', tabindex: '0', 'aria-label': t('admin.quality.scroll') },
        el(
          'table',
          { className: 'table admin-table admin-quality' },
          el('caption', { text: t('admin.quality.caption') }),
          el('thead', {}, el('tr', {},
            el('th', { scope: 'col', text: t('admin.quality.metric') }),
            measured.map(([who]) => el('th', { scope: 'col', text: label('role', who) })))),
          el('tbody', {}, rows.map(([key, fn]) => el('tr', {},
            el('th', { scope: 'row', text: t(key) }),
            measured.map(([, q]) => el('td', { text: fn(q) }))))),
        ),
      )
    : null;
  box.replaceChildren(...[table, ...notes].filter(Boolean));
}

/* ---------------- Exports ---------------- */

/** The file name of a Content-Disposition header (filename*=UTF-8'' first), or null. */
function fileNameFrom(header) {
  if (!header) return null;
  const star = /filename\*\s*=\s*UTF-8''([^;]+)/i.exec(header);
  if (star) {
    try {
      return decodeURIComponent(star[1].trim());
    } catch {
      /* fall through to the plain name */
    }
  }
  const plain = /filename\s*=\s*"([^"]*)"|filename\s*=\s*([^;]+)/i.exec(header);
  return plain ? (plain[1] ?? plain[2]).trim() : null;
}

let exporting = false;

/**
 * Downloads an export of the form's filters. A link cannot carry the Authorization
 * header, so the file is fetched here and handed to the browser as a Blob.
 */
async function exportAudit(format) {
  if (exporting) return;
  const filters = formFilters();
  if (!filters) return;
  exporting = true;
  const alert = $('search-alert');
  hush(alert);
  say($('search-status'), 'admin.search.exporting');
  // FHIR AuditEvents are events: the events of the matching consultations.
  const of = format === 'fhir' ? 'events' : 'sessions';
  try {
    const res = await api(`/api/audit/export?${query({ format, of, ...filters })}`, { raw: true });
    const blob = await res.blob();
    const name =
      fileNameFrom(res.headers.get('Content-Disposition')) ??
      (format === 'fhir' ? 'tabib-audit-events.fhir.json' : 'tabib-sessions.csv');
    const url = URL.createObjectURL(blob);
    const a = el('a', { href: url, download: name, hidden: true });
    document.body.append(a);
    a.click();
    a.remove();
    // The download has started by then; the object URL is no longer needed.
    setTimeout(() => URL.revokeObjectURL(url), 60000);
    say($('search-status'), 'admin.search.exported', { file: name });
  } catch (err) {
    hush($('search-status'), { hide: false });
    if (err instanceof ApiError) showApiError(err, alert);
    else throw err;
  } finally {
    exporting = false;
  }
}

/* ------------------------------------------------------------------ */
/* Language                                                            */
/* ------------------------------------------------------------------ */

/** Redraws what is built from data (the marked elements are re-translated by i18n.js). */
function redraw() {
  document.title = t('admin.title');
  if (state.screen !== 'dashboard') return;
  renderWho();
  renderTarget();
  fillSelects();
  renderOverview();
  renderVerify();
  if (state.lastSearch.length) {
    renderResults();
    if (!state.searching && !$('search-status').dataset.i18n) $('search-status').textContent = resultCountText();
  }
  renderTimeline();
}

/* ------------------------------------------------------------------ */
/* Start                                                               */
/* ------------------------------------------------------------------ */

function init() {
  applyTranslations(document);
  document.title = t('admin.title');
  mountLangSwitch($('lang-switch'));
  onLangChange(redraw);

  $('sign-in-form').addEventListener('submit', onSignInSubmit);
  $('sign-out').addEventListener('click', signOut);
  $('verify-again').addEventListener('click', verifyChain);
  $('search-form').addEventListener('submit', onSearchSubmit);
  $('clear-button').addEventListener('click', () => {
    $('search-form').reset();
    hush($('search-form-alert'));
    $('f-from').removeAttribute('aria-invalid');
    runSearch({});
    $('f-clinic').focus();
  });
  $('load-more').addEventListener('click', () => runSearch(state.lastFilters, { more: true }));
  $('export-csv').addEventListener('click', () => exportAudit('csv'));
  $('export-fhir').addEventListener('click', () => exportAudit('fhir'));
  $('timeline-close').addEventListener('click', () => closeTimeline());
  $('timeline').addEventListener('keydown', (e) => {
    if (e.key === 'Escape') closeTimeline();
  });
  document.addEventListener('visibilitychange', () => {
    if (!document.hidden && state.screen === 'dashboard') refreshOverview();
  });

  let kept = null;
  try {
    kept = sessionStorage.getItem(TOKEN_KEY);
  } catch {
    /* storage disabled */
  }
  if (kept) {
    showScreen('sign-in');
    say($('sign-in-status'), 'admin.signIn.busy');
    startSession(kept).finally(() => {
      if (state.screen === 'sign-in' && $('sign-in-status').dataset.i18n === 'admin.signIn.busy') hush($('sign-in-status'), { hide: false });
    });
  } else {
    showSignIn(null);
  }
}

init();
