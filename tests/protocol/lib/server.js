// server.js - runs the real `tabib` binary for the protocol tests.
//
// Each call to startServer() makes a fresh temporary directory (data, certs,
// config, logs), creates the accounts it is given with `tabib user add`
// BEFORE the server starts, picks free ports on 127.0.0.1, starts the server
// and waits until GET /readyz answers 200. Only 127.0.0.1 is ever used.
//
// The only processes this file signals are the ones it spawned, by PID:
// stop() sends SIGTERM and waits for the exit. A test process that ends with
// a server still running sends that PID a SIGTERM on its way out.

import { spawn, execFile } from 'node:child_process';
import dgram from 'node:dgram';
import { mkdtempSync, rmSync, writeFileSync, readFileSync, existsSync, openSync, closeSync } from 'node:fs';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

const here = path.dirname(fileURLToPath(import.meta.url));
const testDir = path.resolve(here, '..');

/** The binary: $TABIB_BINARY (relative to the working directory), or ../../build/tabib from tests/protocol. */
export const BINARY = process.env.TABIB_BINARY
  ? path.resolve(process.env.TABIB_BINARY)
  : path.resolve(testDir, '../../build/tabib');

export const PASSWORD = 'correct horse battery staple';
const HOST = '127.0.0.1';
const READY_TIMEOUT_MS = 20000;
const STOP_TIMEOUT_MS = 15000;

const running = new Set(); // servers started here and not yet seen to exit

process.on('exit', () => {
  for (const srv of running) {
    try {
      process.kill(srv.pid, 'SIGTERM');
    } catch {
      /* already gone */
    }
  }
});

/** The environment for the child processes: ours without TABIB_* (which would be settings). */
function childEnv() {
  const env = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('TABIB_')) env[k] = v;
  return env;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freeTcpPort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once('error', reject);
    srv.listen(0, HOST, () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

/** A UDP port on 127.0.0.1 (>= 1024) that was free a moment ago. */
export async function freeUdpPort() {
  for (let i = 0; i < 50; i++) {
    const port = await new Promise((resolve, reject) => {
      const s = dgram.createSocket('udp4');
      s.once('error', reject);
      s.bind(0, HOST, () => {
        const p = s.address().port;
        s.close(() => resolve(p));
      });
    });
    if (port >= 1024) return port;
  }
  throw new Error('no free UDP port');
}

/** Runs a program to completion; resolves {code, stdout, stderr}. */
function run(file, args, opts = {}) {
  return new Promise((resolve) => {
    execFile(file, args, { env: childEnv(), maxBuffer: 64 * 1024 * 1024, ...opts }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
    });
  });
}

/** The text of a config file: top-level `settings`, then one [clinic ID] section per clinic. */
function configText(settings, clinics) {
  const quote = (v) => `"${String(v).replace(/\\/g, '\\\\').replace(/"/g, '\\"')}"`;
  const lines = ['# written by tests/protocol/lib/server.js'];
  for (const [k, v] of Object.entries(settings ?? {})) lines.push(`${k} = ${quote(v)}`);
  for (const c of clinics ?? []) {
    lines.push('', `[clinic ${c.id}]`);
    lines.push(`name_en = ${quote(c.name_en ?? c.id)}`);
    lines.push(`name_ar = ${quote(c.name_ar ?? 'عيادة')}`);
    if (c.queue_limit !== undefined) lines.push(`queue_limit = ${c.queue_limit}`);
    if (c.hours !== undefined) lines.push(`hours = ${c.hours}`);
  }
  return lines.join('\n') + '\n';
}

