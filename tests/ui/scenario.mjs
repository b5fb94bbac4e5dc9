// The user story of the web UI, shared by the mock and the real-daemon
// tests: list a repo's files, pull one through the form and watch the bar
// move, cancel a second pull, retry it to completion, delete a model.

import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Polls fn until it returns a truthy value or the time is up.
export async function until(what, fn, ms = 20000, every = 50) {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(every);
  }
}

export const jobCard = (page, ref) => page.locator('#live-jobs li.job', { has: page.locator('.job-ref', { hasText: ref }) });
const cardState = (card) => card.getAttribute('data-state').catch(() => null);
const barValue = async (card) => {
  const v = await card.locator('.bar').getAttribute('aria-valuenow').catch(() => null);
  return v === null ? null : Number(v);
};

// Watches a card's bar until it finishes; returns the distinct percentages
// seen while it moved.
async function watchBar(page, ref, { screenshot, ms }) {
  const card = jobCard(page, ref).first();
  const seen = [];
  let shot = false;
  await until(`${ref} to finish`, async () => {
    const v = await barValue(card);
    if (v !== null && seen[seen.length - 1] !== v) seen.push(v);
    if (screenshot && !shot && v !== null && v >= 15 && v <= 85 &&
        await card.locator('.stat-eta').count() > 0) {
      fs.mkdirSync(path.dirname(screenshot), { recursive: true });
      await page.screenshot({ path: screenshot, fullPage: true });
      shot = true;
    }
    return await cardState(card) === 'done';
  }, ms, 40);
  if (screenshot) assert.ok(shot, 'no mid-download moment to take the screenshot');
  return seen;
}

export async function runStory(page, o) {
  // o: url, repo, firstTag, secondTag, screenshot, expectResume, ms
  const ms = o.ms || 60000;
  await page.goto(o.url);
  await until('the connection indicator', async () =>
    await page.getAttribute('#conn', 'data-state') === 'ok');

  // The repo's GGUF files, grouped by quantization.
  await page.fill('#ref-input', o.repo);
  await page.click('#browse-btn');
  const group = page.locator('.quant-group', { has: page.locator(`input[data-tag="${o.firstTag}"]`) });
  await group.waitFor();
  const tags = await page.locator('.quant-group input').evaluateAll((els) => els.map((e) => e.dataset.tag));
  assert.ok(tags.includes(o.secondTag), `tags listed: ${tags}`);
  await group.locator('input').check();
  const ref1 = `hf:${o.repo}:${o.firstTag}`;
  assert.equal(await page.inputValue('#ref-input'), ref1);

  // First pull: the bar moves, the job ends done, the model is in the catalog.
  await page.click('#pull-btn');
  const seen = await watchBar(page, ref1, { ms });
  assert.ok(seen.length >= 3, `the bar should move through several values, saw ${seen}`);
  for (let i = 1; i < seen.length; i++) assert.ok(seen[i] >= seen[i - 1], `bar went back: ${seen}`);
  const row1 = page.locator('#catalog-body tr', { hasText: o.firstTag });
  await row1.waitFor();
  assert.match(await row1.innerText(), /Available/i);

  // Second pull, cancelled once it is under way.
  const ref2 = `hf:${o.repo}:${o.secondTag}`;
  await page.fill('#ref-input', ref2);
  await page.click('#pull-btn');
  const card2 = jobCard(page, ref2).first();
  // Cancelled a good way in, so that a resume is told apart from a restart.
  await until(`${ref2} to be downloading`, async () => (await barValue(card2)) >= 20, ms);
  await card2.locator('button[data-action="cancel"]').click();
  await until(`${ref2} to show cancelled`, async () => await cardState(card2) === 'cancelled');
  assert.match(await card2.locator('.badge').innerText(), /Cancelled/);
  const cancelledAt = await barValue(card2);
  const recentRow = page.locator('#recent-body tr[data-state="cancelled"]', { hasText: ref2 });
  await recentRow.waitFor();

  // Retry: a new job for the same ref that resumes and completes.
  await card2.locator('button[data-action="retry"]').click();
  const card3 = jobCard(page, ref2).first();
  await until('the retried job card', async () => {
    const s = await cardState(card3);
    return s && s !== 'cancelled';
  });
  if (o.expectResume) {
    // The first non-zero figure the retried job shows is already most of the
    // way to where the cancelled one stopped: it resumed instead of starting
    // over (a fresh start shows a few percent first). Zero is skipped: the
    // daemon may report the phase before it has read the resume state.
    const first = await until('the retried job to report progress', async () => {
      const v = await barValue(card3);
      return v ? { v } : (await cardState(card3)) === 'done' ? { v: 100 } : null;
    }, ms, 20);
    if (process.env.RBEE_UI_VERBOSE) console.log(`cancelled at ${cancelledAt}%, retry first showed ${first.v}%`);
    assert.ok(first.v >= cancelledAt / 2, `retry should resume near ${cancelledAt}%, started at ${first.v}%`);
  }
  // The screenshot is taken here, with a model in the catalog and a
  // cancelled job among the recent ones, so it shows every part of the page.
  await watchBar(page, ref2, { screenshot: o.screenshot, ms });
  const row2 = page.locator('#catalog-body tr', { hasText: o.secondTag });
  await row2.waitFor();

  // Delete asks first: "Keep" keeps the model, "Delete" removes it.
  const rows = await page.locator('#catalog-body tr').count();
  await row1.locator('button[data-action="delete"]').click();
  await page.locator('#confirm[open]').waitFor();
  await page.click('#confirm-no');
  await sleep(200);
  assert.equal(await page.locator('#catalog-body tr').count(), rows);
  await row1.locator('button[data-action="delete"]').click();
  await page.click('#confirm-yes');
  await until('the deleted row to go', async () =>
    await page.locator('#catalog-body tr').count() === rows - 1);
  assert.equal(await row1.count(), 0);
  assert.equal(await row2.count(), 1);
}

