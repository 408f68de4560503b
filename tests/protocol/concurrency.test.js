// concurrency.test.js - 500 patients in 5 clinics joining, leaving, dropping
// and resuming at random while 10 doctors loop call_next -> (accept) -> end,
// against the real server. Bounded: the churn lasts CHURN_MS, the whole test
// well under 90 s.
//
// Checked:
//   - no consultation is ever called twice (all doctors' `called` replies);
//   - none is lost: every consultation that joined ends exactly once, with a
//     valid reason (audit log after SIGTERM; and the `ended` events seen by
//     clients agree with it);
//   - every `queue` snapshot a doctor receives is a proper queue (no
//     duplicates, arrival order, nothing already called by that doctor);
//   - at a quiet point after the churn, the last position each waiting
//     patient was told forms exactly 1..n in each clinic, and matches a fresh
//     queue snapshot.
// The random choices come from a seeded generator: TABIB_PROTO_SEED=N repeats a run.

import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import { startServer, assertCleanExit } from './lib/server.js';
import { connect, connectAs } from './lib/client.js';

const PATIENTS = 500;
const CLINICS = ['c1', 'c2', 'c3', 'c4', 'c5'];
const DOCTORS = 10; // two per clinic
const GRACE_S = 2;
const JOIN_SPREAD_MS = 6000; // patients arrive over this long
const CHURN_MS = 10000; // then doctors stop calling and patients stop acting
const VALID_REASONS = new Set([
  'completed',
  'patient_left',
  'doctor_ended',
  'abandoned',
  'transferred',
  'connection_lost',
  'server_shutdown',
]);

const SEED = Number(process.env.TABIB_PROTO_SEED ?? Date.now() % 2 ** 31);

// mulberry32: small, fast, good enough for test choices.
function makeRng(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}
const rnd = makeRng(SEED);
const between = (lo, hi) => lo + rnd() * (hi - lo);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const violations = []; // invariant breaks seen during the run
const unexpected = []; // error replies no race explains
const calledBy = new Map(); // consultation -> doctor who got `called` for it
const seenInSnapshots = new Map(); // consultation -> clinic, from doctors' queue events

let srv;
let t0;
const elapsed = () => Date.now() - t0;

after(async () => {
  if (srv && !srv.exited) await srv.stop();
  else if (srv) srv.cleanup();
});

const NO_BUFFER = { has: () => true }; // events go to listeners only

class Patient {
  constructor(n) {
    this.n = n;
    this.clinic = CLINICS[Math.floor(rnd() * CLINICS.length)];
    this.name = `مريض ${n}`;
    this.startAt = between(0, JOIN_SPREAD_MS);
    const r = rnd();
    this.plan = r < 0.15 ? 'leave' : r < 0.45 ? 'drop' : 'stay';
    this.actAt = this.startAt + between(300, 4000);
    this.resumeAfter = rnd() < 0.6 ? between(100, 900) : null; // null: never comes back
    this.dropAgain = rnd() < 0.25;
    this.status = 'new'; // waiting | called | in_consultation | done | away | gone
    this.connected = false;
    this.endedReason = null; // from an `ended` event
    this.lastPosition = null;
    this.conn = null;
    this.accepting = false;
  }

  attach(conn) {
    this.conn = conn;
    this.connected = true;
    conn.unbuffered = NO_BUFFER;
    conn.onEvent((ev) => {
      if (conn !== this.conn) return; // a socket we already gave up
      if (ev.consultation !== undefined && ev.consultation !== this.id) {
        violations.push(`patient ${this.n} got ${ev.type} for ${ev.consultation}, not its own ${this.id}`);
        return;
      }
      if (ev.type === 'position') {
        if (!(ev.position >= 1)) violations.push(`patient ${this.n}: position ${ev.position}`);
        if (this.status !== 'waiting') violations.push(`patient ${this.n}: position event while ${this.status}`);
        this.lastPosition = ev.position;
      } else if (ev.type === 'called') {
        this.status = 'called';
        this.lastPosition = null;
        this.accept();
      } else if (ev.type === 'ended') {
        if (this.endedReason) violations.push(`patient ${this.n}: ended twice`);
        this.endedReason = ev.reason;
        this.status = 'done';
      }
    });
  }

