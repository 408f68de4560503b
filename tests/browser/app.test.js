// app.test.js - the web app (web/) in real Chromium against the real server:
// the whole story of a consultation, two doctors racing for one queue, and
// axe-core on every page state in English and Arabic, at phone and desktop
// sizes, with screenshots of each written as test artifacts.
//
// Runs inside the private network namespace of run-in-netns.sh (loopback
// only); the patient's network is cut there with nft and restored.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';

import { writeToneWav } from './lib/wav.js';
import { assertPrivateNetworkNamespace, launchChromium } from './lib/browser.js';
import { axeViolations, screenshot, AXE_VERSION, ARTIFACTS } from './lib/axe.js';
import { startServer, assertCleanExit, PASSWORD } from '../protocol/lib/server.js';
import { joinAs } from '../protocol/lib/client.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const WEB_ROOT = path.resolve(here, '../../web');
const PHONE = { width: 360, height: 740 };
const DESKTOP = { width: 1280, height: 800 };
const PATIENT_NAME = 'مريم الكعبي';
// nft (Debian's nftables) is in /usr/sbin, which a non-root PATH may lack.
const NFT = process.env.NFT ?? (existsSync('/usr/sbin/nft') ? '/usr/sbin/nft' : 'nft');

let tmp;
let server;
let patientChrome;
let staffChrome;
const a11y = []; // {state, lang, size, violations}

before(async () => {
  assertPrivateNetworkNamespace();
  tmp = mkdtempSync(path.join(os.tmpdir(), 'tabib-app-'));
  const patientWav = path.join(tmp, 'patient.wav');
  const doctorWav = path.join(tmp, 'doctor.wav');
  writeToneWav(patientWav, { hz: 440 });
  writeToneWav(doctorWav, { hz: 880 });
  [patientChrome, staffChrome, server] = await Promise.all([
    launchChromium({ label: 'patient', fakeAudioFile: patientWav }),
    launchChromium({ label: 'staff', fakeAudioFile: doctorWav }),
    startServer({
      accounts: [
        { username: 'dr.amal', role: 'doctor', clinics: ['general', 'paediatrics'] },
        { username: 'dr.badr', role: 'doctor', clinics: ['general', 'paediatrics'] },
        { username: 'dr.race1', role: 'doctor', clinics: ['paediatrics'] },
        { username: 'dr.race2', role: 'doctor', clinics: ['paediatrics'] },
        { username: 'boss', role: 'admin' },
      ],
      flags: ['--web-root', WEB_ROOT, '--public-ip', '127.0.0.1', '--grace-period-s', '60'],
    }),
  ]);
  console.log(`Chromium ${patientChrome.browser.version()}, axe-core ${AXE_VERSION}; artifacts in ${ARTIFACTS}`);
});

after(async () => {
  await Promise.allSettled([patientChrome?.close(), staffChrome?.close()]);
  if (server) assertCleanExit(await server.stop());
  if (tmp) rmSync(tmp, { recursive: true, force: true });
  for (const line of [...(patientChrome?.log ?? []), ...(staffChrome?.log ?? [])].slice(-60)) console.log(line);
});

/** A page in its own context: camera and microphone granted, at `viewport`. */
async function newPage(chrome, viewport, urlPath) {
  const origin = `https://127.0.0.1:${server.port}`;
  const context = await chrome.browser.newContext({ ignoreHTTPSErrors: true, viewport, acceptDownloads: true });
  await context.grantPermissions(['camera', 'microphone'], { origin });
  const page = await context.newPage();
  page.on('console', (m) => chrome.log.push(`[${chrome.label} ${m.type()}] ${m.text()}`));
  page.on('pageerror', (e) => chrome.log.push(`[${chrome.label} pageerror] ${e.stack ?? e}`));
  const response = await page.goto(origin + urlPath, { waitUntil: 'load' });
  assert.equal(response.status(), 200, urlPath);
  return page;
}

const appState = (page) => page.evaluate(() => JSON.parse(JSON.stringify(window.tabibApp?.state ?? {})));

async function waitForScreen(page, screen, timeout = 15000) {
  await page.waitForFunction((s) => window.tabibApp?.state?.screen === s, screen, { timeout });
}