// Every request the page made stayed on the daemon's origin.
export function assertLocalOnly(seen, url) {
  const origin = new URL(url).origin;
  const foreign = seen.requests.filter((u) => !u.startsWith(origin) && !u.startsWith('data:'));
  assert.deepEqual(foreign, [], 'the page must not request anything outside the daemon');
}

// A pull cancelled under way leaves a partial download: the page lists it
// and discards it after asking (Keep keeps it). Resolves to its sha256.
export async function discardStory(page, o) {
  // o: url, ref, repo (as the list shows it), ms
  const ms = o.ms || 60000;
  await page.goto(o.url);
  await until('the connection indicator', async () =>
    await page.getAttribute('#conn', 'data-state') === 'ok');
  await page.fill('#ref-input', o.ref);
  await page.click('#pull-btn');
  const card = jobCard(page, o.ref).first();
  await until(`${o.ref} to be downloading`, async () => (await barValue(card)) >= 10, ms);
  await card.locator('button[data-action="cancel"]').click();
  await until(`${o.ref} to show cancelled`, async () => await cardState(card) === 'cancelled');

  const row = page.locator('#partials-body tr', { hasText: o.repo });
  await until('the partial download to be listed, no longer written', async () =>
    await row.count() === 1 && await row.locator('.badge').innerText() === 'Paused', ms);
  assert.match(await row.innerText(), /of .*\(\d+%\)/);
  const sha = await row.getAttribute('data-sha256');
  const discard = row.locator('button[data-action="discard"]');
  await discard.click();
  await page.locator('#confirm[open]').waitFor();
  assert.equal(await page.innerText('#confirm-title'), 'Discard partial download?');
  await page.click('#confirm-no');
  await sleep(200);
  assert.equal(await row.count(), 1);
  await discard.click();
  await page.click('#confirm-yes');
  await until('the discarded partial to go', async () => await row.count() === 0);
  await page.locator('#partials-empty:not([hidden])').waitFor();
  return sha;
}
