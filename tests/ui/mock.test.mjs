// The web UI against tests/ui/mock-daemon.mjs in headless Chromium: the
// whole user story, the token prompt, and the error text of a failed job.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMock } from './mock-daemon.mjs';
import { openBrowser } from './browser.mjs';
import { runStory, discardStory, assertLocalOnly, jobCard, until } from './scenario.mjs';

const here = path.dirname(fileURLToPath(import.meta.url));
const uiDir = path.resolve(here, '../../ui');
const buildDir = process.env.RBEE_BUILD || path.resolve(here, '../../build');

let browser;
before(async () => { browser = await openBrowser(); });
after(async () => { await browser?.close(); });

test('pull, watch, cancel, retry, delete against the mock API', { timeout: 120000 }, async () => {
  const mock = await startMock({ uiDir });
  try {
    await runStory(browser.page, {
      url: mock.url, repo: 'test-org/tiny-GGUF', firstTag: 'Q4_K_M', secondTag: 'Q8_0',
      expectResume: true, screenshot: path.join(buildDir, 'ui-screenshot-mock.png'),
    });
    assertLocalOnly(browser.seen, mock.url);
    assert.deepEqual(browser.seen.errors, []);
    assert.ok(mock.requests.some((r) => r.startsWith('DELETE /v1/models/hf%3Atest-org')),
      'the model id is URL-encoded in DELETE');
  } finally {
    await mock.close();
  }
});

test('a daemon that wants a token: the page asks, then works', { timeout: 60000 }, async () => {
  const mock = await startMock({ uiDir, token: 's3cret-token' });
  const { page } = browser;
  try {
    await page.goto(mock.url);
    await page.locator('#token-panel[data-required]').waitFor();
    assert.match(await page.innerText('#token-note'), /requires a bearer token/);
    assert.equal(await page.getAttribute('#conn', 'data-state'), 'auth');
    await page.fill('#token-input', 's3cret-token');
    await page.click('#token-form button[type="submit"]');
    await until('connected', async () => await page.getAttribute('#conn', 'data-state') === 'ok');
    assert.ok(await page.locator('#token-panel').isHidden());
    await page.fill('#ref-input', 'test-org/tiny-GGUF');
    await page.click('#pull-btn');
    const card = jobCard(page, 'test-org/tiny-GGUF').first();
    await until('the job to finish', async () => await card.getAttribute('data-state') === 'done', 30000);
    assert.equal(await page.evaluate(() => sessionStorage.getItem('rbee-hive.token')), 's3cret-token');
  } finally {
    await page.evaluate(() => sessionStorage.clear()).catch(() => {});
    await mock.close();
  }
});

test('a failed job shows its error text and offers a retry; a bad ref is reported', { timeout: 60000 }, async () => {
  const mock = await startMock({ uiDir });
  const { page } = browser;
  try {
    await page.goto(mock.url);
    await page.fill('#ref-input', 'hf:test-org/broken:Q4_K_M');
    await page.click('#pull-btn');
    const card = jobCard(page, 'test-org/broken').first();
    await until('the job to fail', async () => await card.getAttribute('data-state') === 'failed', 30000);
    assert.match(await card.locator('.job-error').innerText(), /sha256 mismatch/);
    assert.equal(await card.locator('button[data-action="retry"]').count(), 1);
    const row = page.locator('#recent-body tr[data-state="failed"]', { hasText: 'test-org/broken' });
    await row.waitFor();
    assert.match(await row.innerText(), /sha256 mismatch/);

    await page.fill('#ref-input', '');
    await page.click('#pull-btn');
    assert.match(await page.innerText('#pull-error'), /Enter a model reference/);
    await page.fill('#ref-input', 'https://example.invalid/x.gguf');
    await page.click('#browse-btn');
    assert.match(await page.innerText('#pull-error'), /Hugging Face repo/);
    await page.fill('#ref-input', 'other-org/missing');
    await page.click('#browse-btn');
    await page.locator('#files .error-text', { hasText: 'not found' }).waitFor();
  } finally {
    await mock.close();
  }
});

test('the pull form takes Ollama and OCI refs as they are', { timeout: 60000 }, async () => {
  const mock = await startMock({ uiDir });
  const { page } = browser;
  try {
    await page.goto(mock.url);
    for (const ref of ['ollama:llama3.2:1b', 'oci://127.0.0.1:5000/ai/smollm2:Q4_K_M',
      'docker.io/ai/gemma3']) {
      await page.fill('#ref-input', ref);
      await page.click('#browse-btn');
      assert.match(await page.innerText('#pull-error'), /pulled by name and tag/);
      await page.click('#pull-btn');
      const card = jobCard(page, ref).first();
      await until(`${ref} to finish`, async () => await card.getAttribute('data-state') === 'done', 30000);
      assert.ok(mock.requests.some((r) => r === 'POST /v1/jobs'), mock.requests.join('\n'));
    }
    // No listing was asked for a registry ref.
    assert.ok(!mock.requests.some((r) => r.startsWith('GET /v1/sources')), mock.requests.join('\n'));
  } finally {
    await mock.close();
  }
});

test('a stream that drops is resumed with Last-Event-ID and the job still completes', { timeout: 60000 }, async () => {
  const mock = await startMock({ uiDir, dropStreamAfter: 8 });
  const { page } = browser;
  try {
    await page.goto(mock.url);
    await page.fill('#ref-input', 'hf:test-org/tiny-GGUF:Q4_K_M');
    await page.click('#pull-btn');
    const card = jobCard(page, 'tiny-GGUF:Q4_K_M').first();
    await until('the job to finish', async () => await card.getAttribute('data-state') === 'done', 30000);
    const resumed = mock.requests.filter((r) => r.startsWith('resume '));
    assert.equal(resumed.length, 1, mock.requests.join('\n'));
    assert.match(resumed[0], /after [1-9]/);
    assert.match(await card.innerText(), /100%/);
  } finally {
    await mock.close();
  }
});

test('the partial download a cancelled pull left is listed and discarded', { timeout: 60000 }, async () => {
  const mock = await startMock({ uiDir });
  const errors = browser.seen.errors.length;
  try {
    await discardStory(browser.page, { url: mock.url, ref: 'hf:test-org/tiny-GGUF:F16', repo: 'test-org/tiny-GGUF' });
    assert.ok(mock.requests.includes('discarded hf:test-org/tiny-GGUF:F16'), mock.requests.join('\n'));
    assert.ok(mock.requests.some((r) => /^DELETE \/v1\/partials\/[0-9a-f]{64}$/.test(r)), mock.requests.join('\n'));
    assert.deepEqual(browser.seen.errors.slice(errors), []);
  } finally {
    await mock.close();
  }
});