/** HTTPS request to the server; resolves {status, headers, text, json}. */
export function httpsRequest(port, method, urlPath, { body, headers = {}, timeoutMs = 10000 } = {}) {
  return new Promise((resolve, reject) => {
    const data = body === undefined ? undefined : typeof body === 'string' ? body : JSON.stringify(body);
    const req = https.request(
      {
        host: HOST,
        port,
        method,
        path: urlPath,
        rejectUnauthorized: false,
        agent: false,
        timeout: timeoutMs,
        headers: {
          ...(data !== undefined
            ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(data) }
            : {}),
          ...headers,
        },
      },
      (res) => {
        const chunks = [];
        res.on('data', (c) => chunks.push(c));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json;
          try {
            json = JSON.parse(text);
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode, headers: res.headers, text, json });
        });
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${urlPath}: timed out`)));
    req.on('error', reject);
    if (data !== undefined) req.write(data);
    req.end();
  });
}

export class TabibServer {
  constructor(dir, port, mediaPort, proc) {
    this.dir = dir;
    this.dataDir = path.join(dir, 'data');
    this.port = port;
    this.mediaPort = mediaPort;
    this.proc = proc;
    this.pid = proc.pid;
    this.exit = new Promise((resolve) => {
      proc.once('exit', (code, signal) => {
        running.delete(this);
        resolve({ code, signal });
      });
    });
    this.exited = null;
    this.exit.then((e) => (this.exited = e));
  }

  /** The server's standard error so far (its log). */
  stderr() {
    try {
      return readFileSync(path.join(this.dir, 'stderr.log'), 'utf8');
    } catch {
      return '';
    }
  }

  /** POST /api/login; resolves the session token (throws unless 200). */
  async login(username, password = PASSWORD) {
    const r = await httpsRequest(this.port, 'POST', '/api/login', { body: { username, password } });
    if (r.status !== 200) throw new Error(`login ${username}: ${r.status} ${r.text}`);
    return r.json.token;
  }

  /** POST /api/appointments with an optional Bearer token; resolves {status, json}. */
  appointment(token, body) {
    const headers = token === undefined ? {} : { authorization: `Bearer ${token}` };
    return httpsRequest(this.port, 'POST', '/api/appointments', { body, headers });
  }

  get(urlPath) {
    return httpsRequest(this.port, 'GET', urlPath);
  }

  /** Runs `sqlite3 -json` on data/audit.db; resolves the rows (detail parsed into `details`). */
  async auditQuery(sql) {
    const db = path.join(this.dataDir, 'audit.db');
    if (!existsSync(db)) return [];
    const r = await run('sqlite3', ['-json', '-cmd', '.timeout 3000', db, sql]);
    if (r.code !== 0) throw new Error(`sqlite3 ${sql}: ${r.stderr}`);
    const rows = r.stdout.trim() ? JSON.parse(r.stdout) : [];
    for (const row of rows) {
      if (typeof row.detail === 'string') {
        try {
          row.details = JSON.parse(row.detail);
        } catch {
          row.details = undefined;
        }
      }
    }
    return rows;
  }

  /**
   * The audit events matching `where` (SQL over ts_ms, type, actor_role, actor_id, clinic,
   * consultation, outcome, source, detail), polled for up to `timeoutMs` because the audit
   * writer commits asynchronously, until `done(rows)` is true. Resolves the last rows read.
   */
  async audit(where = '1', { done = (rows) => rows.length > 0, timeoutMs = 3000 } = {}) {
    const sql =
      'select id, ts_ms, type, actor_role, actor_id, clinic, consultation, outcome, source, detail ' +
      `from events where ${where} order by id`;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const rows = await this.auditQuery(sql);
      if (done(rows) || Date.now() >= deadline) return rows;
      await sleep(100);
    }
  }

  /** Runs sqlite3 on data/accounts.db (for tests that age a token). */
  async accountsSql(sql) {
    const r = await run('sqlite3', ['-cmd', '.timeout 3000', path.join(this.dataDir, 'accounts.db'), sql]);
    if (r.code !== 0) throw new Error(`sqlite3 accounts ${sql}: ${r.stderr}`);
    return r.stdout;
  }

  /** `tabib user ARGS... --data-dir DATA` while the server runs. */
  user(args) {
    return run(BINARY, ['user', ...args, '--data-dir', this.dataDir]);
  }

  /**
   * SIGTERM, then waits for the exit (SIGKILL only if it has not exited after
   * STOP_TIMEOUT_MS). Resolves {code, signal, stderr, ms}.
   */
  async stop({ keepDir = false } = {}) {
    const t0 = Date.now();
    if (!this.exited) {
      try {
        process.kill(this.pid, 'SIGTERM');
      } catch {
        /* already gone */
      }
      const timer = setTimeout(() => {
        if (!this.exited) {
          try {
            process.kill(this.pid, 'SIGKILL');
          } catch {
            /* gone */
          }
        }
      }, STOP_TIMEOUT_MS);
      await this.exit;
      clearTimeout(timer);
    }
    const result = { ...this.exited, stderr: this.stderr(), ms: Date.now() - t0 };
    if (!keepDir) this.cleanup();
    return result;
  }

  /**
   * Stops the server and checks the stop was clean: exit status 0 on SIGTERM, no sanitizer
   * report, and the audit log closed with server_stopped {"status":0}. Resolves the stop result.
   */
  async stopCleanly(label = 'tabib') {
    const result = await this.stop({ keepDir: true });
    try {
      assertCleanExit(result, label);
      const rows = await this.audit(`type in ('server_started','server_stopped')`, { timeoutMs: 0 });
      const types = rows.map((r) => r.type);
      if (types[0] !== 'server_started' || types.at(-1) !== 'server_stopped')
        throw new Error(`${label}: audit log does not start and stop the server: ${types}`);
      if (rows.at(-1).details?.status !== 0) throw new Error(`${label}: server_stopped ${rows.at(-1).detail}`);
    } finally {
      this.cleanup();
    }
    return result;
  }

  /** Removes the temporary directory (unless TABIB_TEST_KEEP_TMP is set). */
  cleanup() {
    if (process.env.TABIB_TEST_KEEP_TMP && process.env.TABIB_TEST_KEEP_TMP !== '0') {
      process.stderr.write(`keeping ${this.dir}\n`);
      return;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Text of a sanitizer report in a server's stderr, or null. */
export function sanitizerReport(stderr) {
  const m = /(ERROR: (AddressSanitizer|LeakSanitizer)|runtime error:|SUMMARY: (Address|Leak|Undefined)\w*Sanitizer)[\s\S]{0,4000}/.exec(
    stderr,
  );
  return m ? m[0] : null;
}

/** Asserts a stop() result is a clean exit: status 0, no signal, no sanitizer report. */
export function assertCleanExit(result, label = 'tabib') {
  const report = sanitizerReport(result.stderr);
  if (report) throw new Error(`${label}: sanitizer report:\n${report}`);
  if (result.code !== 0 || result.signal) {
    throw new Error(
      `${label}: exited with code ${result.code} signal ${result.signal}\n--- stderr (tail) ---\n` +
        result.stderr.slice(-4000),
    );
  }
}

/**
 * Starts a server.
 *   clinics:  [{id, name_en, name_ar, queue_limit, hours}] written to the config file
 *             (none: the built-in demo clinics general and paediatrics)
 *   settings: top-level config file keys, e.g. {message_rate: 5}
 *   accounts: [{username, role: 'doctor'|'admin', clinics: ['a','b'] | undefined, password}]
 *             created with `tabib user add` before the server starts
 *   flags:    extra command-line flags, e.g. ['--grace-period-s', '2']
 * Resolves a TabibServer whose /readyz answered 200.
 */
export async function startServer({ clinics, settings, accounts = [], flags = [] } = {}) {
  if (!existsSync(BINARY)) throw new Error(`no tabib binary at ${BINARY} (set TABIB_BINARY)`);
  const dir = mkdtempSync(path.join(os.tmpdir(), 'tabib-proto-'));
  const dataDir = path.join(dir, 'data');
  const configPath = path.join(dir, 'tabib.conf');
  writeFileSync(configPath, configText(settings, clinics));
  const pwFile = path.join(dir, 'password');
  for (const a of accounts) {
    writeFileSync(pwFile, `${a.password ?? PASSWORD}\n`, { mode: 0o600 });
    const args = ['user', 'add', a.username, '--role', a.role];
    if (a.clinics && a.clinics.length) args.push('--clinics', a.clinics.join(','));
    args.push('--password-file', pwFile, '--data-dir', dataDir);
    const r = await run(BINARY, args, { cwd: dir });
    if (r.code !== 0) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`tabib ${args.join(' ')}: exit ${r.code}: ${r.stderr}`);
    }
  }
  rmSync(pwFile, { force: true });

  // Free ports can be taken by someone else between the look-up and the bind: try again then.
  let lastError;
  for (let attempt = 0; attempt < 4; attempt++) {
    const port = await freeTcpPort();
    const mediaPort = await freeUdpPort();
    const args = [
      '--listen', `${HOST}:${port}`,
      '--media-port', String(mediaPort),
      '--media-workers', '1',
      '--data-dir', dataDir,
      '--certs-dir', path.join(dir, 'certs'),
      '--config', configPath,
      ...flags,
    ];
    const out = openSync(path.join(dir, 'stdout.log'), 'w');
    const err = openSync(path.join(dir, 'stderr.log'), 'w');
    const proc = spawn(BINARY, args, { cwd: dir, env: childEnv(), stdio: ['ignore', out, err] });
    closeSync(out);
    closeSync(err);
    const srv = new TabibServer(dir, port, mediaPort, proc);
    running.add(srv);
    srv.args = args;
    const deadline = Date.now() + READY_TIMEOUT_MS;
    let ready = false;
    while (!srv.exited && Date.now() < deadline) {
      try {
        const r = await httpsRequest(port, 'GET', '/readyz', { timeoutMs: 2000 });
        if (r.status === 200) {
          ready = true;
          break;
        }
      } catch {
        /* not listening yet */
      }
      await sleep(50);
    }
    if (ready) return srv;
    if (!srv.exited) {
      await srv.stop({ keepDir: true });
      throw new Error(`tabib did not become ready in ${READY_TIMEOUT_MS} ms:\n${srv.stderr().slice(-4000)}`);
    }
    lastError = new Error(`tabib exited (${srv.exited.code}) before it was ready:\n${srv.stderr().slice(-4000)}`);
    if (srv.exited.code === 2) break; // a bad command line: trying again will not help
  }
  rmSync(dir, { recursive: true, force: true });
  throw lastError;
}
