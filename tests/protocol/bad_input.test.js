// bad_input.test.js - malformed and hostile messages against the real
// server, each with the error it must get (docs/protocol.md, "Errors" and
// "Closing"), then proof that the server still serves a fresh connection.
//
// This file's server runs with a low message rate (2 a second, bursts of 6)
// so that a flood is cheap to provoke; every case uses its own connection.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

import { startServer, assertCleanExit, PASSWORD, httpsRequest } from './lib/server.js';
import { connect, connectAs } from './lib/client.js';

const RATE = 2;
const BURST = 6;

// A day the "closed" clinic is open that is neither today, yesterday nor tomorrow here
// (the server runs in our time zone), so the clinic is closed whenever the test runs.
const DAYS = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
const OPEN_DAY = DAYS[(new Date().getDay() + 3) % 7];

let srv;
let tokens = {};
const opened = new Set();

before(async () => {
  srv = await startServer({
    clinics: [
      { id: 'alpha', name_en: 'Alpha', name_ar: 'ألف' },
      { id: 'tiny', name_en: 'Tiny', name_ar: 'صغيرة', queue_limit: 1 },
      { id: 'closed', name_en: 'Closed', name_ar: 'مغلقة', hours: `${OPEN_DAY} 00:00-24:00` },
    ],
    accounts: [
      { username: 'dr.a', role: 'doctor', clinics: ['alpha', 'tiny'] },
      { username: 'dr.exp', role: 'doctor', clinics: ['alpha'] },
      { username: 'dr.gone', role: 'doctor', clinics: ['alpha'] },
      { username: 'dr.newpw', role: 'doctor', clinics: ['alpha'] },
      { username: 'dr.out', role: 'doctor', clinics: ['alpha'] },
    ],
    flags: ['--message-rate', String(RATE), '--message-burst', String(BURST)],
  });
  tokens['dr.a'] = await srv.login('dr.a');
});

after(async () => {
  for (const c of opened) if (c.isOpen) await c.close();
  if (srv && !srv.exited) assertCleanExit(await srv.stop());
});

async function anon(label) {
  const c = await connect(srv.port, { label });
  c.unbuffered = new Set(['queue', 'position']);
  opened.add(c);
  return c;
}

async function patient(label, clinic = 'alpha') {
  const c = await anon(label);
  const r = await c.request('join', { clinic, name: label });
  assert.equal(r.type, 'joined', JSON.stringify(r));
  c.consultation = r.consultation;
  c.resumeToken = r.resume_token;
  return c;
}

/** dr.a on a new connection, on duty for alpha (2 of the 6 messages of a burst). */
async function doctor(label = 'dr') {
  const c = await connectAs(srv.port, tokens['dr.a'], label);
  c.unbuffered = new Set(['queue']);
  opened.add(c);
  assert.equal((await c.request('duty', { clinic: 'alpha', on: true })).type, 'duty');
  return c;
}

function sha256hex(text) {
  return createHash('sha256').update(text).digest('hex');
}

function checkError(reply, code, message) {
  assert.equal(reply.type, 'error', `expected ${code}, got ${JSON.stringify(reply)}`);
  assert.equal(reply.code, code, JSON.stringify(reply));
  assert.equal(typeof reply.message, 'string');
  if (message) assert.match(reply.message, message);
}

// ---------------------------------------------------------------------------
// Raw frames: each sent as it is on a fresh connection; the reply has no usable id
// (re null) unless the frame had one.
// ---------------------------------------------------------------------------

