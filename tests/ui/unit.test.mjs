// The page's pure modules under node, without a browser: the SSE frame
// parser, the terminal lines, number formatting and the answer normalisers.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SseParser, terminalOf } from '../../ui/sse.js';
import { formatBytes, formatRate, formatEta, percent } from '../../ui/format.js';
import { listModels, normListing, normModel, normJob, repoOf, splitId, isRegistryRef, MODELS_PAGE } from '../../ui/api.js';

function parseAll(chunks) {
  const out = [];
  const p = new SseParser((ev) => out.push(ev));
  for (const c of chunks) p.feed(c);
  p.end();
  return out;
}

test('SSE frames: fields, multi-line data, comments, ids', () => {
  const text = ': keep-alive\n\nid: 1\nevent: progress\ndata: {"a":1}\n\n' +
    'id: 2\ndata: line one\ndata: line two\n\nid: 3\ndata:[DONE]\n\n';
  const evs = parseAll([text]);
  assert.deepEqual(evs, [
    { event: 'progress', data: '{"a":1}', id: '1' },
    { event: 'message', data: 'line one\nline two', id: '2' },
    { event: 'message', data: '[DONE]', id: '3' },
  ]);
});

test('SSE frames split anywhere, CRLF and CR line ends', () => {
  const text = 'id: 7\r\nevent: progress\r\ndata: {"b":2}\r\n\r\nid: 8\rdata: x\r\r';
  const whole = parseAll([text]);
  for (let i = 1; i < text.length; i++) {
    assert.deepEqual(parseAll([text.slice(0, i), text.slice(i)]), whole, `split at ${i}`);
  }
  assert.equal(whole.length, 2);
  assert.equal(whole[1].id, '8');
  // An event without a blank line after it is not dispatched yet.
  assert.deepEqual(parseAll(['data: half\n']), []);
});

test('terminal lines', () => {
  assert.deepEqual(terminalOf('[DONE]'), { state: 'done', error: '' });
  assert.deepEqual(terminalOf('[CANCELLED]'), { state: 'cancelled', error: '' });
  assert.deepEqual(terminalOf('[ERROR] disk full'), { state: 'failed', error: 'disk full' });
  // A daemon stop is not a failure of the job: it resumes when the daemon is back.
  assert.deepEqual(terminalOf('[ERROR] interrupted: the daemon is stopping; the job resumes when the daemon is back'),
    { state: 'interrupted', error: 'the daemon is stopping; the job resumes when the daemon is back' });
  assert.equal(terminalOf('downloading x'), null);
});

test('formatting', () => {
  assert.equal(formatBytes(0), '0 B');
  assert.equal(formatBytes(999), '999 B');
  assert.equal(formatBytes(1500), '1.50 kB');
  assert.equal(formatBytes(4_100_000_000), '4.10 GB');
  assert.equal(formatBytes(123_456_789), '123 MB');
  assert.equal(formatBytes(undefined), '–');
  assert.equal(formatRate(35_200_000), '35.2 MB/s');
  assert.equal(formatRate(0), '–');
  assert.equal(formatEta(42), '42 s');
  assert.equal(formatEta(80), '1 min 20 s');
  assert.equal(formatEta(7500), '2 h 5 min');
  assert.equal(formatEta(null), '–');
  assert.equal(percent(5, 10), 50);
  assert.equal(percent(5, 0), null);
  assert.equal(percent(20, 10), 100);
});

test('refs: which repo to list', () => {
  assert.deepEqual(repoOf('org/repo'), { repo: 'org/repo', revision: '' });
  assert.deepEqual(repoOf('hf:org/repo:Q4_K_M@v1.0'), { repo: 'org/repo', revision: 'v1.0' });
  assert.deepEqual(repoOf(' org/repo:sub/x.gguf '), { repo: 'org/repo', revision: '' });
  assert.equal(repoOf('https://host/x.gguf'), null);
  assert.equal(repoOf('file:///tmp/x.gguf'), null);
  assert.equal(repoOf('justaname'), null);
  // Registry refs have no Hub listing, even when they look like ORG/REPO.
  for (const ref of ['ollama:llama3.2:1b', 'ollama:user/name:q4', 'oci://r.example/a/b:t',
    'docker.io/ai/smollm2', ' Docker.io/ai/gemma3:4B ']) {
    assert.equal(repoOf(ref), null, ref);
    assert.equal(isRegistryRef(ref), true, ref);
  }
  assert.equal(isRegistryRef('hf:org/repo'), false);
  assert.equal(isRegistryRef('dockerxio/repo'), false);
  assert.deepEqual(splitId('hf:org/repo:q8/x.Q8_0-00001-of-00002.gguf'),
    { repo: 'org/repo', file: 'x.Q8_0-00001-of-00002.gguf' });
});

