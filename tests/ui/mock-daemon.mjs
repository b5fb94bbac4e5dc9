// A stand-in for `rbee-hive serve` that speaks the HTTP API of docs/api.md
// with simulated downloads, and serves ui/ from the source tree. The page
// logic is tested against it in mock.test.mjs (token prompt, error text,
// resume on retry) without the daemon and the fake hub; ui.test.mjs runs the
// same page against the real daemon.
//
// Simulated repo: test-org/tiny-GGUF with Q4_K_M (one file), Q8_0 (two split
// shards) and F16. A download moves `rate` bytes per second in 100 ms ticks;
// bytes done per ref survive a cancel, so a retry resumes. A ref that names
// "broken" fails halfway with an error.

import http from 'node:http';
import fs from 'node:fs';
import path from 'node:path';
import { createHash } from 'node:crypto';

const MB = 1000 * 1000;
const REPO = 'test-org/tiny-GGUF';
const COMMIT = 'a1b2c3d4e5f60718293a4b5c6d7e8f9012345678';
const FILES = [
  { path: 'README.md', size: 1200 },
  { path: 'tiny.Q4_K_M.gguf', size: 6 * MB, quant: 'Q4_K_M' },
  { path: 'q8/tiny.Q8_0-00001-of-00002.gguf', size: 5 * MB, quant: 'Q8_0' },
  { path: 'q8/tiny.Q8_0-00002-of-00002.gguf', size: 4 * MB, quant: 'Q8_0' },
  { path: 'tiny.F16.gguf', size: 20 * MB, quant: 'F16' },
];
const TYPES = { '.html': 'text/html; charset=utf-8', '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8', '.svg': 'image/svg+xml', '.png': 'image/png' };

function planOf(ref) {
  // Registry refs (ollama:, oci://, docker.io/) pull the tiny model's Q4_K_M file.
  if (/^(?:ollama:|oci:\/\/|docker\.io\/)/.test(ref)) {
    return { repo: ref, files: FILES.filter((f) => f.quant === 'Q4_K_M') };
  }
  const m = /^(?:hf:)?([^:@]+)(?::([^@]+))?/.exec(ref);
  if (!m || m[1] !== REPO && m[1] !== 'test-org/broken') return null;
  const sel = (m[2] || 'Q4_K_M').toUpperCase();
  const files = FILES.filter((f) => f.quant === sel || f.path.toUpperCase() === sel);
  return files.length ? { repo: m[1], files } : null;
}

