// The web UI served by the real daemon (`rbee-hive serve`), downloading from
// the fake hub (tests/ui/hub.py), in headless Chromium. Saves a screenshot
// of the page mid-download to $RBEE_BUILD/ui-screenshot.png.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';
import { openBrowser } from './browser.mjs';
import { runStory, discardStory, assertLocalOnly, until } from './scenario.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const buildDir = path.resolve(process.env.RBEE_BUILD || path.join(here, '../../build'));
const binary = path.join(buildDir, 'rbee-hive');
const PYTHON = process.env.PYTHON3 || 'python3';
const STARTUP_MS = 30000;
const RATE = 3000000; // bytes per second

// Reads a child's output line by line, keeping it for failure messages.
function lines(child, log) {
  const wanted = [];
  for (const s of [child.stdout, child.stderr]) {
    readline.createInterface({ input: s }).on('line', (l) => {
      log.push(l);
      for (const w of wanted) w(l);
    });
  }
  return (match, what) => new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`timed out waiting for ${what}:\n${log.join('\n')}`)), STARTUP_MS);
    const check = (l) => {
      const m = match(l);
      if (m) { clearTimeout(t); resolve(m); }
    };
    log.forEach(check);
    wanted.push(check);
    child.on('exit', (code) => { clearTimeout(t); reject(new Error(`${what}: exited with ${code}:\n${log.join('\n')}`)); });
  });
}

function stop(child) {
  if (!child || child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const k = setTimeout(() => child.kill('SIGKILL'), 5000);
    child.once('exit', () => { clearTimeout(k); resolve(); });
    child.kill('SIGTERM');
  });
}

function serveAvailable() {
  if (!fs.existsSync(binary)) return false;
  const r = spawnSync(binary, ['serve', '--help'], { encoding: 'utf8', timeout: 10000 });
  return !/unknown command/.test(`${r.stdout}${r.stderr}`);
}

// Starts `rbee-hive serve` on an ephemeral port with its data under dir,
// downloading from the fake hub; resolves to {child, url} once /health answers.
async function startDaemon(dir, extra, log) {
  fs.mkdirSync(dir, { recursive: true });
  const portFile = path.join(dir, 'port');
  const child = spawn(binary, ['serve', '--port', '0', '--data-dir', path.join(dir, 'data'),
    '--port-file', portFile, ...extra], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, HF_ENDPOINT: hubUrl, HF_TOKEN: '', HF_HOME: path.join(dir, 'hf-home'),
      RBEE_HIVE_HOME: path.join(dir, 'data') },
  });
  lines(child, log);
  try {
    const port = await until('the daemon port file', () => {
      try { return Number(fs.readFileSync(portFile, 'utf8').trim()) || null; } catch { return null; }
    }, STARTUP_MS, 50);
    const base = `http://127.0.0.1:${port}`;
    await until('the daemon health', async () => {
      try { return (await fetch(`${base}/health`)).ok; } catch { return false; }
    }, STARTUP_MS, 100);
    return { child, url: base };
  } catch (e) {
    await stop(child);
    throw new Error(`${e.message}\n${log.join('\n')}`);
  }
}

let tmp;
let hub;
let daemon;
let browser;
const logs = { hub: [], daemon: [] };
let url;
let hubUrl;

const skip = serveAvailable() ? false : `${binary} has no 'serve' command`;

before(async () => {
  if (skip) return;
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rbee-ui-'));
  hub = spawn(PYTHON, [path.join(here, 'hub.py'), path.join(tmp, 'hub')], { stdio: ['ignore', 'pipe', 'pipe'] });
  hubUrl = await lines(hub, logs.hub)((l) => { try { return JSON.parse(l).hub; } catch { return null; } },
    'the fake hub');
  // --limit-rate keeps each download a few seconds long, so the bar can be
  // watched and the second pull cancelled halfway.
  ({ child: daemon, url } = await startDaemon(path.join(tmp, 'main'), ['--limit-rate', String(RATE)], logs.daemon));
  browser = await openBrowser();
});

