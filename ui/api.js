// The daemon's HTTP API (docs/api.md) as seen from the page: one request
// helper that adds the bearer token, turns error bodies into messages and
// reports 401s, plus normalisers that turn answers into the shapes app.js
// draws, so a renamed or missing field degrades to a dash, not an exception.

const TOKEN_KEY = 'rbee-hive.token';

export function getToken() {
  try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch { return ''; }
}

export function setToken(t) {
  try {
    if (t) sessionStorage.setItem(TOKEN_KEY, t);
    else sessionStorage.removeItem(TOKEN_KEY);
  } catch { /* storage disabled: the token lasts until reload */ }
}

export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

const listeners = { auth: [], conn: [] };
export function on(what, fn) { listeners[what].push(fn); }
function emit(what, arg) { for (const fn of listeners[what]) fn(arg); }

function authHeaders(extra) {
  const h = { ...extra };
  const t = getToken();
  if (t) h.Authorization = `Bearer ${t}`;
  return h;
}

// Raw fetch with the token; used for streams.
export function open(path, headers, signal) {
  return fetch(path, { headers: authHeaders(headers), signal, cache: 'no-store' });
}

async function errorOf(res) {
  let code = `http_${res.status}`;
  let message = `${res.status} ${res.statusText}`.trim();
  try {
    const text = await res.text();
    try {
      const j = JSON.parse(text);
      if (j && j.error) {
        code = j.error.code || code;
        message = j.error.message || message;
      }
    } catch {
      if (text.trim()) message = text.trim().slice(0, 500);
    }
  } catch { /* no body */ }
  return new ApiError(res.status, code, message);
}

export async function request(method, path, body) {
  const headers = authHeaders({ Accept: 'application/json' });
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (e) {
    emit('conn', 'down');
    throw new ApiError(0, 'unreachable', 'the daemon does not answer');
  }
  if (res.status === 401) {
    emit('auth', true);
    emit('conn', 'auth');
    throw await errorOf(res);
  }
  emit('conn', 'ok');
  if (!res.ok) throw await errorOf(res);
  const text = await res.text();
  if (!text) return null;
  try { return JSON.parse(text); } catch { return text; }
}

function listOf(answer, key) {
  if (Array.isArray(answer)) return answer;
  if (answer && Array.isArray(answer[key])) return answer[key];
  if (answer && Array.isArray(answer.items)) return answer.items;
  if (answer && Array.isArray(answer.data)) return answer.data;
  return [];
}

const num = (...vs) => vs.find((v) => typeof v === 'number' && Number.isFinite(v));
const str = (...vs) => vs.find((v) => typeof v === 'string' && v !== '');

// "hf:org/repo:Q4_K_M@rev" -> {repo:"org/repo", revision:"rev"}; null when
// the ref is not a Hub repo.
export function repoOf(ref) {
  ref = ref.trim().replace(/^hf:/, '');
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(ref)) return null;
  const m = /^([A-Za-z0-9][\w.-]*\/[\w.-]+)(?::[^@]*)?(?:@(.+))?$/.exec(ref);
  return m ? { repo: m[1], revision: m[2] || '' } : null;
}

// "hf:org/repo:dir/name.Q4_K_M.gguf" -> "org/repo", "name.Q4_K_M.gguf"
export function splitId(id) {
  const m = /^hf:([^:@]+)(?:@[^:]*)?(?::(.*))?$/.exec(id || '');
  if (m) return { repo: m[1], file: m[2] ? m[2].split('/').pop() : '' };
  return { repo: '', file: id || '' };
}

export function normModel(m) {
  const gguf = m.gguf || m.facts || {};
  const id = str(m.id, m.ref, m.name) || '';
  const files = Array.isArray(m.files) ? m.files : [];
  const size = num(m.size, m.size_bytes, m.bytes, m.total_size) ??
    (files.length ? files.reduce((a, f) => a + (num(f.size, f.bytes) || 0), 0) : undefined);
  return {
    id,
    repo: str(m.repo) || '',
    name: str(m.display_name, m.name !== id ? m.name : undefined, gguf.name) || '',
    size,
    // A whole snapshot lists several quantizations; one file has one.
    quantization: (Array.isArray(m.quantizations) &&
      m.quantizations.filter((q) => typeof q === 'string' && q).join(', ')) ||
      str(m.quantization, gguf.quantization, m.quant) || '',
    architecture: str(m.architecture, gguf.architecture, m.arch) || '',
    context: num(m.context_length, gguf.context_length, m.context),
    status: str(m.status, m.state) || 'unknown',
    error: str(m.error) || '',
    files: files.length,
  };
}

// The daemon answers the catalog a page at a time (at most 1000 models);
// next_offset leads to the next page until it is null, or absent from a
// daemon that answers everything at once. A model seen already (the catalog
// grew between two pages) is skipped. req is the request function (a
// stand-in in tests).
export const MODELS_PAGE = 1000;
const MODELS_MAX_PAGES = 1001;

