// Starts Debian's Chromium headless through playwright-core (no browser
// download: the binary is /usr/bin/chromium, or $CHROMIUM) with a fresh
// profile, and records every request the page makes so a test can assert
// that nothing leaves the daemon's origin.

import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chromium } from 'playwright-core';

export const CHROMIUM = process.env.CHROMIUM || '/usr/bin/chromium';

const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
  '--disable-dev-shm-usage'];

export async function openBrowser({ colorScheme = 'dark' } = {}) {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-ui-profile-'));
  const ctx = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM, headless: true, args: ARGS, colorScheme,
    viewport: { width: 1280, height: 900 }, timeout: 30000,
  });
  ctx.setDefaultTimeout(15000);
  const page = ctx.pages()[0] || await ctx.newPage();
  const seen = { requests: [], errors: [] };
  // A Content-Security-Policy violation is an error of the page, whether or
  // not the browser also logs it: every document reports it on the console.
  await ctx.addInitScript(() => document.addEventListener('securitypolicyviolation', (e) => {
    console.error(`CSP violation: ${e.violatedDirective} blocked ${e.blockedURI || 'inline'} at ${e.sourceFile}:${e.lineNumber}`);
  }));
  page.on('request', (r) => seen.requests.push(r.url()));
  page.on('pageerror', (e) => seen.errors.push(String(e)));
  page.on('console', (m) => { if (m.type() === 'error') seen.errors.push(m.text()); });
  return {
    page, seen,
    async close() {
      await ctx.close().catch(() => {});
      fs.rmSync(profile, { recursive: true, force: true });
    },
  };
}