// prettier-ignore
const RAW = [
  { name: 'truncated JSON', data: '{"id":1,"type":"join"', code: 'bad_json', message: /^invalid JSON at line 1, column 21: / },
  { name: 'trailing comma', data: '{"id":1,"type":"ping",}', code: 'bad_json', message: /line 1, column 23/ },
  { name: 'error on the 4th line', data: '{\n  "id": 1,\n  "type": "ping"\n  oops\n}', code: 'bad_json', message: /line 4, column 6: .*'oops'/ },
  { name: 'empty message', data: '', code: 'bad_json', message: /line 1, column 0/ },
  { name: 'only spaces', data: '   ', code: 'bad_json', message: /line 1/ },
  { name: 'a JSON string, not an object', data: '"ping"', code: 'bad_json', message: /line 1, column 6/ },
  { name: 'garbage after the object', data: '{"id":1,"type":"ping"} trailing', code: 'bad_json', message: /end of file expected/ },
  { name: 'duplicate key', data: '{"id":1,"id":2,"type":"ping"}', code: 'bad_json', message: /duplicate object key/ },
  { name: 'lone UTF-16 surrogate escape', data: '{"id":1,"type":"ping","s":"\\ud800"}', code: 'bad_json', message: /invalid Unicode/ },
  { name: 'integer id beyond 64 bits', data: '{"id":99999999999999999999,"type":"ping"}', code: 'bad_json', message: /too big integer/ },
  { name: 'nesting 20000 deep', data: `{"id":1,"type":"ping","x":${'['.repeat(20000)}${']'.repeat(20000)}}`, code: 'bad_json', message: /maximum parsing depth/ },
  { name: 'an array', data: '[{"id":1,"type":"ping"}]', code: 'bad_request', message: /must be a JSON object/ },
  { name: 'no id', data: '{"type":"ping"}', code: 'bad_request', message: /"id"/ },
  { name: 'id is an object', data: '{"id":{},"type":"ping"}', code: 'bad_request', message: /"id"/ },
  { name: 'id is a fraction', data: '{"id":1.5,"type":"ping"}', code: 'bad_request', message: /"id"/ },
  { name: 'id is a boolean', data: '{"id":true,"type":"ping"}', code: 'bad_request', message: /"id"/ },
  { name: 'id of 65 bytes', data: `{"id":"${'i'.repeat(65)}","type":"ping"}`, code: 'bad_request', message: /"id" is longer than 64 bytes/ },
  { name: 'no type', data: '{"id":"t1"}', code: 'bad_request', message: /"type"/, re: 't1' },
  { name: 'type is a number', data: '{"id":"t2","type":7}', code: 'bad_request', message: /"type"/, re: 't2' },
  // jansson refuses \u0000 unless asked (JSON_ALLOW_NUL), so NULs never reach the field checks.
  { name: 'NUL inside type', data: '{"id":"t3","type":"pi\\u0000ng"}', code: 'bad_json', message: /\\u0000 is not allowed/ },
  { name: 'NUL inside a name', data: '{"id":"t3b","type":"join","clinic":"alpha","name":"a\\u0000b"}', code: 'bad_json', message: /\\u0000 is not allowed/ },
  { name: 'unknown type', data: '{"id":"t4","type":"fly"}', code: 'unknown_type', message: /"fly"/, re: 't4' },
  { name: 'unknown type in Arabic', data: '{"id":"t5","type":"انضم"}', code: 'unknown_type', message: /"انضم"/, re: 't5' },
  { name: 'unknown type of 5000 bytes (message stays short)', data: `{"id":"t6","type":"${'z'.repeat(5000)}"}`, code: 'unknown_type', message: /^unknown message type "z{64}"$/, re: 't6' },
];

test('raw frames that are not requests', async (t) => {
  for (const [i, c] of RAW.entries()) {
    await t.test(c.name, async () => {
      const conn = await anon(`raw${i}`);
      await conn.sendRaw(c.data);
      const reply = await conn.nextReply();
      checkError(reply, c.code, c.message);
      assert.equal(reply.re, c.re ?? null, 're echoes the id only when the id was usable');
      // The connection stays open and usable after an error.
      assert.equal((await conn.request('ping')).type, 'pong');
      await conn.close();
    });
  }
});

test('a binary frame gets bad_request (and the connection stays open)', async () => {
  const c = await anon('binary');
  await c.sendRaw(Buffer.from('{"id":"b1","type":"ping"}'), { binary: true });
  const err = await c.nextReply(); // re null: the frame was not read as a request
  checkError(err, 'bad_request', /binary frames/);
  assert.equal(err.re, null);
  assert.equal((await c.request('ping')).type, 'pong');
  await c.close();
});

// ---------------------------------------------------------------------------
// Well-formed requests with bad fields, wrong roles, forged ids and tokens.
// Each `run` gets fresh connections and returns the reply to check.
// ---------------------------------------------------------------------------