  async run(stopAt) {
    await sleep(this.startAt);
    const conn = await connect(srv.port, { label: `p${this.n}` });
    this.attach(conn);
    const r = await conn.request('join', { clinic: this.clinic, name: this.name });
    if (r.type !== 'joined') {
      unexpected.push(`patient ${this.n} join: ${JSON.stringify(r)}`);
      this.status = 'gone';
      return;
    }
    this.id = r.consultation;
    this.token = r.resume_token;
    this.status = 'waiting';
    if (!(r.position >= 1)) violations.push(`patient ${this.n}: joined at position ${r.position}`);
    this.lastPosition = r.position;

    await sleep(Math.max(0, this.actAt - this.startAt));
    if (elapsed() >= stopAt || this.status === 'done') return;
    if (this.plan === 'leave') await this.leave();
    else if (this.plan === 'drop') {
      await this.drop();
      if (this.dropAgain && this.status !== 'done' && this.status !== 'gone' && elapsed() < stopAt) {
        await sleep(between(200, 1500));
        if (elapsed() < stopAt && this.connected) await this.drop();
      }
    }
  }

  async accept() {
    if (this.accepting || !this.connected) return;
    this.accepting = true;
    const conn = this.conn;
    await sleep(between(0, 60));
    try {
      if (conn !== this.conn || !conn.isOpen) return;
      const r = await conn.request('accept');
      if (r.type === 'consultation_started') {
        if (this.status === 'called') this.status = 'in_consultation';
      } else if (r.code !== 'unauthorized') {
        // unauthorized: the doctor ended it first (the connection holds no consultation any more)
        unexpected.push(`patient ${this.n} accept: ${JSON.stringify(r)}`);
      }
    } catch {
      /* the socket was dropped meanwhile */
    } finally {
      this.accepting = false;
    }
  }

  async leave() {
    try {
      const r = await this.conn.request('leave');
      if (r.type === 'left') {
        if (r.consultation !== this.id) violations.push(`patient ${this.n}: left ${r.consultation}`);
        this.status = 'done';
      } else if (r.code !== 'unauthorized') {
        unexpected.push(`patient ${this.n} leave: ${JSON.stringify(r)}`);
      }
    } catch {
      /* dropped */
    }
  }

  async drop() {
    const conn = this.conn;
    this.connected = false;
    this.conn = null;
    conn.ws.terminate();
    if (this.resumeAfter === null) {
      this.status = this.status === 'done' ? 'done' : 'gone'; // the server ends it after the grace period
      return;
    }
    this.status = this.status === 'done' ? 'done' : 'away';
    await sleep(this.resumeAfter);
    if (this.status === 'done') return;
    const c2 = await connect(srv.port, { label: `p${this.n}r` });
    this.attach(c2);
    const r = await c2.request('resume', { resume_token: this.token });
    if (r.type === 'resumed') {
      if (r.consultation !== this.id) violations.push(`patient ${this.n}: resumed ${r.consultation}`);
      this.status = r.state;
      this.lastPosition = r.state === 'waiting' ? r.position : null;
      if (r.state === 'waiting' && !(r.position >= 1)) violations.push(`patient ${this.n}: resumed at ${r.position}`);
      if (r.state === 'called') this.accept();
    } else if (r.code === 'not_found') {
      this.status = 'done'; // ended while away (a doctor ended the call, say)
    } else {
      unexpected.push(`patient ${this.n} resume: ${JSON.stringify(r)}`);
    }
  }
}

class Doctor {
  constructor(n) {
    this.username = `dr.${n}`;
    this.clinic = CLINICS[(n - 1) % CLINICS.length];
    this.started = new Set();
    this.ended = new Map();
    this.waiters = new Map(); // consultation -> resolve
    this.mine = new Set(); // consultations this doctor called (must not reappear in its snapshots)
    this.snapshots = 0;
    this.cycles = { completed: 0, doctor_ended: 0, gone: 0 };
  }

  async start() {
    const token = await srv.login(this.username);
    this.conn = await connectAs(srv.port, token, this.username);
    this.conn.unbuffered = NO_BUFFER;
    this.conn.onEvent((ev) => this.onEvent(ev));
    const r = await this.conn.request('duty', { clinic: this.clinic, on: true });
    assert.equal(r.type, 'duty');
  }

