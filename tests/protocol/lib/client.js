// client.js - a small `tabib.v1` client for the protocol tests.
//
//   const c = await connect(port);
//   const reply = await c.request('join', { clinic: 'general', name: 'مريم' });
//   const ev = await c.next('position');          // a pushed event (no `re`)
//   const { code, reason } = await c.closed;      // how the connection ended
//
// Replies are matched to requests by `re`. Events are kept in a buffer until
// next() takes them, so an event that arrived before next() was called is not
// lost. Replies whose `re` is null or unknown (bad JSON, rate limiting) go to
// their own buffer, read with nextReply().

// `ws` (with `ajv` and the FHIR schema for lib/fhir.js) is installed into tests/protocol/node_modules
// from package-lock.json. Without it every test file fails here, saying what to run.
let WebSocket;
try {
  ({ default: WebSocket } = await import('ws'));
} catch (err) {
  throw new Error(
    'tests/protocol/node_modules is missing (the npm package "ws" cannot be loaded): ' +
      'run `make node-deps`, or `cd tests/protocol && npm ci --no-audit --no-fund`, first. ' +
      `(${err.code ?? err.message})`,
  );
}

export const SUBPROTOCOL = 'tabib.v1';
const DEFAULT_TIMEOUT_MS = 5000;

let clientCounter = 0;

