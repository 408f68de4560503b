// browser.js - Debian's Chromium, driven by playwright-core, with fake media.
//
// One Chromium process per side of the call: the fake microphone's file
// (--use-file-for-fake-audio-capture) is a command-line flag, so a patient
// hearing 880 Hz and a doctor hearing 440 Hz need two browsers. Each gets a
// temporary HOME (Debian's Chromium writes to ~/.config and ~/.cache) removed
// by close(). Nothing is ever downloaded: the browser is /usr/bin/chromium
// (or $CHROMIUM), never Playwright's own build.

import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';

// playwright-core is installed into tests/browser/node_modules from package-lock.json.
let chromium;
try {
  ({ chromium } = await import('playwright-core'));
} catch (err) {
  throw new Error(
    'tests/browser/node_modules is missing (the npm package "playwright-core" cannot be loaded): ' +
      'run `make node-deps`, or `cd tests/browser && npm ci --no-audit --no-fund`, first. ' +
      `(${err.code ?? err.message})`,
  );
}

export const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';

/** The flags every test browser runs with; a Y4M `fakeVideoFile` replaces the fake camera's pattern. */
export function chromiumArgs(fakeAudioFile, fakeVideoFile = null) {
  const args = [
    // Without it Chromium gathers no ICE candidate on lo, the only interface here.
    '--allow-loopback-in-peer-connection',
    '--use-fake-ui-for-media-stream', // grant getUserMedia without a prompt
    '--use-fake-device-for-media-stream', // the test camera (640x480, 20 fps) and microphone
    `--use-file-for-fake-audio-capture=${fakeAudioFile}`, // the microphone plays this file, looped
    '--ignore-certificate-errors', // tabib's self-signed certificate, for HTTPS and WSS
    '--autoplay-policy=no-user-gesture-required', // Web Audio and <video> run without a click
    '--no-first-run',
    '--no-default-browser-check',
    '--disable-background-timer-throttling',
    '--disable-renderer-backgrounding',
    '--disable-backgrounding-occluded-windows',
  ];
  // The camera plays this file, looped, at its own size and frame rate.
  if (fakeVideoFile) args.push(`--use-file-for-fake-video-capture=${fakeVideoFile}`);
  return args;
}

/**
 * Launches headless Chromium whose microphone plays `fakeAudioFile` (and whose camera
 * plays `fakeVideoFile`, when given). Resolves {browser, label, home, log, close()}:
 * `log` collects the pages' console lines.
 */
export async function launchChromium({ label, fakeAudioFile, fakeVideoFile = null }) {
  if (!existsSync(CHROMIUM)) {
    throw new Error(`no Chromium at ${CHROMIUM}: run scripts/install-deps (Debian package "chromium")`);
  }
  const home = mkdtempSync(path.join(os.tmpdir(), `tabib-chromium-${label}-`));
  const env = {
    ...process.env,
    HOME: home,
    XDG_CONFIG_HOME: path.join(home, '.config'),
    XDG_CACHE_HOME: path.join(home, '.cache'),
  };
  let browser;
  try {
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: chromiumArgs(fakeAudioFile, fakeVideoFile),
      env,
      timeout: 30000,
    });
  } catch (err) {
    rmSync(home, { recursive: true, force: true });
    throw err;
  }
  const log = [];
  return {
    browser,
    label,
    home,
    log,
    async close() {
      try {
        await browser.close();
      } finally {
        rmSync(home, { recursive: true, force: true });
      }
    },
  };
}

/**
 * A new context and page in `chrome` (from launchChromium) with camera and microphone granted
 * for `origin`, its console and errors copied into chrome.log. Resolves the page.
 */
export async function openPage(chrome, origin, urlPath) {
  const context = await chrome.browser.newContext({ ignoreHTTPSErrors: true });
  await context.grantPermissions(['camera', 'microphone'], { origin });
  const page = await context.newPage();
  const t0 = Date.now();
  const stamp = () => ((Date.now() - t0) / 1000).toFixed(1).padStart(5);
  page.on('console', (m) => chrome.log.push(`${stamp()} [${chrome.label} ${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => chrome.log.push(`${stamp()} [${chrome.label} pageerror] ${e.stack ?? e}`));
  page.on('crash', () => chrome.log.push(`${stamp()} [${chrome.label}] page crashed`));
  const response = await page.goto(origin + urlPath, { waitUntil: 'load', timeout: 15000 });
  if (!response || response.status() !== 200) {
    throw new Error(`GET ${urlPath}: ${response ? response.status() : 'no response'}`);
  }
  return page;
}

export /** Throws unless every network interface with an address is loopback. */
function assertPrivateNetworkNamespace() {
  const outside = [];
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    for (const a of addrs ?? []) if (!a.internal) outside.push(`${name} ${a.address}`);
  }
  if (outside.length) {
    throw new Error(
      `the browser tests run only in a private network namespace (see tests/browser/run-in-netns.sh), ` +
        `but this one has ${outside.join(', ')}`,
    );
  }
}