const CASES = [
  // join: the name
  ['join without a name', 'bad_request', /"name" is missing/, async () => (await anon('j1')).request('join', { clinic: 'alpha' })],
  ['join with a numeric name', 'bad_request', /"name" must be a string/, async () => (await anon('j2')).request('join', { clinic: 'alpha', name: 42 })],
  ['join with a 60 KiB name', 'bad_request', /"name" must be 1 to 200 bytes long/, async () => (await anon('j3')).request('join', { clinic: 'alpha', name: 'ن'.repeat(30 * 1024) })],
  ['join with a 201-byte name', 'bad_request', /"name" must be 1 to 200 bytes/, async () => (await anon('j4')).request('join', { clinic: 'alpha', name: 'a'.repeat(201) })],
  ['join with an empty name', 'bad_request', /"name" must be 1 to 200/, async () => (await anon('j5')).request('join', { clinic: 'alpha', name: '' })],
  ['join with a control character in the name', 'bad_request', /control characters/, async () => (await anon('j6')).request('join', { clinic: 'alpha', name: 'a\u0007b' })],
  ['join with a name of spaces', 'bad_request', /visible character/, async () => (await anon('j7')).request('join', { clinic: 'alpha', name: '    ' })],
  // join: the clinic and the appointment
  ['join with a numeric clinic', 'bad_request', /"clinic" must be a string/, async () => (await anon('j9')).request('join', { clinic: 7, name: 'x' })],
  ['join an unknown clinic', 'not_found', /no clinic "nowhere"/, async () => (await anon('j10')).request('join', { clinic: 'nowhere', name: 'x' })],
  ['join with a 300-byte clinic id', 'bad_request', /"clinic" must be 1 to 63 bytes/, async () => (await anon('j11')).request('join', { clinic: 'c'.repeat(300), name: 'x' })],
  ['join with neither clinic nor appointment', 'bad_request', /"clinic" or "appointment"/, async () => (await anon('j12')).request('join', { name: 'x' })],
  ['join asking for priority', 'forbidden', /priority/, async () => (await anon('j13')).request('join', { clinic: 'alpha', name: 'x', priority: 'urgent' })],
  ['join with a forged appointment token', 'not_found', /appointment/, async () => (await anon('j14')).request('join', { appointment: 'A'.repeat(43), name: 'x' })],
  ['join with an expired appointment token', 'not_found', /expired/, async () => {
    const appt = await srv.appointment(tokens['dr.a'], { clinic: 'alpha' });
    assert.equal(appt.status, 201);
    await srv.accountsSql(`update appointments set expires_ms = 1 where token_hash = X'${sha256hex(appt.json.token)}'`);
    return (await anon('j15')).request('join', { appointment: appt.json.token, name: 'x' });
  }],
  ['join with a used appointment token', 'not_found', /used/, async () => {
    const appt = await srv.appointment(tokens['dr.a'], { clinic: 'alpha' });
    const first = await anon('j16a');
    assert.equal((await first.request('join', { appointment: appt.json.token, name: 'First' })).type, 'joined');
    const r = await (await anon('j16b')).request('join', { appointment: appt.json.token, name: 'Second' });
    await first.request('leave');
    return r;
  }],
  ['join a full queue (queue_limit 1)', 'queue_full', /"tiny" has 1 patients waiting/, async () => {
    const first = await patient('full1', 'tiny');
    const r = await (await anon('full2')).request('join', { clinic: 'tiny', name: 'Second' });
    await first.request('leave');
    return r;
  }],
  ['join a clinic outside its hours', 'clinic_closed', /"closed" is closed now/, async () => (await anon('j18')).request('join', { clinic: 'closed', name: 'x' })],
  ['join twice on one connection', 'conflict', /already a patient/, async () => {
    const p = await patient('twice');
    const r = await p.request('join', { clinic: 'alpha', name: 'again' });
    await p.request('leave');
    return r;
  }],
  // resume
  ['resume with a forged token', 'not_found', /resume token/, async () => (await anon('r1')).request('resume', { resume_token: 'forged-token-0000000000000000000000000000' })],
  ['resume with a numeric token', 'bad_request', /"resume_token" must be a string/, async () => (await anon('r2')).request('resume', { resume_token: 12345 })],
  ['resume with the token of an ended consultation', 'not_found', /resume token/, async () => {
    const p = await patient('ended');
    await p.request('leave');
    return (await anon('r3')).request('resume', { resume_token: p.resumeToken });
  }],
  // sign-in and session tokens
  ['auth with a forged token', 'unauthorized', /unknown or expired/, async () => (await anon('a1')).request('auth', { token: 'Zx9'.padEnd(43, 'x') })],
  ['auth with an expired session token', 'unauthorized', /unknown or expired/, async () => {
    const tok = await srv.login('dr.exp');
    await srv.accountsSql(`update sessions set expires_ms = 1 where token_hash = X'${sha256hex(tok)}'`);
    return (await anon('a2')).request('auth', { token: tok });
  }],
  ['auth with a token revoked by logout', 'unauthorized', /unknown or expired/, async () => {
    const tok = await srv.login('dr.out');
    const d = await connectAs(srv.port, tok, 'out');
    opened.add(d);
    assert.equal((await d.request('logout', { token: tok })).type, 'signed_out');
    await d.close();
    return (await anon('a3')).request('auth', { token: tok });
  }],
  ['auth with a patient resume token', 'unauthorized', /unknown or expired/, async () => {
    const p = await patient('restok');
    const r = await (await anon('a4')).request('auth', { token: p.resumeToken });
    await p.request('leave');
    return r;
  }],
  ['login with a wrong password', 'unauthorized', /wrong username or password/, async () => (await anon('l1')).request('login', { username: 'dr.a', password: 'wrong password' })],
  ['login without a password', 'bad_request', /"password" is missing/, async () => (await anon('l2')).request('login', { username: 'dr.a' })],
  ['login with a 300-byte password', 'bad_request', /"password" must be 1 to 256 bytes/, async () => (await anon('l3')).request('login', { username: 'dr.a', password: 'p'.repeat(300) })],
  ['login with a 100-byte username', 'bad_request', /"username" must be 1 to 63 bytes/, async () => (await anon('l4')).request('login', { username: 'u'.repeat(100), password: PASSWORD })],
  // roles
  ['leave before joining', 'unauthorized', /join or sign in first/, async () => (await anon('x1')).request('leave')],
  ['call_next as nobody', 'unauthorized', /join or sign in first/, async () => (await anon('x2')).request('call_next', { clinic: 'alpha' })],
  ['call_next as a patient', 'forbidden', /a patient may not send "call_next"/, async () => {
    const p = await patient('pcall');
    const r = await p.request('call_next', { clinic: 'alpha' });
    await p.request('leave');
    return r;
  }],
  ["leave naming another patient's consultation", 'forbidden', /only on their own consultation/, async () => {
    const victim = await patient('victim');
    const p = await patient('thief');
    const r = await p.request('leave', { consultation: victim.consultation });
    assert.equal((await victim.request('ping')).type, 'pong');
    await p.request('leave');
    await victim.request('leave');
    return r;
  }],
  ['accept naming a forged consultation id', 'forbidden', /only on their own consultation/, async () => {
    const p = await patient('forge');
    const r = await p.request('accept', { consultation: 'c_000000000000000000000' });
    await p.request('leave');
    return r;
  }],
  ['accept while still waiting', 'conflict', /only a called patient can accept/, async () => {
    const p = await patient('early');
    const r = await p.request('accept');
    await p.request('leave');
    return r;
  }],
  ['device_status with a string', 'bad_request', /"ready" must be true or false/, async () => {
    const p = await patient('dev');
    const r = await p.request('device_status', { ready: 'yes' });
    await p.request('leave');
    return r;
  }],
  ['offer that is not a usable SDP offer', 'bad_sdp', /no o= line/, async () => {
    const p = await patient('offer');
    const r = await p.request('offer', { sdp: 'v=0\r\n' });
    await p.request('leave');
    return r;
  }],
  ['offer without sdp', 'bad_request', /"sdp" is missing/, async () => {
    const p = await patient('offer2');
    const r = await p.request('offer', {});
    await p.request('leave');
    return r;
  }],
  // doctors
  ['duty with on = "yes"', 'bad_request', /"on" must be true or false/, async () => (await doctor()).request('duty', { clinic: 'alpha', on: 'yes' })],
  ['duty for an unknown clinic', 'not_found', /no clinic "mars"/, async () => (await doctor()).request('duty', { clinic: 'mars', on: true })],
  ['call a forged consultation id', 'not_found', /no open consultation "c_forged0000000000000"/, async () => (await doctor()).request('call', { consultation: 'c_forged0000000000000' })],
  ['call with a 100-byte consultation id', 'bad_request', /"consultation" must be 1 to 24 bytes/, async () => (await doctor()).request('call', { consultation: 'c'.repeat(100) })],
  ['call_next with nobody waiting', 'not_found', /no patient is waiting/, async () => (await doctor()).request('call_next', { clinic: 'alpha' })],
  ["end a waiting patient's consultation nobody called", 'conflict', /not yours now \(it is waiting\)/, async () => {
    const p = await patient('endw');
    const r = await (await doctor()).request('end', { consultation: p.consultation });
    await p.request('leave');
    return r;
  }],
  ['end with reason "abandoned"', 'bad_request', /"reason" must be "completed" or "doctor_ended"/, async () => {
    const p = await patient('endr');
    const d = await doctor();
    assert.equal((await d.request('call', { consultation: p.consultation })).type, 'called');
    const r = await d.request('end', { consultation: p.consultation, reason: 'abandoned' });
    await p.request('leave');
    return r;
  }],
  ['transfer to the same clinic', 'bad_request', /already in clinic "alpha"/, async () => {
    const p = await patient('tr1');
    const r = await (await doctor()).request('transfer', { consultation: p.consultation, clinic: 'alpha' });
    await p.request('leave');
    return r;
  }],
  ['transfer to an unknown clinic', 'not_found', /no clinic "mars"/, async () => {
    const p = await patient('tr2');
    const r = await (await doctor()).request('transfer', { consultation: p.consultation, clinic: 'mars' });
    await p.request('leave');
    return r;
  }],
  ['transfer into a full clinic', 'queue_full', /"tiny" is full/, async () => {
    const filler = await patient('tr3a', 'tiny');
    const p = await patient('tr3b');
    const r = await (await doctor()).request('transfer', { consultation: p.consultation, clinic: 'tiny' });
    await p.request('leave');
    await filler.request('leave');
    return r;
  }],
  ['logout during a consultation', 'conflict', /end or return consultation/, async () => {
    const p = await patient('lo');
    const d = await doctor();
    assert.equal((await d.request('call_next', { clinic: 'alpha' })).type, 'called');
    const r = await d.request('logout');
    await p.request('leave');
    return r;
  }],
];