export class Client {
  constructor(ws, label) {
    this.ws = ws;
    this.label = label;
    this.seq = 0;
    this.pending = new Map(); // id -> {resolve, reject, timer, type}
    this.events = []; // unconsumed events
    this.eventWaiters = []; // {type, resolve, reject, timer}
    this.orphans = []; // replies with re null or unknown
    this.orphanWaiters = [];
    this.listeners = [];
    this.unbuffered = new Set(); // event types given to listeners only
    this.received = 0;
    this.closeInfo = null;
    this.closed = new Promise((resolve) => {
      ws.on('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString('utf8') };
        const err = new Error(`${this.label}: connection closed (${code} ${this.closeInfo.reason})`);
        err.closeInfo = this.closeInfo;
        for (const p of this.pending.values()) {
          clearTimeout(p.timer);
          p.reject(err);
        }
        this.pending.clear();
        for (const w of [...this.eventWaiters, ...this.orphanWaiters]) {
          clearTimeout(w.timer);
          w.reject(err);
        }
        this.eventWaiters = [];
        this.orphanWaiters = [];
        resolve(this.closeInfo);
      });
    });
    ws.on('error', () => {
      /* reported through 'close' */
    });
    ws.on('message', (data, isBinary) => this.onMessage(data, isBinary));
  }

  get isOpen() {
    return this.ws.readyState === WebSocket.OPEN;
  }

  onMessage(data, isBinary) {
    this.received++;
    let msg;
    try {
      msg = JSON.parse(data.toString('utf8'));
    } catch {
      msg = { type: '__unparsable__', raw: data.toString('utf8'), binary: isBinary };
    }
    if (Object.prototype.hasOwnProperty.call(msg, 're')) {
      const p = msg.re !== null ? this.pending.get(msg.re) : undefined;
      if (p) {
        this.pending.delete(msg.re);
        clearTimeout(p.timer);
        p.resolve(msg);
        return;
      }
      const w = this.orphanWaiters.shift();
      if (w) {
        clearTimeout(w.timer);
        w.resolve(msg);
      } else {
        this.orphans.push(msg);
      }
      return;
    }
    for (const fn of this.listeners) fn(msg);
    const i = this.eventWaiters.findIndex((w) => w.type === msg.type || w.type === '*');
    if (i >= 0) {
      const [w] = this.eventWaiters.splice(i, 1);
      clearTimeout(w.timer);
      w.resolve(msg);
      return;
    }
    if (!this.unbuffered.has(msg.type)) this.events.push(msg);
  }

  /** A fresh request id. */
  nextId() {
    return `${this.label}-${++this.seq}`;
  }

  /** Sends {type, id, ...fields}; resolves the reply whose `re` is that id (an error reply too). */
  request(type, fields = {}, { timeoutMs = DEFAULT_TIMEOUT_MS, id } = {}) {
    const rid = id ?? this.nextId();
    return new Promise((resolve, reject) => {
      if (!this.isOpen) {
        const err = new Error(`${this.label}: ${type}: connection is not open`);
        err.closeInfo = this.closeInfo;
        reject(err);
        return;
      }
      const timer = setTimeout(() => {
        this.pending.delete(rid);
        reject(new Error(`${this.label}: no reply to ${type} (${rid}) in ${timeoutMs} ms`));
      }, timeoutMs);
      this.pending.set(rid, { resolve, reject, timer, type });
      this.ws.send(JSON.stringify({ ...fields, type, id: rid }));
    });
  }

  /** Sends text (or a Buffer) as it is; no reply is tracked. */
  sendRaw(data, options = {}) {
    return new Promise((resolve, reject) => this.ws.send(data, options, (err) => (err ? reject(err) : resolve())));
  }

  /** The next reply that matched no request (re null or unknown). */
  nextReply(timeoutMs = DEFAULT_TIMEOUT_MS) {
    if (this.orphans.length) return Promise.resolve(this.orphans.shift());
    return this.wait(this.orphanWaiters, { type: 'reply' }, timeoutMs);
  }

  /** The next pushed event of `type` ('*' for any), from the buffer or as it arrives. */
  next(type, timeoutMs = DEFAULT_TIMEOUT_MS) {
    const i = this.events.findIndex((m) => type === '*' || m.type === type);
    if (i >= 0) return Promise.resolve(this.events.splice(i, 1)[0]);
    return this.wait(this.eventWaiters, { type }, timeoutMs);
  }

  /** The next event of `type` for which `pred` is true; skipped ones are dropped. */
  async nextMatching(type, pred, timeoutMs = DEFAULT_TIMEOUT_MS) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.label}: no matching ${type} event in ${timeoutMs} ms`);
      const ev = await this.next(type, left);
      if (pred(ev)) return ev;
    }
  }

  /** Takes every buffered event of `type` now, without waiting. */
  drain(type) {
    const out = [];
    this.events = this.events.filter((m) => {
      if (type === '*' || m.type === type) {
        out.push(m);
        return false;
      }
      return true;
    });
    return out;
  }

  /** Calls fn(event) for every event from now on (buffering is unaffected). */
  onEvent(fn) {
    this.listeners.push(fn);
  }

  wait(list, entry, timeoutMs) {
    return new Promise((resolve, reject) => {
      if (this.closeInfo) {
        const err = new Error(
          `${this.label}: connection closed (${this.closeInfo.code} ${this.closeInfo.reason}) while waiting for ${entry.type}`,
        );
        err.closeInfo = this.closeInfo;
        reject(err);
        return;
      }
      const w = { ...entry, resolve, reject };
      w.timer = setTimeout(() => {
        const i = list.indexOf(w);
        if (i >= 0) list.splice(i, 1);
        reject(new Error(`${this.label}: no ${entry.type} in ${timeoutMs} ms`));
      }, timeoutMs);
      list.push(w);
    });
  }

  /** Asserts nothing arrives for `ms`: resolves the events and orphan replies that did arrive. */
  async quiet(ms) {
    const before = this.received;
    await new Promise((r) => setTimeout(r, ms));
    return this.received - before;
  }

  /** A normal close (1000); resolves the close info. */
  async close(code = 1000, reason = '') {
    if (this.ws.readyState === WebSocket.OPEN || this.ws.readyState === WebSocket.CONNECTING) {
      try {
        this.ws.close(code, reason);
      } catch {
        this.ws.terminate();
      }
    }
    const t = setTimeout(() => this.ws.terminate(), 3000);
    const info = await this.closed;
    clearTimeout(t);
    return info;
  }

  /** Drops the TCP connection without a close frame, like a phone leaving the network. */
  async terminate() {
    this.ws.terminate();
    return this.closed;
  }
}

/**
 * Opens wss://127.0.0.1:PORT/ws with subprotocol tabib.v1 (self-signed certificate accepted).
 * Resolves a Client once open; rejects if the handshake fails.
 */
export function connect(port, { label, protocol = SUBPROTOCOL, path = '/ws', timeoutMs = 10000 } = {}) {
  const name = label ?? `c${++clientCounter}`;
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`wss://127.0.0.1:${port}${path}`, protocol === null ? undefined : protocol, {
      rejectUnauthorized: false,
      perMessageDeflate: false,
      handshakeTimeout: timeoutMs,
    });
    const client = new Client(ws, name);
    const onOpen = () => {
      ws.off('unexpected-response', onUnexpected);
      resolve(client);
    };
    const onUnexpected = (req, res) => {
      ws.off('open', onOpen);
      const err = new Error(`${name}: handshake refused with HTTP ${res.statusCode}`);
      err.statusCode = res.statusCode;
      reject(err);
      req.destroy();
    };
    ws.once('open', onOpen);
    ws.once('unexpected-response', onUnexpected);
    client.closed.then((info) => {
      if (ws.readyState !== WebSocket.OPEN) {
        const err = new Error(`${name}: connection failed (${info.code} ${info.reason})`);
        err.closeInfo = info;
        reject(err);
      }
    });
  });
}

/** Connects and signs in with `auth` using a session token; resolves the client. */
export async function connectAs(port, token, label) {
  const c = await connect(port, { label });
  const r = await c.request('auth', { token });
  if (r.type !== 'authenticated') throw new Error(`${c.label}: auth failed: ${JSON.stringify(r)}`);
  c.user = r.user;
  return c;
}

/** Connects and joins a clinic as a patient; resolves the client with .joined set. */
export async function joinAs(port, clinic, name, label) {
  const c = await connect(port, { label });
  const r = await c.request('join', { clinic, name });
  if (r.type !== 'joined') throw new Error(`${c.label}: join failed: ${JSON.stringify(r)}`);
  c.joined = r;
  c.consultation = r.consultation;
  return c;
}
