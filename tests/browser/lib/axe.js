// axe.js - accessibility checks with axe-core (npm) in the real page, and
// screenshots of each page state written as test artifacts.
//
// axe-core's source is evaluated through the DevTools protocol
// (page.evaluate), which the pages' Content-Security-Policy does not apply
// to: nothing is added to the page as a script element, and the server's
// CSP stays as strict in tests as in production.

import { readFileSync, mkdirSync } from 'node:fs';
import path from 'node:path';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const AXE_SOURCE = readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');
export const AXE_VERSION = require('axe-core/package.json').version;

const here = path.dirname(fileURLToPath(import.meta.url));

/** Where screenshots go: $TABIB_ARTIFACTS, else tests/browser/artifacts (git-ignored). */
export const ARTIFACTS = process.env.TABIB_ARTIFACTS ?? path.resolve(here, '../artifacts');

/** The rules of WCAG 2.0/2.1 levels A and AA, and axe's best practices that they imply. */
const TAGS = ['wcag2a', 'wcag2aa', 'wcag21a', 'wcag21aa'];

/**
 * Runs axe-core on the page as it is now. Resolves the violations, each as
 * "rule (impact): help - target, target..." lines, so that an assertion shows them.
 */
export async function axeViolations(page) {
  const loaded = await page.evaluate(() => typeof window.axe !== 'undefined');
  if (!loaded) await page.evaluate(AXE_SOURCE);
  const result = await page.evaluate(
    (tags) => window.axe.run(document, { runOnly: { type: 'tag', values: tags }, resultTypes: ['violations'] }),
    TAGS,
  );
  return result.violations.map(
    (v) => `${v.id} (${v.impact}): ${v.help} - ${v.nodes.map((n) => n.target.join(' ')).slice(0, 5).join(', ')}`,
  );
}

/** Saves a full-page screenshot as ARTIFACTS/<name>.png; resolves the path. */
export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  const file = path.join(ARTIFACTS, `${name.replace(/[^a-z0-9._-]+/gi, '-')}.png`);
  await page.screenshot({ path: file, fullPage: true });
  return file;
}