test('requests with bad fields, wrong roles, forged ids and tokens', async (t) => {
  for (const [name, code, message, run] of CASES) {
    await t.test(`${name} -> ${code}`, async () => {
      const reply = await run();
      checkError(reply, code, message);
      assert.notEqual(reply.re, null, 'a well-formed request gets its id back');
    });
    // Connections of finished cases are closed so that they do not pile up.
    for (const c of opened) if (c.isOpen) await c.close();
    opened.clear();
  }
});

test('a doctor whose account is disabled is refused and closed with 4003', async () => {
  const tok = await srv.login('dr.gone');
  const d = await connectAs(srv.port, tok, 'gone');
  opened.add(d);
  assert.equal((await d.request('queue', { clinic: 'alpha' })).type, 'queue');
  const r = await srv.user(['disable', 'dr.gone']);
  assert.equal(r.code, 0, r.stderr);
  checkError(await d.request('queue', { clinic: 'alpha' }), 'unauthorized', /disabled/);
  assert.deepEqual(await d.closed, { code: 4003, reason: 'account disabled' });
  // And the session token is dead for new connections too.
  checkError(await (await anon('gone2')).request('auth', { token: tok }), 'unauthorized');
  const appt = await srv.appointment(tok, { clinic: 'alpha' });
  assert.equal(appt.status, 401);
});

