// signal.js - the tabib.v1 WebSocket (docs/protocol.md): requests with replies,
// pushed events, and an automatic reconnect after an unexpected close.
//
//   const signal = new Signal({ onReconnect: async (s) => { await s.request('resume', {...}); } });
//   signal.on('position', (ev) => ...);
//   await signal.connect();
//   const joined = await signal.request('join', { clinic, name });
//
// After a drop the socket comes back by itself (0.5, 1, 2, 4, 5, 5... s apart);
// onReconnect runs first (the patient resumes, staff authenticate again), then the
// requests made while the socket was away are sent. Requests that were in flight when it
// dropped are rejected with code 'disconnected': whether they took effect is unknown,
// so the caller decides whether to repeat them.

export const SUBPROTOCOL = 'tabib.v1';

// Close codes after which reconnecting is pointless (docs/protocol.md, "Closing").
const FINAL_CODES = new Set([4001, 4002, 4003, 1008]);
const RETRY_DELAYS_MS = [500, 1000, 2000, 4000, 5000];
// A browser may keep a socket "open" long after the network went away; a ping that gets
// no pong within HEARTBEAT_TIMEOUT_MS closes it so that the reconnect starts.
const HEARTBEAT_INTERVAL_MS = 10000;
const HEARTBEAT_TIMEOUT_MS = 5000;

function makeError(code, message) {
  const err = new Error(message);
  err.code = code;
  return err;
}

export class Signal {
  /** onReconnect: async (signal) => {}, run after an automatic reconnect, before queued requests. */
  constructor({ onReconnect, url } = {}) {
    this.onReconnect = onReconnect ?? null;
    this.url = url ?? `${location.protocol === 'http:' ? 'ws' : 'wss'}://${location.host}/ws`;
    this.autoReconnect = true;
    this.state = 'closed'; // connecting, open, reconnecting, closed
    this.ws = null;
    this._nextId = 1;
    this._pending = new Map(); // id -> {resolve, reject, timer, type}
    this._queue = []; // requests waiting for the socket: {msg, id}
    this._handlers = new Map(); // type -> Set(fn)
    this._stateFns = new Set();
    this._attempt = 0;
    this._retryTimer = null;
    this._heartbeat = null;
    this._userClosed = false;
    this._inReconnect = false; // onReconnect is running: its requests go out at once
    this._everOpened = false;
    this._onOnline = () => {
      // The network is back: retry now rather than at the end of the current back-off.
      if (this.state === 'reconnecting' && this._retryTimer) {
        clearTimeout(this._retryTimer);
        this._retryTimer = null;
        this._open();
      }
    };
    this._onOffline = () => {
      // Chromium and Firefox say when the device lost its network: do not wait for the
      // heartbeat to notice.
      if (this.state === 'open') this.drop();
    };
  }

  /** Opens the socket; resolves once it is open (rejects if the first attempt fails). */
  connect() {
    this._userClosed = false;
    window.addEventListener('online', this._onOnline);
    window.addEventListener('offline', this._onOffline);
    return new Promise((resolve, reject) => {
      this._firstOpen = { resolve, reject };
      this._open();
    });
  }

  _setState(state, info) {
    if (this.state === state && !info) return;
    this.state = state;
    for (const fn of this._stateFns) {
      try {
        fn(state, info);
      } catch (err) {
        console.error('signal: a state listener failed', err);
      }
    }
  }

  _open() {
    this._retryTimer = null;
    this._setState(this._everOpened ? 'reconnecting' : 'connecting');
    let ws;
    try {
      ws = new WebSocket(this.url, SUBPROTOCOL);
    } catch (err) {
      this._failFirst(err);
      return;
    }
    this.ws = ws;
    ws.onopen = () => this._opened(ws);
    ws.onmessage = (e) => this._message(e.data);
    ws.onclose = (e) => this._closed(ws, e);
    // onerror is always followed by onclose, which does the work.
  }

  _failFirst(err) {
    if (this._firstOpen && !this._everOpened) {
      this._firstOpen.reject(err);
      this._firstOpen = null;
      this._setState('closed');
      return true;
    }
    return false;
  }

  async _opened(ws) {
    if (ws !== this.ws) return;
    const reconnect = this._everOpened;
    this._everOpened = true;
    this._attempt = 0;
    this._startHeartbeat();
    if (!reconnect) {
      this._setState('open');
      this._firstOpen?.resolve();
      this._firstOpen = null;
      this._flush();
      return;
    }
    if (this.onReconnect) {
      this._inReconnect = true;
      try {
        await this.onReconnect(this);
      } catch (err) {
        console.warn('signal: onReconnect failed:', err?.code ?? '', err?.message ?? err);
        // The page handles what it knows to be final (not_found: the consultation is over;
        // unauthorized: signed out). Anything else (a timeout, internal, rate_limited) must
        // not leave an open socket without a role: try again, with the back-off.
        if (!['not_found', 'unauthorized', 'forbidden'].includes(err?.code) && ws === this.ws) {
          this._inReconnect = false;
          this.drop();
          return;
        }
      } finally {
        this._inReconnect = false;
      }
      if (ws !== this.ws || ws.readyState !== WebSocket.OPEN) return; // dropped again meanwhile
    }
    this._setState('open');
    this._flush();
  }