  onEvent(ev) {
    if (ev.type === 'queue') this.checkSnapshot(ev);
    else if (ev.type === 'consultation_started') this.started.add(ev.consultation);
    else if (ev.type === 'ended') {
      if (!VALID_REASONS.has(ev.reason)) violations.push(`${this.username}: ended reason ${ev.reason}`);
      this.ended.set(ev.consultation, ev.reason);
    }
    const w = this.waiters.get(ev.consultation);
    if (w && (ev.type === 'consultation_started' || ev.type === 'ended')) w();
  }

  checkSnapshot(q) {
    this.snapshots++;
    if (q.clinic !== this.clinic) violations.push(`${this.username}: queue of ${q.clinic}`);
    const ids = q.patients.map((p) => p.consultation);
    if (new Set(ids).size !== ids.length) violations.push(`${this.username}: duplicate in queue ${ids}`);
    for (let i = 0; i < q.patients.length; i++) {
      const p = q.patients[i];
      seenInSnapshots.set(p.consultation, q.clinic);
      if (p.priority !== 'routine') violations.push(`${this.username}: priority ${p.priority}`);
      if (i > 0 && p.waited_s > q.patients[i - 1].waited_s)
        violations.push(`${this.username}: queue not in arrival order at ${i}: ${q.patients[i - 1].waited_s} < ${p.waited_s}`);
      if (this.mine.has(p.consultation))
        violations.push(`${this.username}: ${p.consultation}, which it called, is back in its queue`);
      if (this.ended.has(p.consultation))
        violations.push(`${this.username}: ${p.consultation}, which it saw end, is back in its queue`);
    }
  }

  /** Waits until `id` started or ended, or `ms` pass. */
  waitFor(id, ms) {
    if (this.started.has(id) || this.ended.has(id)) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.waiters.delete(id);
        resolve();
      }, ms);
      this.waiters.set(id, () => {
        clearTimeout(timer);
        this.waiters.delete(id);
        resolve();
      });
    });
  }

  async loop(stopAt) {
    while (elapsed() < stopAt) {
      const r = await this.conn.request('call_next', { clinic: this.clinic });
      if (r.type === 'error') {
        if (r.code !== 'not_found') unexpected.push(`${this.username} call_next: ${JSON.stringify(r)}`);
        await sleep(between(20, 60));
        continue;
      }
      const id = r.consultation;
      if (calledBy.has(id)) violations.push(`${id} called twice: by ${calledBy.get(id)} and ${this.username}`);
      calledBy.set(id, this.username);
      this.mine.add(id);
      await this.waitFor(id, r.patient.connected ? 1000 : 700);
      if (this.ended.has(id)) {
        this.cycles.gone++;
        continue; // the patient left, or was lost
      }
      if (this.started.has(id)) await sleep(between(200, 600)); // the consultation itself
      const e = await this.conn.request('end', { consultation: id });
      if (e.type === 'ending') {
        const want = this.started.has(id) ? 'completed' : 'doctor_ended';
        // accept may arrive between our check and the end: completed is right then too
        if (e.reason !== want && !(want === 'doctor_ended' && e.reason === 'completed'))
          violations.push(`${this.username}: end of ${id} gave ${e.reason}, expected ${want}`);
        this.cycles[e.reason]++;
      } else if (e.code === 'not_found') {
        this.cycles.gone++; // ended concurrently (patient left)
      } else {
        unexpected.push(`${this.username} end: ${JSON.stringify(e)}`);
      }
    }
  }
}

function metric(text, name) {
  const m = new RegExp(`^${name} (\\d+)`, 'm').exec(text);
  return m ? Number(m[1]) : NaN;
}