// dropStreamAfter: N ends each job's first stream connection after N
// events, as a proxy or a flaky network would, to exercise reconnection.
export async function startMock({ uiDir, token = '', rate = 2 * MB, dropStreamAfter = 0 } = {}) {
  const models = new Map();
  const jobs = new Map();
  const partial = new Map(); // ref -> bytes already downloaded
  let seq = 0;
  const requests = [];

  function json(res, status, body) {
    res.writeHead(status, { 'Content-Type': 'application/json' });
    res.end(JSON.stringify(body));
  }
  const fail = (res, status, code, message) => json(res, status, { error: { code, message } });

  function emit(job, event, data) {
    const ev = { id: String(job.events.length + 1), event, data };
    job.events.push(ev);
    for (const w of job.watchers) {
      send(w, ev);
      if (w.dropAfter && ++w.sent >= w.dropAfter) {
        job.watchers.delete(w);
        w.destroy();
      }
    }
  }
  function send(res, ev) {
    let s = `id: ${ev.id}\n`;
    if (ev.event) s += `event: ${ev.event}\n`;
    for (const line of ev.data.split('\n')) s += `data: ${line}\n`;
    res.write(`${s}\n`);
  }
  function finish(job, state, line) {
    job.state = state;
    job.updated = Date.now();
    clearInterval(job.timer);
    emit(job, '', line);
    for (const w of job.watchers) w.end();
    job.watchers.clear();
  }

  function progress(job, phase) {
    const p = job.progress;
    p.phase = phase;
    p.state = job.state;
    emit(job, 'progress', JSON.stringify(p));
  }

  // A partial download as GET /v1/partials lists it: one per ref here.
  function partialOf(ref) {
    const plan = planOf(ref);
    const writing = [...jobs.values()].some((j) => j.model === ref && j.state === 'running');
    return { repo_dir: `models--${plan.repo.replace('/', '--')}`,
      sha256: createHash('sha256').update(ref).digest('hex'),
      total_size: plan.files.reduce((a, f) => a + f.size, 0), bytes_done: partial.get(ref),
      updated_ms: Date.now(), writing };
  }

  function startJob(ref) {
    const id = `job-${String(++seq).padStart(4, '0')}`;
    const plan = planOf(ref);
    const job = { id, operation: 'model_download', model: ref, state: 'running', events: [],
      watchers: new Set(), timer: null, error: '', created: Date.now(), updated: Date.now() };
    jobs.set(id, job);
    if (!plan) {
      setTimeout(() => {
        job.error = `model ref '${ref}': no such repo`;
        finish(job, 'failed', `[ERROR] ${job.error}`);
      }, 50);
      return job;
    }
    const total = plan.files.reduce((a, f) => a + f.size, 0);
    const done0 = partial.get(ref) || 0;
    job.progress = { job_id: id, state: 'running', phase: 'resolving', file: plan.files[0].path,
      files_done: 0, files_total: plan.files.length, bytes_done: done0, bytes_total: total,
      rate_bps: 0, eta_s: null };
    emit(job, '', `resolving ${ref}`);
    progress(job, 'resolving');
    if (done0) emit(job, '', `resuming at ${done0} bytes`);
    let ticks = 0;
    job.timer = setInterval(() => {
      const p = job.progress;
      if (++ticks < 3) return;
      if (p.bytes_done < total) {
        p.bytes_done = Math.min(total, p.bytes_done + rate / 10);
        partial.set(ref, p.bytes_done);
        p.rate_bps = rate;
        p.eta_s = (total - p.bytes_done) / rate;
        let acc = 0;
        p.files_done = 0;
        for (const f of plan.files) {
          if (p.bytes_done >= acc + f.size) { p.files_done++; acc += f.size; } else { p.file = f.path; break; }
        }
        if (plan.repo === 'test-org/broken' && p.bytes_done > total / 2) {
          job.error = 'sha256 mismatch for tiny.Q4_K_M.gguf: expected 3f5a…, got 9c1e…';
          finish(job, 'failed', `[ERROR] ${job.error}`);
          return;
        }
        progress(job, 'downloading');
        return;
      }
      if (p.phase === 'downloading') { progress(job, 'verifying'); return; }
      if (p.phase === 'verifying') { progress(job, 'publishing'); return; }
      const f = plan.files[0];
      const mid = `hf:${plan.repo}:${f.path}`;
      models.set(mid, { id: mid, source: 'hf', repo: plan.repo, revision: 'main', commit: COMMIT,
        status: 'available', size: total, created_ms: Date.now(), updated_ms: Date.now(), error: null,
        files: plan.files.map((x) => ({ path: x.path, sha256: createHash('sha256').update(x.path).digest('hex'), size: x.size })),
        gguf: { architecture: 'llama', name: 'Tiny', quantization: f.quant, parameters: 1100000,
          size_label: '1M', context_length: 4096 },
        quantizations: [f.quant] });
      partial.delete(ref);
      finish(job, 'done', '[DONE]');
    }, 100);
    return job;
  }

  function serveUi(req, res, p) {
    const rel = p === '/' ? 'index.html' : p.slice(1);
    const file = path.resolve(uiDir, rel);
    if (!file.startsWith(path.resolve(uiDir) + path.sep) || !fs.existsSync(file)) {
      return fail(res, 404, 'not_found', 'no such page');
    }
    // The real daemon's policy (src/daemon/http.c), so that every mock test runs the page under it.
    res.writeHead(200, { 'Content-Type': TYPES[path.extname(file)] || 'application/octet-stream',
      'Content-Security-Policy': "default-src 'self'; script-src 'self'; style-src 'self'; "
        + "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
        + "form-action 'self'; frame-ancestors 'none'",
      'X-Frame-Options': 'DENY' });
    res.end(fs.readFileSync(file));
  }

  async function body(req) {
    let s = '';
    for await (const c of req) s += c;
    try { return JSON.parse(s || 'null'); } catch { return undefined; }
  }

  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url, 'http://x');
    const p = url.pathname;
    requests.push(`${req.method} ${p}`);
    if (req.method === 'GET' && !p.startsWith('/v1/') && p !== '/health') return serveUi(req, res, p);
    if (token && req.headers.authorization !== `Bearer ${token}`) {
      return fail(res, 401, 'unauthorized', 'a bearer token is required');
    }
    const origin = req.headers.origin;
    if (req.method !== 'GET' && origin && origin !== `http://${req.headers.host}`) {
      return fail(res, 403, 'forbidden', 'foreign origin');
    }
    let m;
    if (req.method === 'GET' && p === '/v1/models') {
      const all = [...models.values()];
      return json(res, 200, { models: all, total: all.length, offset: 0, limit: 1000, next_offset: null });
    }
    if (req.method === 'DELETE' && (m = /^\/v1\/models\/(.+)$/.exec(p))) {
      const id = decodeURIComponent(m[1]);
      if (!models.delete(id)) return fail(res, 404, 'not_found', `no model ${id}`);
      return json(res, 200, { id, status: 'deleted' });
    }
    if (req.method === 'GET' && p === '/v1/partials') {
      return json(res, 200, { partials: [...partial.keys()].map(partialOf) });
    }
    if (req.method === 'DELETE' && (m = /^\/v1\/partials\/([0-9a-f]{64})$/.exec(p))) {
      const ref = [...partial.keys()].find((r) => partialOf(r).sha256 === m[1]);
      if (!ref) return fail(res, 404, 'not_found', `no partial download ${m[1]}`);
      if (partialOf(ref).writing) return fail(res, 409, 'conflict', 'being downloaded now');
      partial.delete(ref);
      requests.push(`discarded ${ref}`);
      return json(res, 200, { sha256: m[1], status: 'deleted', repo_dirs: [partialOf(ref).repo_dir] });
    }
    if (req.method === 'GET' && (m = /^\/v1\/sources\/hf\/([^/]+\/[^/]+)$/.exec(p))) {
      const repo = decodeURIComponent(m[1]);
      if (repo !== REPO) return fail(res, 404, 'not_found', `repo ${repo} not found on the Hub`);
      // The daemon's shape (docs/api.md): groups under "quants" name their files by path.
      const quants = [];
      for (const f of FILES.filter((x) => x.quant)) {
        let q = quants.find((x) => x.tag === f.quant);
        if (!q) { q = { tag: f.quant, size: 0, files: [], ref: `hf:${repo}:${f.quant}` }; quants.push(q); }
        q.files.push(f.path);
        q.size += f.size;
      }
      return json(res, 200, { repo, revision: 'main', commit: COMMIT, quants,
        files: FILES.map((f) => ({ path: f.path, size: f.size, sha256: null, quant: f.quant || null,
          shard: null, shards: null })) });
    }
    if (req.method === 'POST' && p === '/v1/jobs') {
      const b = await body(req);
      if (!b || typeof b !== 'object') return fail(res, 400, 'bad_request', 'malformed JSON');
      if (b.operation !== 'model_download') return fail(res, 422, 'unknown_operation', 'unknown operation');
      if (!b.model) return fail(res, 422, 'bad_ref', 'model ref: empty');
      const job = startJob(b.model);
      return json(res, 201, { job_id: job.id, sse_url: `/v1/jobs/${job.id}/stream` });
    }
    if (req.method === 'GET' && p === '/v1/jobs') {
      // Newest first, as the daemon lists them.
      return json(res, 200, { jobs: [...jobs.values()].reverse().map((j) => ({ job_id: j.id,
        operation: j.operation, model: j.model, state: j.state === 'done' ? 'succeeded' : j.state,
        error: j.error || null, created_ms: j.created, updated_ms: j.updated,
        progress: j.progress || null })) });
    }
    if ((m = /^\/v1\/jobs\/([^/]+)\/stream$/.exec(p)) && req.method === 'GET') {
      const job = jobs.get(m[1]);
      if (!job) return fail(res, 404, 'not_found', 'no such job');
      res.writeHead(200, { 'Content-Type': 'text/event-stream', 'Cache-Control': 'no-store' });
      const after = Number(req.headers['last-event-id'] || 0);
      if (req.headers['last-event-id']) requests.push(`resume ${p} after ${after}`);
      if (dropStreamAfter && !job.dropped) {
        job.dropped = true;
        res.dropAfter = dropStreamAfter;
        res.sent = 0;
      }
      for (const ev of job.events.slice(after)) send(res, ev);
      if (job.state === 'running') {
        job.watchers.add(res);
        req.on('close', () => job.watchers.delete(res));
      } else {
        res.end();
      }
      return;
    }
    if ((m = /^\/v1\/jobs\/([^/]+)(\/cancel)?$/.exec(p)) &&
        (req.method === 'POST' && m[2] || req.method === 'DELETE' && !m[2])) {
      const job = jobs.get(m[1]);
      if (!job) return fail(res, 404, 'not_found', 'no such job');
      if (job.state !== 'running') return json(res, 409, { job_id: job.id, status: job.state });
      finish(job, 'cancelled', '[CANCELLED]');
      return json(res, 200, { job_id: job.id, status: 'cancelled' });
    }
    return fail(res, 404, 'not_found', 'no such endpoint');
  });

  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    requests,
    close() {
      for (const j of jobs.values()) { clearInterval(j.timer); for (const w of j.watchers) w.end(); }
      server.closeAllConnections();
      return new Promise((r) => server.close(r));
    },
  };
}