  _closed(ws, e) {
    if (ws !== this.ws) return;
    this._stopHeartbeat();
    this.ws = null;
    // A socket given up on by drop() or close() says nothing more.
    ws.onopen = ws.onmessage = ws.onclose = null;
    const gone = makeError('disconnected', `connection closed (${e.code}${e.reason ? ' ' + e.reason : ''})`);
    for (const p of this._pending.values()) {
      clearTimeout(p.timer);
      p.reject(gone);
    }
    this._pending.clear();
    if (!this._everOpened && this._failFirst(makeError('connect_failed', 'could not connect to the server'))) {
      return;
    }
    const final = FINAL_CODES.has(e.code);
    if (this._userClosed || final || !this.autoReconnect) {
      this._rejectQueue(gone);
      this._setState('closed', { code: e.code, reason: e.reason });
      return;
    }
    // While the browser knows it is offline, try only now and then: the 'online' event
    // retries at once (and every failed attempt is an error line in the console).
    const offline = navigator.onLine === false;
    const delay = offline ? RETRY_DELAYS_MS.at(-1) : RETRY_DELAYS_MS[Math.min(this._attempt, RETRY_DELAYS_MS.length - 1)];
    this._attempt++;
    this._setState('reconnecting', { code: e.code, reason: e.reason });
    this._retryTimer = setTimeout(() => this._open(), delay);
  }

  _rejectQueue(err) {
    for (const q of this._queue) {
      clearTimeout(q.timer);
      q.reject(err);
    }
    this._queue = [];
  }

  _flush() {
    const queued = this._queue;
    this._queue = [];
    for (const q of queued) this._send(q);
  }

  _send(q) {
    this._pending.set(q.msg.id, q);
    this.ws.send(JSON.stringify(q.msg));
  }

  _message(text) {
    let msg;
    try {
      msg = JSON.parse(text);
    } catch {
      console.warn('signal: unparsable message', String(text).slice(0, 200));
      return;
    }
    if (msg.re !== undefined && msg.re !== null) {
      const p = this._pending.get(msg.re);
      if (p) {
        this._pending.delete(msg.re);
        clearTimeout(p.timer);
        if (msg.type === 'error') p.reject(Object.assign(makeError(msg.code, msg.message), { reply: msg }));
        else p.resolve(msg);
      }
      return; // a reply nobody waits for any more (timed out)
    }
    if (msg.type === 'error') {
      console.warn('signal: error without a request:', msg.code, msg.message);
      return;
    }
    this._emit(msg.type, msg);
    this._emit('*', msg);
  }

  _emit(type, msg) {
    for (const fn of this._handlers.get(type) ?? []) {
      try {
        const r = fn(msg);
        if (r && typeof r.catch === 'function') r.catch((err) => console.error(`signal: on ${type}:`, err));
      } catch (err) {
        console.error(`signal: on ${type}:`, err);
      }
    }
  }

  /**
   * Sends {type, id, ...fields}; resolves the reply (its `re` is the id), rejects an Error
   * with .code and .message on an error reply ('timeout' after timeoutMs, 'disconnected'
   * when the socket dropped first, 'closed' when it is closed for good).
   */
  request(type, fields = {}, { timeoutMs = 10000 } = {}) {
    return new Promise((resolve, reject) => {
      if (this.state === 'closed' && !this._firstOpen) {
        reject(makeError('closed', `not connected (${type})`));
        return;
      }
      const id = this._nextId++;
      const q = { msg: { type, id, ...fields }, resolve, reject, type, timer: null };
      q.timer = setTimeout(() => {
        this._pending.delete(id);
        this._queue = this._queue.filter((x) => x !== q);
        reject(makeError('timeout', `no reply to ${type} in ${timeoutMs} ms`));
      }, timeoutMs);
      const open = this.ws && this.ws.readyState === WebSocket.OPEN;
      if (open && (this.state === 'open' || this._inReconnect)) this._send(q);
      else this._queue.push(q);
    });
  }

  /** fn(event) for pushed events of `type` ('*': all). Returns a function that removes it. */
  on(type, fn) {
    if (!this._handlers.has(type)) this._handlers.set(type, new Set());
    this._handlers.get(type).add(fn);
    return () => this._handlers.get(type)?.delete(fn);
  }

  /** fn(state, info?) on every state change; info {code, reason} with the close. Returns an off(). */
  onState(fn) {
    this._stateFns.add(fn);
    return () => this._stateFns.delete(fn);
  }

  _startHeartbeat() {
    this._stopHeartbeat();
    this._heartbeat = setInterval(() => {
      const ws = this.ws;
      if (!ws || ws.readyState !== WebSocket.OPEN || this.state !== 'open') return;
      this.request('ping', {}, { timeoutMs: HEARTBEAT_TIMEOUT_MS }).catch((err) => {
        if (err.code === 'timeout' && ws === this.ws) this.drop();
      });
    }, HEARTBEAT_INTERVAL_MS);
  }

  _stopHeartbeat() {
    clearInterval(this._heartbeat);
    this._heartbeat = null;
  }

  /**
   * Closes the socket as a network loss would: the reconnect (and onReconnect) follow.
   * For a dead connection the browser has not noticed, and for tests.
   */
  drop() {
    const ws = this.ws;
    if (!ws) return;
    // Treat it as closed now; the browser's own close event may take a while to come.
    this._closed(ws, { code: 1006, reason: 'dropped' });
    try {
      ws.close();
    } catch {
      /* already closing */
    }
  }

  /** Closes for good: no reconnect; pending and queued requests are rejected. */
  close() {
    this._userClosed = true;
    clearTimeout(this._retryTimer);
    this._retryTimer = null;
    window.removeEventListener('online', this._onOnline);
    window.removeEventListener('offline', this._onOffline);
    const ws = this.ws;
    if (ws) {
      this._closed(ws, { code: 1000, reason: 'closed by the page' });
      try {
        ws.close(1000);
      } catch {
        /* already closing */
      }
    } else {
      this._rejectQueue(makeError('closed', 'closed by the page'));
      this._setState('closed', { code: 1000, reason: 'closed by the page' });
    }
  }
}