test(`${PATIENTS} patients and ${DOCTORS} doctors churning (seed ${SEED})`, { timeout: 120000 }, async () => {
  const started = Date.now();
  const accounts = [];
  for (let n = 1; n <= DOCTORS; n++)
    accounts.push({ username: `dr.${n}`, role: 'doctor', clinics: [CLINICS[(n - 1) % CLINICS.length]] });
  srv = await startServer({
    clinics: CLINICS.map((id, i) => ({ id, name_en: `Clinic ${i + 1}`, name_ar: `عيادة ${i + 1}`, queue_limit: 1000 })),
    accounts,
    flags: [
      '--grace-period-s', String(GRACE_S),
      '--max-connections-per-address', '2000',
      '--message-rate', '1000',
      '--message-burst', '5000',
    ],
  });
  const doctors = [];
  for (let n = 1; n <= DOCTORS; n++) doctors.push(new Doctor(n));
  await Promise.all(doctors.map((d) => d.start()));
  const patients = [];
  for (let n = 0; n < PATIENTS; n++) patients.push(new Patient(n));

  // --- the churn ---
  t0 = Date.now();
  const patientRuns = patients.map((p) =>
    p.run(CHURN_MS).catch((err) => unexpected.push(`patient ${p.n}: ${err.message}`)),
  );
  const doctorRuns = doctors.map((d) => d.loop(CHURN_MS).catch((err) => unexpected.push(`${d.username}: ${err.message}`)));
  await Promise.all(doctorRuns);
  await Promise.all(patientRuns);
  const churnMs = elapsed();

  // --- the quiet point: nobody acts; dropped patients who did not come back expire ---
  await sleep(GRACE_S * 1000 + 1500);
  for (const p of patients) if (p.status === 'gone') p.status = 'done';
  assert.deepEqual(unexpected, [], 'error replies that no race explains');
  assert.deepEqual(violations, [], 'invariants broken during the churn');

  const stillWaiting = patients.filter((p) => p.status === 'waiting');
  const odd = patients.filter((p) => !['waiting', 'done'].includes(p.status));
  assert.deepEqual(
    odd.map((p) => `${p.n}:${p.status}`),
    [],
    'after the churn every patient waits or is done (no call or consultation is left running)',
  );
  assert.ok(stillWaiting.length >= 10, `a quiet point with patients still waiting (got ${stillWaiting.length})`);
  for (const clinic of CLINICS) {
    const here = stillWaiting.filter((p) => p.clinic === clinic);
    const positions = here.map((p) => p.lastPosition).sort((a, b) => a - b);
    assert.deepEqual(
      positions,
      here.map((_, i) => i + 1),
      `clinic ${clinic}: the last positions told to its ${here.length} waiting patients are 1..n`,
    );
    // And they match what a doctor of the clinic sees now.
    const doc = doctors.find((d) => d.clinic === clinic);
    const q = await doc.conn.request('queue', { clinic });
    assert.equal(q.type, 'queue');
    const byId = new Map(here.map((p) => [p.id, p]));
    assert.equal(q.patients.length, here.length, `clinic ${clinic}: queue length`);
    q.patients.forEach((entry, i) => {
      const p = byId.get(entry.consultation);
      assert.ok(p, `clinic ${clinic}: ${entry.consultation} in the queue is a waiting patient`);
      assert.equal(p.lastPosition, i + 1, `clinic ${clinic}: patient ${p.n} was told ${p.lastPosition}, is ${i + 1}`);
      assert.equal(entry.connected, true);
    });
  }
  const metrics = (await srv.get('/metrics')).text;
  assert.equal(metric(metrics, 'tabib_queue_patients_waiting'), stillWaiting.length);
  assert.equal(metric(metrics, 'tabib_consultations_called'), 0);
  assert.equal(metric(metrics, 'tabib_consultations_in_progress'), 0);
  assert.equal(metric(metrics, 'tabib_websocket_rate_limited_total'), 0);
  assert.equal(metric(metrics, 'tabib_websocket_closed_for_abuse_total'), 0);
  assert.equal(metric(metrics, 'tabib_audit_events_dropped_total'), 0);

  // --- shutdown: everyone still waiting hears server_shutdown ---
  const waitingConns = stillWaiting.map((p) => p.conn);
  const stop = await srv.stop({ keepDir: true });
  assertCleanExit(stop);
  await Promise.all(waitingConns.map((c) => Promise.race([c.closed, sleep(5000)])));
  const notTold = stillWaiting.filter((p) => p.endedReason !== 'server_shutdown');
  assert.deepEqual(
    notTold.map((p) => `${p.n}:${p.endedReason}`),
    [],
    'every waiting patient got `ended` with server_shutdown',
  );
  const closeCodes = {};
  for (const c of waitingConns) closeCodes[c.closeInfo?.code] = (closeCodes[c.closeInfo?.code] ?? 0) + 1;
  for (const d of doctors) await Promise.race([d.conn.closed, sleep(5000)]);

  // --- the audit log: every consultation that joined ended exactly once, with a valid reason ---
  const rows = await srv.audit(`type in ('queue_joined','consultation_ended','consultation_called')`, {
    done: (r) => r.length > 0,
  });
  srv.cleanup();
  const joined = new Map();
  const ends = new Map();
  const calls = new Map();
  for (const r of rows) {
    if (r.type === 'queue_joined') joined.set(r.consultation, r.clinic);
    else if (r.type === 'consultation_ended') {
      if (!ends.has(r.consultation)) ends.set(r.consultation, []);
      ends.get(r.consultation).push(r.details.reason);
    } else calls.set(r.consultation, (calls.get(r.consultation) ?? 0) + 1);
  }
  const ours = patients.filter((p) => p.id);
  assert.equal(ours.length, PATIENTS, 'every patient joined');
  assert.equal(joined.size, PATIENTS, 'one queue_joined per patient');
  for (const p of ours) assert.equal(joined.get(p.id), p.clinic, `patient ${p.n} joined ${p.clinic}`);
  const problems = [];
  for (const [id] of joined) {
    const e = ends.get(id) ?? [];
    if (e.length !== 1) problems.push(`${id}: ${e.length} consultation_ended`);
    else if (!VALID_REASONS.has(e[0])) problems.push(`${id}: reason ${e[0]}`);
  }
  for (const id of ends.keys()) if (!joined.has(id)) problems.push(`${id}: ended but never joined`);
  assert.deepEqual(problems, [], 'every consultation ends exactly once');
  // What clients were told agrees with the log.
  for (const p of ours) {
    if (p.endedReason) assert.equal(p.endedReason, ends.get(p.id)[0], `patient ${p.n}'s ended event`);
  }
  for (const d of doctors)
    for (const [id, reason] of d.ended) assert.equal(reason, ends.get(id)?.[0], `${d.username}'s ended event for ${id}`);
  // Each consultation a doctor got `called` for was called exactly once in the log too.
  for (const [id, n] of calls) assert.equal(n, 1, `${id} called ${n} times in the audit log`);
  assert.equal(calls.size, calledBy.size, 'the log and the doctors agree on how many calls there were');
  for (const [id, clinic] of seenInSnapshots) assert.equal(joined.get(id), clinic, `${id} seen in ${clinic}'s queue`);

  const reasons = {};
  for (const [, e] of ends) reasons[e[0]] = (reasons[e[0]] ?? 0) + 1;
  const cycles = doctors.reduce(
    (acc, d) => {
      for (const k of Object.keys(acc)) acc[k] += d.cycles[k];
      return acc;
    },
    { completed: 0, doctor_ended: 0, gone: 0 },
  );
  const summary = {
    seed: SEED,
    churn_ms: churnMs,
    total_ms: Date.now() - started,
    calls: calledBy.size,
    doctor_cycles: cycles,
    snapshots_checked: doctors.reduce((s, d) => s + d.snapshots, 0),
    waiting_at_quiet_point: stillWaiting.length,
    end_reasons: reasons,
    close_codes_at_shutdown: closeCodes,
    plans: ours.reduce((acc, p) => ((acc[p.plan] = (acc[p.plan] ?? 0) + 1), acc), {}),
  };
  process.stdout.write(`# concurrency summary ${JSON.stringify(summary)}\n`);
  // The run exercised what it is meant to exercise.
  assert.ok(reasons.completed > 20, 'consultations completed');
  assert.ok(reasons.patient_left > 10, 'patients left');
  assert.ok((reasons.abandoned ?? 0) + (reasons.connection_lost ?? 0) > 5, 'dropped patients expired');
  assert.ok(reasons.server_shutdown >= 10, 'waiting patients ended by the shutdown');
  assert.ok(Date.now() - started < 90000, 'the whole test stays under 90 s');
});