export async function listModels(req = request) {
  const out = [];
  const seen = new Set();
  let offset = 0;
  for (let page = 0; page < MODELS_MAX_PAGES; page++) {
    const ans = await req('GET', `/v1/models?limit=${MODELS_PAGE}&offset=${offset}`);
    for (const m of listOf(ans, 'models')) {
      const id = m && typeof m.id === 'string' ? m.id : '';
      if (id && seen.has(id)) continue;
      if (id) seen.add(id);
      out.push(normModel(m));
    }
    const next = ans && !Array.isArray(ans) ? ans.next_offset : undefined;
    if (next === null || next === undefined) return out;
    if (!Number.isInteger(next) || next <= offset) {
      throw new ApiError(0, 'bad_answer', "the daemon's model list has a bad next_offset");
    }
    offset = next;
  }
  throw new ApiError(0, 'too_large', `the daemon's model list goes on past ${MODELS_MAX_PAGES} pages`);
}

export function deleteModel(id) {
  return request('DELETE', `/v1/models/${encodeURIComponent(id)}`);
}

// "models--org--repo" -> "org/repo", "urls--host" -> "host": what a repo
// folder of the hub cache holds, for showing.
export function repoOfDir(dir) {
  const m = /^(models|urls|files)--(.+)$/.exec(dir || '');
  if (!m) return dir || '';
  return m[1] === 'models' ? m[2].replace('--', '/') : m[2];
}

// A partial download (GET /v1/partials): what a cancelled, failed or
// interrupted pull left for a later pull to resume.
export function normPartial(p) {
  return {
    repoDir: str(p.repo_dir) || '',
    sha256: str(p.sha256) || '',
    done: num(p.bytes_done, p.done_bytes) ?? 0,
    total: num(p.total_size, p.size) ?? 0,
    writing: p.writing === true,
    updated: num(p.updated_ms) ?? 0,
  };
}

export async function listPartials() {
  return listOf(await request('GET', '/v1/partials'), 'partials').map(normPartial);
}

export function discardPartial(p) {
  const q = p.repoDir ? `?repo_dir=${encodeURIComponent(p.repoDir)}` : '';
  return request('DELETE', `/v1/partials/${encodeURIComponent(p.sha256)}${q}`);
}

const STATE_ALIASES = {
  completed: 'done', complete: 'done', succeeded: 'done', success: 'done', finished: 'done', ok: 'done',
  error: 'failed', errored: 'failed', failure: 'failed',
  canceled: 'cancelled', cancelling: 'running', pending: 'queued',
};

export function normState(s) {
  s = (s || '').toLowerCase();
  return STATE_ALIASES[s] || s || 'unknown';
}

export function normJob(j) {
  const p = j.progress || j.latest_progress || {};
  return {
    id: str(j.job_id, j.id) || '',
    operation: str(j.operation, j.op) || '',
    ref: str(j.model, j.ref, j.id_arg, j.target) || '',
    state: normState(str(j.state, j.status)),
    error: str(j.error?.message, j.error, j.message) || '',
    modelId: str(j.model_id, j.result_id) || '',
    created: num(j.created_ms, j.created) ?? 0,
    updated: num(j.updated_ms, j.updated) ?? 0,
    progress: p,
  };
}

export async function listJobs() {
  return listOf(await request('GET', '/v1/jobs'), 'jobs').map(normJob);
}

export function startDownload(ref) {
  return request('POST', '/v1/jobs', { operation: 'model_download', model: ref });
}

export function cancelJob(id) {
  return request('POST', `/v1/jobs/${encodeURIComponent(id)}/cancel`);
}

// A Hub repo's files, grouped by quantization tag: [{tag, size, files:[{path,size}]}].
export async function listRepo(repo, revision) {
  const q = revision ? `?revision=${encodeURIComponent(revision)}` : '';
  const path = repo.split('/').map(encodeURIComponent).join('/');
  const a = await request('GET', `/v1/sources/hf/${path}${q}`);
  return normListing(a);
}

export function normListing(a) {
  const groups = [];
  const byTag = new Map();
  const add = (tag, f) => {
    let g = byTag.get(tag);
    if (!g) { g = { tag, size: 0, files: [] }; byTag.set(tag, g); groups.push(g); }
    const size = num(f.size, f.bytes) || 0;
    g.files.push({ path: str(f.path, f.name, f.rfilename) || '', size });
    g.size += size;
  };
  // Groups may list their files by path only; sizes then come from the
  // flat file list beside them.
  const sizes = new Map(listOf(a, 'files').map((f) => [str(f.path, f.name, f.rfilename), f.size]));
  const fileOf = (f) => (typeof f === 'string' ? { path: f, size: sizes.get(f) } : f);
  const rawGroups = a && (a.quants || a.groups || a.quantizations || a.by_quantization);
  if (Array.isArray(rawGroups)) {
    for (const g of rawGroups) {
      const tag = str(g.quantization, g.tag, g.quant, g.name) || '';
      for (const f of g.files || []) add(tag, fileOf(f));
    }
  } else if (rawGroups && typeof rawGroups === 'object') {
    for (const [tag, files] of Object.entries(rawGroups)) {
      for (const f of files || []) add(tag, fileOf(f));
    }
  } else {
    for (const f of listOf(a, 'files')) {
      add(str(f.quantization, f.quant, f.tag) || '', f);
    }
  }
  return {
    repo: str(a?.repo, a?.id) || '',
    commit: str(a?.commit, a?.sha) || '',
    groups: groups.filter((g) => g.files.some((f) => /\.gguf$/i.test(f.path))),
    otherFiles: groups.filter((g) => !g.files.some((f) => /\.gguf$/i.test(f.path)))
      .reduce((n, g) => n + g.files.length, 0),
  };
}
