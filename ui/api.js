// The daemon's HTTP API (docs/api.md) as seen from the page: one request
// helper that adds the bearer token, turns error bodies into messages and
// reports 401s, plus readers that turn answers into the shapes app.js
// draws. Each reads the one field name docs/api.md gives (the list in
// tests/integration/test_api_contract.py checks them against real answers);
// a missing field degrades to a dash, not an exception.

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

// The list under key of an answer ({"models":[…]}, {"jobs":[…]}, …).
function listOf(answer, key) {
  return answer && Array.isArray(answer[key]) ? answer[key] : [];
}

const num = (...vs) => vs.find((v) => typeof v === 'number' && Number.isFinite(v));
const str = (...vs) => vs.find((v) => typeof v === 'string' && v !== '');

// Refs of the registries (Ollama's library, OCI registries, Docker Hub's
// shorthand): pulled as they are, with no Hub listing to choose from.
export function isRegistryRef(ref) {
  return /^(?:ollama:|oci:\/\/|docker\.io\/)/i.test(ref.trim());
}

// "hf:org/repo:Q4_K_M@rev" -> {repo:"org/repo", revision:"rev"}; null when
// the ref is not a Hub repo.
export function repoOf(ref) {
  ref = ref.trim().replace(/^hf:/, '');
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(ref) || isRegistryRef(ref)) return null;
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
  const gguf = m.gguf || {};
  const files = Array.isArray(m.files) ? m.files : [];
  return {
    id: str(m.id) || '',
    repo: str(m.repo) || '',
    name: str(gguf.name) || '',
    size: num(m.size),
    // A whole snapshot lists several quantizations; one file has one.
    quantization: (Array.isArray(m.quantizations) &&
      m.quantizations.filter((q) => typeof q === 'string' && q).join(', ')) || '',
    architecture: str(gguf.architecture) || '',
    context: num(gguf.context_length),
    status: str(m.status) || 'unknown',
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
    const next = ans ? ans.next_offset : undefined;
    if (next === null) return out;
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
    done: num(p.bytes_done) ?? 0,
    total: num(p.total_size) ?? 0,
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

// The page calls a job that succeeded "done", as the stream's [DONE] says;
// every other state of docs/api.md is shown by its own name.
export function normState(s) {
  return s === 'succeeded' ? 'done' : s || 'unknown';
}

export function normJob(j) {
  return {
    id: str(j.job_id) || '',
    operation: str(j.operation) || '',
    // The job's argument: "model" of a download, "id" of the other operations.
    ref: str(j.model, j.id) || '',
    state: normState(str(j.state)),
    error: str(j.error) || '',
    modelId: str(j.model_id) || '',
    created: num(j.created_ms) ?? 0,
    updated: num(j.updated_ms) ?? 0,
    progress: j.progress || {},
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

// GET /v1/sources/hf/ORG/REPO: {repo, revision, commit, files:[{path, size,
// quant, …}], quants:[{tag, size, files:[path…], ref}]}. A group names its
// files by path; their sizes come from the flat file list.
export function normListing(a) {
  const files = listOf(a, 'files');
  const sizes = new Map(files.map((f) => [f.path, num(f.size) || 0]));
  const groups = listOf(a, 'quants').map((q) => {
    const paths = Array.isArray(q.files) ? q.files.filter((p) => typeof p === 'string') : [];
    const gfiles = paths.map((path) => ({ path, size: sizes.get(path) || 0 }));
    return { tag: str(q.tag) || '', size: gfiles.reduce((n, f) => n + f.size, 0), files: gfiles };
  }).filter((g) => g.files.length > 0);
  return {
    repo: str(a?.repo) || '',
    commit: str(a?.commit) || '',
    groups,
    otherFiles: files.filter((f) => !f.quant).length,
  };
}