async function currentLang(page) {
  return page.evaluate(() => document.documentElement.lang);
}

/** Switches the page's language with its own button, and checks the document says so. */
async function setLang(page, lang) {
  if ((await currentLang(page)) === lang) return;
  await page.locator('#lang-switch').click();
  await page.waitForFunction((l) => document.documentElement.lang === l, lang);
  assert.equal(await page.evaluate(() => document.documentElement.dir), lang === 'ar' ? 'rtl' : 'ltr');
}

/**
 * axe-core and a screenshot of the page as it is, in both languages (or `langs`) and at
 * both sizes; the page is put back in its language and size afterwards.
 */
async function checkState(page, name, { langs = ['en', 'ar'] } = {}) {
  const lang = await currentLang(page);
  const size = page.viewportSize();
  for (const l of langs) {
    await setLang(page, l);
    for (const [label, vp] of [
      ['360x740', PHONE],
      ['1280x800', DESKTOP],
    ]) {
      await page.setViewportSize(vp);
      await sleep(150); // layout settles
      const violations = await axeViolations(page);
      a11y.push({ state: name, lang: l, size: label, violations });
      await screenshot(page, `${name}-${l}-${label}`);
    }
  }
  await setLang(page, lang);
  await page.setViewportSize(size);
}

/** getStats through the page's leg: what it receives. */
const stats = (page) => page.evaluate(() => window.tabibApp.leg.stats());

/** Both ways: video frames decoded and audio samples received grow over `ms`. */
async function assertMediaFlows(page, who, ms = 3000) {
  const a = await stats(page);
  await sleep(ms);
  const b = await stats(page);
  const frames = (b.video?.framesDecoded ?? 0) - (a.video?.framesDecoded ?? 0);
  const samples = (b.audio?.totalSamplesReceived ?? 0) - (a.audio?.totalSamplesReceived ?? 0);
  console.log(`${who}: ${frames} frames decoded, ${samples} audio samples in ${ms} ms; ${b.video?.frameWidth}x${b.video?.frameHeight}`);
  assert.ok(frames > (ms / 1000) * 5, `${who} decodes video (${frames} frames)`);
  assert.ok(samples > (ms / 1000) * 24000, `${who} hears audio (${samples} samples)`);
  return b;
}

function run(cmd, args) {
  return new Promise((resolve) => execFile(cmd, args, (err, stdout, stderr) => resolve({ code: err ? err.code ?? 1 : 0, stdout, stderr })));
}

/** Drops every datagram to and from `udpPort` on lo (the namespace is ours alone). */
async function cutMedia(udpPort) {
  const rules = [
    ['add', 'table', 'inet', 'tabibcut'],
    ['add', 'chain', 'inet', 'tabibcut', 'in', '{ type filter hook input priority 0; }'],
    ['add', 'rule', 'inet', 'tabibcut', 'in', 'udp', 'sport', String(udpPort), 'drop'],
    ['add', 'rule', 'inet', 'tabibcut', 'in', 'udp', 'dport', String(udpPort), 'drop'],
  ];
  for (const r of rules) {
    const res = await run(NFT, r);
    assert.equal(res.code, 0, `nft ${r.join(' ')}: ${res.stderr}`);
  }
}

async function restoreNetwork() {
  const res = await run(NFT, ['delete', 'table', 'inet', 'tabibcut']);
  assert.equal(res.code, 0, res.stderr);
}

