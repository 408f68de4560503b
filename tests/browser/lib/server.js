// server.js - the real `tabib` binary for the browser tests.
//
// The protocol tests' launcher (tests/protocol/lib/server.js: temporary data dir,
// accounts made with `tabib user add`, free 127.0.0.1 ports, /readyz) with the
// settings a browser needs on top: the test pages as the web root, and the
// loopback address advertised in the media relay's ICE candidates.

import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startServer, assertCleanExit, BINARY, PASSWORD } from '../../protocol/lib/server.js';

export { BINARY, PASSWORD, assertCleanExit };

const here = path.dirname(fileURLToPath(import.meta.url));

/** tests/browser/pages: patient.html, doctor.html, direct.html and their modules. */
export const PAGES_DIR = path.resolve(here, '../pages');

export const DOCTOR = { username: 'dr.browser', role: 'doctor', clinics: ['general'], password: PASSWORD };

/**
 * Starts tabib on free loopback ports with the demo clinics, serving PAGES_DIR, advertising
 * 127.0.0.1 for media, with one doctor account (DOCTOR). Resolves a TabibServer
 * (see tests/protocol/lib/server.js): .port, .mediaPort, .stderr(), .stop().
 */
export function startMediaServer({ flags = [] } = {}) {
  return startServer({
    accounts: [DOCTOR],
    flags: ['--web-root', PAGES_DIR, '--public-ip', '127.0.0.1', '--log-level', 'debug', ...flags],
  });
}