test('a password change ends the open sessions of the account (4002)', async () => {
  const tok = await srv.login('dr.newpw');
  const d = await connectAs(srv.port, tok, 'newpw');
  opened.add(d);
  assert.equal((await d.request('queue', { clinic: 'alpha' })).type, 'queue');
  const pw = path.join(srv.dir, 'new-password');
  writeFileSync(pw, 'a brand new passphrase\n', { mode: 0o600 });
  const r = await srv.user(['passwd', 'dr.newpw', '--password-file', pw]);
  assert.equal(r.code, 0, r.stderr);
  checkError(await d.request('queue', { clinic: 'alpha' }), 'unauthorized', /session/);
  assert.deepEqual(await d.closed, { code: 4002, reason: 'session ended' });
});

test(
  'a join refused for the wrong clinic does not use up the appointment',
  async () => {
    const appt = await srv.appointment(tokens['dr.a'], { clinic: 'alpha' });
    const c = await anon('mismatch');
    checkError(await c.request('join', { appointment: appt.json.token, clinic: 'tiny', name: 'x' }), 'bad_request', /for clinic "alpha"/);
    const ok = await c.request('join', { appointment: appt.json.token, name: 'x' });
    assert.equal(ok.type, 'joined', JSON.stringify(ok));
    await c.request('leave');
  },
);