async function signIn(page, username) {
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(PASSWORD);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

test('the whole story: an Arabic phone patient, a doctor, a network drop, the end, the admin finds it', async () => {
  // The patient opens the clinic link on a phone and switches to Arabic.
  const patient = await newPage(patientChrome, PHONE, '/c/general');
  await waitForScreen(patient, 'consent');
  await patient.locator('#clinic-name', { hasText: 'General Practice' }).waitFor(); // named before joining
  await checkState(patient, 'patient-consent');
  await setLang(patient, 'ar');
  await patient.locator('#consent-agree').click();
  await waitForScreen(patient, 'devices');
  await patient.waitForFunction(() => window.tabibApp.state.devices === 'ok', null, { timeout: 15000 });
  await checkState(patient, 'patient-devices');
  await patient.getByLabel('اسمك').fill(PATIENT_NAME);
  await patient.getByRole('button', { name: 'انضم إلى قائمة الانتظار' }).click();
  await waitForScreen(patient, 'waiting');
  // The self-test: their own media back through the relay.
  await assertMediaFlows(patient, 'patient self-test');
  const consultation = (await appState(patient)).consultation;
  assert.match(consultation, /^c_/);
  await checkState(patient, 'patient-waiting');

  // A doctor signs in, goes on duty, sees the patient ready and calls next.
  const doctor = await newPage(staffChrome, DESKTOP, '/doctor');
  await waitForScreen(doctor, 'sign-in');
  await checkState(doctor, 'doctor-sign-in');
  await signIn(doctor, 'dr.amal');
  await waitForScreen(doctor, 'queue');
  await doctor.getByRole('checkbox', { name: /General/ }).check();
  await doctor.getByText(PATIENT_NAME).waitFor();
  await checkState(doctor, 'doctor-queue');
  await doctor.getByRole('button', { name: 'Call next patient' }).first().click();
  await waitForScreen(patient, 'called');
  await checkState(patient, 'patient-called');
  await patient.locator('#answer-button').click();
  await waitForScreen(patient, 'consultation');
  await waitForScreen(doctor, 'consultation');
  // Both see and hear each other.
  await assertMediaFlows(patient, 'patient');
  await assertMediaFlows(doctor, 'doctor');
  await checkState(patient, 'patient-consultation');
  await checkState(doctor, 'doctor-consultation');

  // The patient's network goes away (media dropped on lo, the browser offline: its
  // WebSocket goes), for 8 s, then comes back.
  const pair = (await stats(patient)).pair;
  const udpPort = pair?.localCandidate?.port ?? Number(String(pair?.local).split(':').pop());
  assert.ok(udpPort > 0, `the patient's media port (${JSON.stringify(pair)})`);
  console.log(`cutting the patient off: udp ${udpPort} dropped, the browser offline`);
  await cutMedia(udpPort);
  await patient.context().setOffline(true);
  await patient.waitForFunction(() => window.tabibApp.state.connection !== 'open', null, { timeout: 30000 });
  assert.ok(await patient.locator('#banner').isVisible(), 'the patient sees that it reconnects');
  const cutAt = Date.now();
  await checkState(patient, 'patient-reconnecting');
  await sleep(Math.max(0, 8000 - (Date.now() - cutAt)));
  await restoreNetwork();
  await patient.context().setOffline(false);
  // The consultation resumes by itself: same consultation, media both ways again.
  await waitForScreen(patient, 'consultation', 30000);
  await patient.waitForFunction(() => window.tabibApp.state.connection === 'open', null, { timeout: 30000 });
  assert.equal((await appState(patient)).consultation, consultation);
  await assertMediaFlows(patient, 'patient after the drop');
  await assertMediaFlows(doctor, 'doctor after the drop');

  // The doctor ends; the patient sees why.
  // The confirmation is modal (the language switch is behind it): each language on its own.
  await setLang(doctor, 'ar');
  await doctor.locator('#end-button').click();
  await doctor.locator('#end-cancel').waitFor();
  await checkState(doctor, 'doctor-end-dialog', { langs: ['ar'] });
  await doctor.locator('#end-cancel').click();
  await setLang(doctor, 'en');
  await doctor.getByRole('button', { name: 'End consultation' }).click();
  await doctor.getByRole('button', { name: 'Yes, end it' }).waitFor();
  await checkState(doctor, 'doctor-end-dialog', { langs: ['en'] });
  await doctor.getByRole('button', { name: 'Yes, end it' }).click();
  await waitForScreen(patient, 'ended');
  assert.equal((await appState(patient)).endReason, 'completed');
  await checkState(patient, 'patient-ended');
  await waitForScreen(doctor, 'queue');
  assert.ok(await doctor.getByRole('button', { name: 'Call next patient' }).first().isVisible());

  // An admin finds the session with its wait and duration, and exports it.
  const admin = await newPage(staffChrome, DESKTOP, '/admin');
  await waitForScreen(admin, 'sign-in');
  await checkState(admin, 'admin-sign-in');
  await signIn(admin, 'boss');
  await waitForScreen(admin, 'dashboard');
  await admin.getByText(PATIENT_NAME).first().waitFor({ timeout: 15000 });
  const found = (await appState(admin)).lastSearch.find((s) => s.consultation === consultation);
  assert.ok(found, 'the session is in the search');
  assert.equal(typeof found.wait_s, 'number');
  assert.ok(found.duration_s > 5, `duration ${found.duration_s}`);
  assert.equal(found.end_reason, 'completed');
  await checkState(admin, 'admin-dashboard');
  for (const [button, check] of [
    ['Export CSV', (text) => text.includes(consultation) && text.includes(PATIENT_NAME)],
    ['Export FHIR', (text) => JSON.parse(text).resourceType === 'Bundle' && text.includes(consultation)],
  ]) {
    const [download] = await Promise.all([admin.waitForEvent('download'), admin.getByRole('button', { name: button }).click()]);
    const file = path.join(tmp, download.suggestedFilename());
    await download.saveAs(file);
    assert.ok(check(readFileSync(file, 'utf8')), `${button}: ${file}`);
  }
  await admin.getByRole('button', { name: new RegExp(PATIENT_NAME) }).first().click();
  await admin.getByText(/consultation_started|Consultation started/).first().waitFor();
  await checkState(admin, 'admin-timeline');

  // The start page too.
  const index = await newPage(patientChrome, PHONE, '/');
  await checkState(index, 'index');

  // A patient whose browser refuses the camera and microphone gets help, not a dead end.
  // (The fake-media flags grant every request, so the refusal is made in the page.)
  const deniedContext = await patientChrome.browser.newContext({ ignoreHTTPSErrors: true, viewport: PHONE });
  await deniedContext.addInitScript(() => {
    navigator.mediaDevices.getUserMedia = () =>
      Promise.reject(new DOMException('Permission denied', 'NotAllowedError'));
  });
  const denied = await deniedContext.newPage();
  await denied.goto(`https://127.0.0.1:${server.port}/c/general`);
  await waitForScreen(denied, 'consent');
  await denied.locator('#consent-agree').click();
  await denied.waitForFunction(() => window.tabibApp.state.devices === 'error', null, { timeout: 15000 });
  assert.ok(await denied.locator('#device-error').isVisible(), 'the help is shown');
  await checkState(denied, 'patient-devices-denied');
  await deniedContext.close();

  const failures = a11y.filter((x) => x.violations.length);
  console.log(`axe-core ${AXE_VERSION}: ${a11y.length} checks (states x languages x sizes), ${failures.length} with violations`);
  for (const f of failures) console.log(`  ${f.state} ${f.lang} ${f.size}:\n    ${f.violations.join('\n    ')}`);
  assert.equal(failures.length, 0);
});

test('two doctors press "Call next patient" at once: each gets a different patient', async () => {
  const p1 = await joinAs(server.port, 'paediatrics', 'Patient One');
  const p2 = await joinAs(server.port, 'paediatrics', 'Patient Two');
  const doctors = [];
  for (const name of ['dr.race1', 'dr.race2']) {
    const page = await newPage(staffChrome, DESKTOP, '/doctor');
    await waitForScreen(page, 'sign-in');
    await signIn(page, name);
    await waitForScreen(page, 'queue');
    await page.getByRole('checkbox', { name: /Paediatrics/ }).check();
    await page.getByText('Patient Two').waitFor();
    doctors.push(page);
  }
  const buttons = doctors.map((page) => page.getByRole('button', { name: 'Call next patient' }).first());
  await Promise.all(buttons.map((b) => b.click()));
  const called = [];
  for (const page of doctors) {
    await page.waitForFunction(() => window.tabibApp.state.consultation, null, { timeout: 10000 });
    called.push((await appState(page)).consultation.id ?? (await appState(page)).consultation);
  }
  console.log(`called: ${called.join(', ')}`);
  assert.notEqual(called[0], called[1]);
  assert.deepEqual([...called].sort(), [p1.consultation, p2.consultation].sort());
  p1.close();
  p2.close();
});