test('readers: listing groups, model facts, job states', () => {
  // The daemon's shape: groups under "quants" name their files by path.
  const d = normListing({ repo: 'o/r', commit: 'c2',
    files: [{ path: 'README.md', size: 7, quant: null }, { path: 'q8/a-00001-of-00002.gguf', size: 5, quant: 'Q8_0' },
      { path: 'q8/a-00002-of-00002.gguf', size: 6, quant: 'Q8_0' }],
    quants: [{ tag: 'Q8_0', size: 11, files: ['q8/a-00001-of-00002.gguf', 'q8/a-00002-of-00002.gguf'] }] });
  assert.deepEqual(d.groups.map((g) => [g.tag, g.size, g.files.map((f) => f.size)]), [['Q8_0', 11, [5, 6]]]);
  assert.equal(d.otherFiles, 1);
  assert.equal(d.commit, 'c2');
  const m = normModel({ id: 'hf:o/r:a.gguf', repo: 'o/r', size: 5, status: 'available',
    quantizations: ['Q4_K_M'],
    gguf: { architecture: 'llama', quantization: 'Q4_K_M', context_length: 4096 } });
  assert.equal(m.architecture, 'llama');
  assert.equal(m.context, 4096);
  assert.equal(m.quantization, 'Q4_K_M');
  // A whole snapshot shows every quantization it holds.
  const all = normModel({ id: 'hf:o/r:*@v1', repo: 'o/r', status: 'available',
    quantizations: ['Q4_K_M', 'Q5_K_M', 'Q8_0'], gguf: { quantization: 'Q4_K_M' } });
  assert.equal(all.quantization, 'Q4_K_M, Q5_K_M, Q8_0');
  assert.equal(normJob({ job_id: 'job-1', state: 'succeeded', error: null }).state, 'done');
  assert.equal(normJob({ job_id: 'job-1', state: 'failed', error: 'x' }).error, 'x');
  // A job of another operation names its model by "id".
  assert.equal(normJob({ job_id: 'job-2', operation: 'model_verify', id: 'o/r', state: 'running' }).ref, 'o/r');
  // Only the names docs/api.md defines are read.
  assert.equal(normModel({ id: 'x', size_bytes: 5, state: 'available' }).size, undefined);
  assert.equal(normJob({ job_id: 'j', state: 'completed' }).state, 'completed');
});

// A stand-in for the daemon's paged GET /v1/models over ids m0000..m(n-1).
function pagedDaemon(n, { grow = -1 } = {}) {
  const ids = Array.from({ length: n }, (_, i) => `m${String(i).padStart(4, '0')}`);
  const asked = [];
  const req = async (method, path) => {
    const u = new URL(path, 'http://x');
    assert.equal(method, 'GET');
    assert.equal(u.pathname, '/v1/models');
    const limit = Number(u.searchParams.get('limit'));
    const offset = Number(u.searchParams.get('offset'));
    asked.push(offset);
    // The catalog grows by one model that sorts first, after the first page.
    if (asked.length === 2 && grow >= 0) ids.unshift('m');
    const page = ids.slice(offset, offset + limit).map((id) => ({ id, status: 'available' }));
    const next = offset + limit < ids.length ? offset + limit : null;
    return { models: page, total: ids.length, offset, limit, next_offset: next };
  };
  return { req, asked };
}

test('listModels follows next_offset over every page', async () => {
  const d = pagedDaemon(2 * MODELS_PAGE + 5);
  const all = await listModels(d.req);
  assert.equal(all.length, 2 * MODELS_PAGE + 5);
  assert.deepEqual(d.asked, [0, MODELS_PAGE, 2 * MODELS_PAGE]);
  assert.equal(new Set(all.map((m) => m.id)).size, all.length);
  // A model added before the offset shifts the next page: the repeat is skipped.
  const g = pagedDaemon(MODELS_PAGE + 3, { grow: 1 });
  const again = await listModels(g.req);
  assert.equal(again.length, MODELS_PAGE + 3);
  assert.equal(new Set(again.map((m) => m.id)).size, again.length);
});

test('listModels: one page with next_offset null, and a bad next_offset', async () => {
  // Not in id order: every model is kept.
  const old = await listModels(async () => ({ models: [{ id: 'b' }, { id: 'a' }], next_offset: null }));
  assert.deepEqual(old.map((m) => m.id), ['b', 'a']);
  await assert.rejects(listModels(async () => ({ models: [], next_offset: 0 })), /next_offset/);
});