test('HTTPS API: bad bodies and forged bearer tokens', async () => {
  const login = (body) => httpsRequest(srv.port, 'POST', '/api/login', { body });
  let r = await login('{"username":');
  assert.equal(r.status, 400);
  assert.equal(r.json.code, 'bad_request');
  r = await login({ username: 'dr.a', password: 'wrong password' });
  assert.equal(r.status, 401);
  assert.equal(r.json.code, 'unauthorized');
  r = await login('x'.repeat(20000));
  assert.equal(r.status, 413);
  r = await srv.appointment('forged-bearer-token', { clinic: 'alpha' });
  assert.equal(r.status, 401);
  r = await srv.appointment(tokens['dr.a'], { clinic: 'alpha', priority: 'vip' });
  assert.equal(r.status, 400);
  assert.equal(r.json.code, 'bad_request');
  r = await srv.appointment(tokens['dr.a'], { clinic: 'mars' });
  assert.equal(r.status, 404);
  assert.equal(r.json.code, 'not_found');
  r = await srv.appointment(tokens['dr.a'], { clinic: 'alpha', patient_ref: 'r'.repeat(64) });
  assert.equal(r.status, 400);
  r = await srv.appointment(tokens['dr.a'], '[1,2,3]');
  assert.equal(r.status, 400);
});

test('a flood is answered rate_limited, then closed with 1008', async () => {
  const bystander = await anon('bystander');
  const c = await anon('flood');
  const N = 300;
  for (let i = 0; i < N; i++) c.ws.send(JSON.stringify({ id: `f${i}`, type: 'ping' }));
  const info = await c.closed;
  assert.deepEqual(info, { code: 1008, reason: 'message flood' });
  const pongs = c.orphans.filter((m) => m.type === 'pong');
  const limited = c.orphans.filter((m) => m.code === 'rate_limited');
  assert.ok(pongs.length >= BURST && pongs.length <= BURST + 3, `about a burst of pongs, got ${pongs.length}`);
  assert.ok(limited.length >= 10 * BURST - 3, `then rate_limited errors, got ${limited.length}`);
  for (const m of limited) {
    assert.equal(m.re, null);
    assert.match(m.message, new RegExp(`more than ${RATE} messages a second`));
  }
  // The others are unaffected.
  assert.equal((await bystander.request('ping')).type, 'pong');
  const rows = await srv.audit(`type = 'connection_closed_for_flood'`);
  assert.equal(rows.length, 1);
  assert.equal(rows[0].outcome, 'denied');
  assert.equal(rows[0].source, '127.0.0.1');
  await bystander.close();
});