after(async () => {
  await browser?.close();
  await stop(daemon);
  await stop(hub);
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

test('the daemon serves the page and its assets', { skip, timeout: 30000 }, async () => {
  for (const [p, type] of [['/', 'text/html'], ['/app.js', 'javascript'], ['/style.css', 'text/css']]) {
    const r = await fetch(`${url}${p}`);
    assert.equal(r.status, 200, p);
    assert.match(r.headers.get('content-type'), new RegExp(type), p);
    assert.equal(r.headers.get('x-frame-options'), 'DENY', p);
    assert.match(r.headers.get('content-security-policy'), /frame-ancestors 'none'/, p);
    assert.match(r.headers.get('content-security-policy'), /default-src 'self'/, p);
  }
});

test('no other page can frame the page', { skip, timeout: 30000 }, async () => {
  const { page } = browser;
  const before = browser.seen.errors.length;
  await page.setContent(`<iframe id="f" src="${url}/"></iframe>`);
  await until('the frame to settle', async () => page.frames().length > 1, 10000);
  await new Promise((r) => setTimeout(r, 1000));
  for (const f of page.frames().slice(1)) {
    const form = await f.$('#pull-form').catch(() => null);
    assert.equal(form, null, `the page loaded inside a frame (${f.url()})`);
  }
  // Only the refusal itself was reported; forget it for the next tests.
  assert.ok(browser.seen.errors.slice(before).every((e) => /frame-ancestors|frame/i.test(e)),
    browser.seen.errors.slice(before).join('\n'));
  browser.seen.errors.length = before;
  await page.goto('about:blank');
});

test('pull, watch, cancel, retry, delete through the real daemon', { skip, timeout: 240000 }, async () => {
  try {
    await runStory(browser.page, {
      url, repo: 'test-org/tiny-GGUF', firstTag: 'Q4_K_M', secondTag: 'Q8_0',
      expectResume: true, screenshot: path.join(buildDir, 'ui-screenshot.png'), ms: 90000,
    });
    assertLocalOnly(browser.seen, url);
    assert.deepEqual(browser.seen.errors, []);
  } catch (e) {
    await browser.page.screenshot({ path: path.join(buildDir, 'ui-failure.png'), fullPage: true }).catch(() => {});
    e.message += `\n--- daemon log (last 40 lines) ---\n${logs.daemon.slice(-40).join('\n')}`;
    throw e;
  }
});

test('the partial download a cancelled pull left is listed and discarded', { skip, timeout: 120000 }, async () => {
  const sha = await discardStory(browser.page, { url, ref: 'hf:test-org/tiny-GGUF:Q4_K_M', repo: 'test-org/tiny-GGUF', ms: 60000 });
  const left = (await (await fetch(`${url}/v1/partials`)).json()).partials;
  assert.deepEqual(left.filter((p) => p.sha256 === sha), []);
  const blobs = path.join(tmp, 'main', 'data', 'hub', 'models--test-org--tiny-GGUF', 'blobs');
  assert.ok(!fs.existsSync(path.join(blobs, `${sha}.partial`)), 'the partial file is gone');
});

test('a daemon started with --token-file: the page asks for the token, then works', { skip, timeout: 60000 }, async () => {
  const dir = path.join(tmp, 'token');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'token'), 'ui-test-token-0123456789\n', { mode: 0o600 });
  const { child: guarded, url: gurl } = await startDaemon(dir, ['--token-file', path.join(dir, 'token')], []);
  const { page } = browser;
  try {
    assert.equal((await fetch(`${gurl}/v1/models`)).status, 401);
    await page.goto(gurl);
    await page.locator('#token-panel[data-required]').waitFor();
    assert.equal(await page.getAttribute('#conn', 'data-state'), 'auth');
    await page.fill('#token-input', 'ui-test-token-0123456789');
    await page.click('#token-form button[type="submit"]');
    await until('connected with the token', async () => await page.getAttribute('#conn', 'data-state') === 'ok');
    await page.locator('#catalog-empty:not([hidden])').waitFor();
    // A job and its stream need the token too; an unknown repo fails cleanly.
    await page.fill('#ref-input', 'no-org/no-repo');
    await page.click('#pull-btn');
    const card = page.locator('#live-jobs li.job', { has: page.locator('.job-ref', { hasText: 'no-org/no-repo' }) });
    await until('the job to fail', async () => await card.getAttribute('data-state') === 'failed', 30000);
    assert.match(await card.locator('.job-error').innerText(), /no-org\/no-repo/);
  } finally {
    await page.evaluate(() => sessionStorage.clear()).catch(() => {});
    await stop(guarded);
  }
});
