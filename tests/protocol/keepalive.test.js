// Keepalive: the server PINGs a silent WebSocket at half of idle_timeout_s and
// closes one that stays silent (no PONG) for all of it; a client that answers
// the PINGs, as browsers do by themselves, stays connected.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import WebSocket from 'ws';
import { startServer, assertCleanExit } from './lib/server.js';
import { SUBPROTOCOL } from './lib/client.js';

const IDLE_S = 4;
let srv;

before(async () => {
  srv = await startServer({ flags: ['--idle-timeout-s', String(IDLE_S)] });
});

after(async () => {
  if (srv && !srv.exited) assertCleanExit(await srv.stop());
});

function open(autoPong) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://127.0.0.1:${srv.port}/ws`, SUBPROTOCOL, {
      rejectUnauthorized: false,
      autoPong,
    });
    const info = { ws, pings: 0, closedAt: null, code: null };
    ws.on('ping', () => info.pings++);
    ws.on('close', (code) => {
      info.closedAt = Date.now();
      info.code = code;
    });
    ws.on('open', () => resolve(info));
    ws.on('error', reject);
  });
}

test('a silent client is pinged, and closed when it does not answer', async () => {
  const t0 = Date.now();
  const [mute, live] = await Promise.all([open(false), open(true)]);
  await new Promise((r) => setTimeout(r, (IDLE_S * 2 + 2) * 1000));
  assert.ok(mute.pings >= 1, 'the mute client was pinged');
  assert.ok(mute.closedAt !== null, 'the mute client was closed');
  const after = (mute.closedAt - t0) / 1000;
  assert.ok(after >= IDLE_S - 1 && after <= IDLE_S * 2 + 1, `closed after ${after} s`);
  assert.ok(live.pings >= 2, `the answering client was pinged ${live.pings} times`);
  assert.equal(live.closedAt, null, 'the answering client stays connected');
  live.ws.close();
});