test('messages over 64 KiB close the connection with 1009; 64 KiB exactly is fine', async () => {
  // Exactly 65536 bytes: answered.
  const exact = await anon('exact');
  const head = '{"id":"big","type":"ping","pad":"';
  const tail = '"}';
  const msg = head + 'p'.repeat(65536 - head.length - tail.length) + tail;
  assert.equal(Buffer.byteLength(msg), 65536);
  await exact.sendRaw(msg);
  assert.equal((await exact.nextReply()).type, 'pong');
  await exact.close();

  // One byte more, in one frame.
  const big = await anon('big');
  big.ws.send(msg.replace('"pad":"', '"pad":"p'));
  assert.deepEqual(await big.closed, { code: 1009, reason: 'message over 64 KiB' });

  // A fragmented message that grows past the limit in its last fragment.
  const frag = await anon('frag');
  frag.ws.send('{"id":"f","type":"ping","pad":"', { fin: false });
  frag.ws.send('q'.repeat(40 * 1024), { fin: false });
  frag.ws.send('q'.repeat(25 * 1024) + '"}', { fin: true });
  assert.deepEqual(await frag.closed, { code: 1009, reason: 'message over 64 KiB' });

  // A fragmented message under the limit is reassembled and answered.
  const ok = await anon('frag-ok');
  ok.ws.send('{"id":"g",', { fin: false });
  ok.ws.send('"type":"pi', { fin: false });
  ok.ws.send('ng"}', { fin: true });
  assert.equal((await ok.nextReply()).re, 'g');
  await ok.close();
});

test(
  'a fragmented message still being sent when it passes 64 KiB gets 1009 too',
  async () => {
    const frag = await anon('frag-more');
    frag.ws.send('{"id":"f","type":"ping","pad":"', { fin: false });
    for (let i = 0; i < 5; i++) frag.ws.send('q'.repeat(16 * 1024), { fin: false });
    frag.ws.send('"}', { fin: true });
    assert.deepEqual(await frag.closed, { code: 1009, reason: 'message over 64 KiB' });
  },
);

test('a text frame that is not UTF-8 is closed by the WebSocket layer (1007)', async () => {
  // Not in docs/protocol.md's list of close codes: libwebsockets closes such frames itself.
  const c = await anon('utf8');
  c.ws.send(Buffer.from([0x7b, 0x22, 0xff, 0xfe, 0x22, 0x7d]), { binary: false });
  const info = await c.closed;
  assert.equal(info.code, 1007);
});

test('after all of that the server still serves a fresh connection', async () => {
  const c = await anon('fresh');
  const pong = await c.request('ping');
  assert.equal(pong.type, 'pong');
  const joined = await c.request('join', { clinic: 'alpha', name: 'Still here' });
  assert.equal(joined.type, 'joined', JSON.stringify(joined));
  assert.equal(joined.position, 1, 'every earlier case left the queue empty');
  assert.equal((await c.request('leave')).type, 'left');
  assert.equal((await srv.get('/readyz')).status, 200);
  await c.close();
});

test('more connections from one address than allowed are closed with 1008', async () => {
  const small = await startServer({ flags: ['--max-connections-per-address', '3'] });
  const conns = [];
  try {
    for (let i = 0; i < 3; i++) {
      const c = await connect(small.port, { label: `ok${i}` });
      conns.push(c);
      assert.equal((await c.request('ping')).type, 'pong');
    }
    const extra = await connect(small.port, { label: 'extra' });
    conns.push(extra);
    assert.deepEqual(await extra.closed, { code: 1008, reason: 'too many connections from your address' });
    // The three are still served.
    for (const c of conns.slice(0, 3)) assert.equal((await c.request('ping')).type, 'pong');
    // Once one goes, a new one is accepted (the server may need a moment to see the close).
    await conns[0].close();
    let again;
    for (let attempt = 0; attempt < 20; attempt++) {
      again = await connect(small.port, { label: `again${attempt}` });
      conns.push(again);
      const r = await Promise.race([again.request('ping').catch(() => null), again.closed.then(() => null)]);
      if (r && r.type === 'pong') break;
      again = null;
      await new Promise((res) => setTimeout(res, 100));
    }
    assert.ok(again, 'a connection is accepted again after one closed');
  } finally {
    for (const c of conns) if (c.isOpen) await c.close();
    assertCleanExit(await small.stop(), 'tabib (max connections)');
  }
});

test('the server stops on SIGTERM with exit status 0 and no sanitizer report', async () => {
  // A connection or two may still be open: the stop must cope with them.
  const result = await srv.stopCleanly();
  assert.equal(result.code, 0);
});
