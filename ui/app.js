// The rbee-hive page: pull form with a repo file picker, live job cards fed
// by each job's event stream, the catalog and the recent jobs. Everything
// drawn from daemon data goes through h() and text nodes, never innerHTML,
// because file names and messages come from the network.

import * as api from './api.js';
import { watchStream } from './sse.js';
import { formatBytes, formatRate, formatEta, formatCount, percent } from './format.js';

const $ = (id) => document.getElementById(id);

function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'dataset') Object.assign(el.dataset, v);
    // Through the CSSOM: the page's Content-Security-Policy forbids style attributes.
    else if (k === 'style') Object.assign(el.style, v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

function announce(text) {
  const a = $('announcer');
  a.textContent = '';
  // A fresh text node after a tick makes screen readers read it even when
  // it repeats the previous announcement.
  setTimeout(() => { a.textContent = text; }, 30);
}

const TERMINAL = new Set(['done', 'failed', 'cancelled', 'interrupted', 'unknown', 'lost']);
// Ended jobs that a new job for the same ref picks up where they stopped.
const RETRYABLE = new Set(['failed', 'cancelled', 'interrupted', 'lost']);
const STATE_LABEL = {
  queued: 'Queued', running: 'Running', resolving: 'Resolving', downloading: 'Downloading',
  verifying: 'Verifying', publishing: 'Publishing', done: 'Done', failed: 'Failed',
  cancelled: 'Cancelled', interrupted: 'Interrupted', unknown: 'Unknown', lost: 'Disconnected',
  available: 'Available',
  partial: 'Partial',
  paused: 'Paused',
};
const label = (s) => STATE_LABEL[s] || (s ? s[0].toUpperCase() + s.slice(1) : 'Unknown');
const badge = (state) => h('span', { class: 'badge', dataset: { state } }, label(state));

/* ---------- tables ---------- */

// Each table of the page (catalog, partials, recent) is one list of columns:
// header, its class and the cell of an item. index.html holds only the
// empty <table> and <tbody>; the header row is drawn from the same list as
// the rows, so the two cannot disagree.
function tableHead(name, columns) {
  const table = $(`${name}-table`);
  if (table.tHead) return;
  table.createTHead().append(h('tr', {}, columns.map((c) => h('th', { scope: 'col', class: c.cls },
    c.hidden ? h('span', { class: 'sr-only' }, c.head) : c.head))));
}

function drawTable(name, columns, items, rowAttrs) {
  tableHead(name, columns);
  $(`${name}-body`).replaceChildren(...items.map((it) =>
    h('tr', rowAttrs(it), columns.map((c) => h('td', { class: c.cls, ...(c.attrs?.(it) || {}) }, c.cell(it))))));
  $(`${name}-empty`).hidden = items.length > 0;
  $(`${name}-table`).toggleAttribute('data-empty', items.length === 0);
}

/* ---------- live jobs ---------- */

// job_id -> { id, ref, state, phase, progress, note, error, el, watch }
const live = new Map();

function jobTitle(j) {
  return j.ref || j.id;
}

function renderJob(j) {
  const p = j.progress || {};
  const running = !TERMINAL.has(j.state);
  const shown = running && p.phase ? p.phase : j.state;
  const pct = percent(p.bytes_done, p.bytes_total);
  const indeterminate = running && (pct === null || p.phase === 'resolving');

  const bar = h('div', {
    class: 'bar', role: 'progressbar', 'aria-label': `Progress of ${jobTitle(j)}`,
    'aria-valuemin': 0, 'aria-valuemax': 100,
    'aria-valuenow': pct === null ? undefined : Math.floor(pct),
    'aria-valuetext': pct === null ? label(shown) : `${Math.floor(pct)} percent, ${label(shown)}`,
    'data-indeterminate': indeterminate,
  }, h('div', { class: 'bar-fill', style: { width: `${j.state === 'done' ? 100 : (pct ?? 0).toFixed(2)}%` } }));

  const stats = [];
  if (typeof p.bytes_total === 'number' && p.bytes_total > 0) {
    stats.push(h('span', { class: 'stat-bytes' },
      h('span', { class: 'strong' }, formatBytes(p.bytes_done ?? 0)), ` of ${formatBytes(p.bytes_total)}`,
      pct === null ? '' : ` (${Math.floor(pct)}%)`));
  } else if (typeof p.bytes_done === 'number') {
    stats.push(h('span', { class: 'stat-bytes' }, formatBytes(p.bytes_done)));
  }
  // Rate and time left appear once the daemon has measured them.
  if (running && p.phase === 'downloading' && p.rate_bps > 0) {
    stats.push(h('span', { class: 'stat-rate' }, formatRate(p.rate_bps)));
    if (typeof p.eta_s === 'number') stats.push(h('span', { class: 'stat-eta' }, `${formatEta(p.eta_s)} left`));
  }
  if (typeof p.files_total === 'number' && p.files_total > 0) {
    const k = Math.min(p.files_total, (p.files_done ?? 0) + (j.state === 'done' ? 0 : 1));
    stats.push(h('span', { class: 'stat-files' }, `file ${k} of ${p.files_total}`));
  }

  const actions = [];
  if (running) {
    actions.push(h('button', {
      type: 'button', class: 'btn btn-small btn-danger', 'data-action': 'cancel',
      'aria-label': `Cancel ${jobTitle(j)}`, disabled: j.cancelling, onclick: () => cancel(j),
    }, j.cancelling ? 'Cancelling…' : 'Cancel'));
  } else {
    if (RETRYABLE.has(j.state) && j.ref) {
      actions.push(h('button', {
        type: 'button', class: 'btn btn-small', 'data-action': 'retry',
        'aria-label': `Retry ${jobTitle(j)}`, onclick: () => retry(j),
      }, 'Retry'));
    }
    actions.push(h('button', {
      type: 'button', class: 'btn btn-small btn-ghost', 'data-action': 'dismiss',
      'aria-label': `Dismiss ${jobTitle(j)}`, onclick: () => dismiss(j),
    }, 'Dismiss'));
  }

  const el = h('li', { class: 'job', dataset: { jobId: j.id, state: j.state } },
    h('div', { class: 'job-top' },
      badge(shown),
      h('span', { class: 'job-ref', title: `${jobTitle(j)} (${j.id})` }, jobTitle(j)),
      h('span', { class: 'job-actions' }, actions)),
    p.file ? h('div', { class: 'job-file', title: p.file }, p.file) : null,
    bar,
    h('div', { class: 'job-stats' }, stats),
    j.note && running ? h('div', { class: 'job-note' }, j.note) : null,
    j.error ? h('div', { class: 'job-error', role: 'alert' }, j.error) : null);

  if (j.el) j.el.replaceWith(el);
  else $('live-jobs').prepend(el);
  j.el = el;
  updateJobsCount();
}

function updateJobsCount() {
  const n = [...live.values()].filter((j) => !TERMINAL.has(j.state)).length;
  $('jobs-count').textContent = n ? `${n} running` : '';
  $('no-jobs').hidden = live.size > 0;
}

function track(id, ref, state = 'queued', progress = {}) {
  if (live.has(id)) return live.get(id);
  const j = { id, ref, state, progress, note: '', error: '', el: null, watch: null };
  live.set(id, j);
  renderJob(j);
  watch(j);
  return j;
}

function watch(j) {
  j.watch?.abort();
  j.watch = watchStream((headers, signal) =>
    api.open(`/v1/jobs/${encodeURIComponent(j.id)}/stream`, headers, signal), {
    onProgress(p) {
      const before = j.progress.phase;
      j.progress = p;
      if (!TERMINAL.has(j.state)) j.state = api.normState(p.state) === 'queued' ? 'queued' : 'running';
      if (p.phase && p.phase !== before) {
        // Narration from an earlier phase would read as the current one.
        if (before) j.note = '';
        announce(`${jobTitle(j)}: ${label(p.phase)}`);
      }
      renderJob(j);
    },
    onNarration(text) {
      j.note = text;
      renderJob(j);
    },
    onAuth() { showToken(true); },
    onEnd(t) {
      j.state = t.state;
      j.error = t.error;
      j.cancelling = false;
      renderJob(j);
      announce(`${jobTitle(j)}: ${label(t.state)}${t.error ? `: ${t.error}` : ''}`);
      refreshModels();
      refreshJobs();
      refreshPartials();
    },
  });
}

async function cancel(j) {
  j.cancelling = true;
  renderJob(j);
  try {
    await api.cancelJob(j.id);
    // The stream's [CANCELLED] will follow; show it now so the click has an
    // immediate, honest answer (the daemon said the job is cancelled).
    j.state = 'cancelled';
    j.watch?.abort();
    announce(`${jobTitle(j)}: cancelled`);
  } catch (e) {
    if (e.status !== 409) j.error = `Cancel failed: ${e.message}`;
  }
  j.cancelling = false;
  renderJob(j);
  refreshJobs();
  refreshPartials();
}

async function retry(j) {
  try {
    const r = await api.startDownload(j.ref);
    const old = live.get(j.id);
    if (old) dismiss(old);
    track(r.job_id, j.ref);
    announce(`Retrying ${j.ref}`);
  } catch (e) {
    j.error = `Retry failed: ${e.message}`;
    renderJob(j);
  }
}

function dismiss(j) {
  j.watch?.abort();
  j.el?.remove();
  live.delete(j.id);
  updateJobsCount();
}

/* ---------- pull form and repo files ---------- */

function showPullError(msg) {
  const p = $('pull-error');
  p.textContent = msg || '';
  p.hidden = !msg;
}

async function pull(ev) {
  ev.preventDefault();
  const ref = $('ref-input').value.trim();
  showPullError('');
  if (!ref) {
    showPullError('Enter a model reference.');
    $('ref-input').focus();
    return;
  }
  $('pull-btn').disabled = true;
  try {
    const r = await api.startDownload(ref);
    track(r.job_id, ref);
    announce(`Started pulling ${ref}`);
  } catch (e) {
    showPullError(e.message);
  } finally {
    $('pull-btn').disabled = false;
  }
}

async function browse() {
  showPullError('');
  const r = api.repoOf($('ref-input').value);
  const box = $('files');
  if (!r) {
    showPullError(api.isRegistryRef($('ref-input').value)
      ? 'Registry models (ollama:, oci://, docker.io/) are pulled by name and tag: press Pull.'
      : 'List files works for a Hugging Face repo: enter ORG/REPO.');
    return;
  }
  box.hidden = false;
  box.replaceChildren(h('p', { class: 'empty' }, `Listing ${r.repo}…`));
  $('browse-btn').disabled = true;
  try {
    const l = await api.listRepo(r.repo, r.revision);
    renderListing(r, l);
  } catch (e) {
    box.replaceChildren(h('p', { class: 'error-text', role: 'alert' }, e.message));
  } finally {
    $('browse-btn').disabled = false;
  }
}

function renderListing(r, l) {
  const box = $('files');
  const rev = r.revision ? `@${r.revision}` : '';
  const head = h('div', { class: 'files-head' },
    h('span', { class: 'repo' }, l.repo || r.repo),
    l.commit ? h('span', { class: 'commit', title: l.commit }, l.commit.slice(0, 10)) : null);
  if (!l.groups.length) {
    box.replaceChildren(head, h('p', { class: 'empty' },
      `No GGUF files in this repo${l.otherFiles ? ` (${l.otherFiles} other files)` : ''}.`));
    return;
  }
  const items = l.groups.map((g, i) => {
    // A tag selects the file with all of its shards; an untagged file is
    // chosen by its path.
    const sel = g.tag || g.files[0].path;
    const ref = `hf:${r.repo}:${sel}${rev}`;
    const id = `quant-${i}`;
    return h('li', { class: 'quant-group' },
      h('label', { for: id },
        h('input', {
          type: 'radio', name: 'quant', id, value: ref, 'data-tag': g.tag,
          onchange: () => { $('ref-input').value = ref; },
        }),
        h('span', { class: 'quant-tag' }, g.tag || g.files[0].path.split('/').pop()),
        h('span', { class: 'quant-size' }, `${formatBytes(g.size)}${g.files.length > 1 ? ` · ${g.files.length} files` : ''}`),
        h('span', { class: 'quant-files' },
          g.files.map((f) => h('div', { title: f.path }, f.path)))));
  });
  box.replaceChildren(head,
    h('fieldset', { class: 'quant-fieldset' },
      h('legend', { class: 'sr-only' }, 'GGUF files by quantization'),
      h('ul', { class: 'quant-groups' }, items)),
    h('p', { class: 'help' }, 'Pick a quantization, then Pull.'));
}

/* ---------- catalog ---------- */

// Asks in the dialog first; resolves to true when the user chose the action.
function confirmAction(title, text, action) {
  const d = $('confirm');
  $('confirm-title').textContent = title;
  $('confirm-text').textContent = text;
  $('confirm-yes').textContent = action;
  return new Promise((resolve) => {
    d.addEventListener('close', () => resolve(d.returnValue === 'ok'), { once: true });
    d.returnValue = '';
    d.showModal();
    $('confirm-no').focus();
  });
}

function confirmDelete(m) {
  return confirmAction('Delete model?',
    `Delete ${m.id}${m.size ? ` (${formatBytes(m.size)})` : ''}? Its files are removed unless another model uses them.`,
    'Delete');
}

async function remove(m, btn) {
  if (!(await confirmDelete(m))) return;
  btn.disabled = true;
  btn.textContent = 'Deleting…';
  try {
    await api.deleteModel(m.id);
    announce(`Deleted ${m.id}`);
  } catch (e) {
    showCatalogError(`Delete failed: ${e.message}`);
  }
  refreshModels();
}

function showCatalogError(msg) {
  $('catalog-error').textContent = msg || '';
  $('catalog-error').hidden = !msg;
}

function deleteButton(m) {
  const del = h('button', {
    type: 'button', class: 'btn btn-small btn-danger', 'data-action': 'delete',
    'aria-label': `Delete ${m.id}`,
  }, 'Delete');
  del.addEventListener('click', () => remove(m, del));
  return del;
}

const CATALOG_COLUMNS = [
  { head: 'Name', cell: (m) => {
    const { repo, file } = api.splitId(m.id);
    const name = m.repo || repo || m.name || m.id;
    return [h('div', { class: 'model-name' }, name),
      h('div', { class: 'model-id', title: m.id }, file && file !== name ? file : m.id)];
  } },
  { head: 'Size', cls: 'num', cell: (m) => formatBytes(m.size) },
  { head: 'Quantization', cls: 'mono', cell: (m) => m.quantization || '–' },
  { head: 'Architecture', cell: (m) => m.architecture || '–' },
  { head: 'Context', cls: 'num', cell: (m) => (m.context ? formatCount(m.context) : '–') },
  { head: 'Status', cell: (m) => badge(m.status), attrs: (m) => ({ title: m.error || undefined }) },
  { head: 'Actions', hidden: true, cls: 'actions', cell: deleteButton },
];

function renderModels(models) {
  drawTable('catalog', CATALOG_COLUMNS, models, (m) => ({ dataset: { modelId: m.id } }));
  $('catalog-count').textContent = models.length ? `${models.length} model${models.length > 1 ? 's' : ''}` : '';
}

let modelsBusy = false;
async function refreshModels() {
  if (modelsBusy) return;
  modelsBusy = true;
  try {
    renderModels(await api.listModels());
    showCatalogError('');
  } catch (e) {
    if (e.status !== 401) showCatalogError(e.message);
  } finally {
    modelsBusy = false;
  }
}

/* ---------- partial downloads ---------- */

function partialName(p) {
  return api.repoOfDir(p.repoDir);
}

async function discard(p, btn) {
  const name = partialName(p);
  const size = p.total ? ` (${formatBytes(p.done)} of ${formatBytes(p.total)})` : '';
  if (!(await confirmAction('Discard partial download?',
    `Discard the partial download of ${name}${size}? A later pull of it starts over.`, 'Discard'))) return;
  btn.disabled = true;
  btn.textContent = 'Discarding…';
  try {
    await api.discardPartial(p);
    announce(`Discarded the partial download of ${name}`);
    showPartialsError('');
  } catch (e) {
    showPartialsError(`Discard failed: ${e.message}`);
  }
  refreshPartials();
}

function showPartialsError(msg) {
  $('partials-error').textContent = msg || '';
  $('partials-error').hidden = !msg;
}

function discardButton(p) {
  const btn = h('button', {
    type: 'button', class: 'btn btn-small btn-danger', 'data-action': 'discard',
    'aria-label': `Discard the partial download of ${partialName(p)} (${p.sha256.slice(0, 12)})`,
    // A partial being written belongs to a running job: cancel that first.
    disabled: p.writing, title: p.writing ? 'Being downloaded now; cancel its job first' : undefined,
  }, 'Discard');
  btn.addEventListener('click', () => discard(p, btn));
  return btn;
}

const PARTIAL_COLUMNS = [
  { head: 'Repository', cell: (p) => h('div', { class: 'model-name' }, partialName(p)) },
  { head: 'File', cls: 'mono', cell: (p) => p.sha256.slice(0, 12), attrs: (p) => ({ title: p.sha256 }) },
  { head: 'Downloaded', cls: 'num', cell: (p) => {
    const pct = percent(p.done, p.total);
    return `${formatBytes(p.done)} of ${formatBytes(p.total)}${pct === null ? '' : ` (${Math.floor(pct)}%)`}`;
  } },
  { head: 'Status', cell: (p) => badge(p.writing ? 'downloading' : 'paused') },
  { head: 'Actions', hidden: true, cls: 'actions', cell: discardButton },
];

function renderPartials(parts) {
  drawTable('partials', PARTIAL_COLUMNS, parts, (p) => ({ dataset: { sha256: p.sha256, repoDir: p.repoDir } }));
  $('partials-count').textContent = parts.length ? `${parts.length}` : '';
}

let partialsBusy = false;
async function refreshPartials() {
  if (partialsBusy) return;
  partialsBusy = true;
  try {
    renderPartials(await api.listPartials());
  } catch (e) {
    if (e.status !== 401) showPartialsError(e.message);
  } finally {
    partialsBusy = false;
  }
}

/* ---------- recent jobs ---------- */

const RECENT_MAX = 25;

function whenOf(j) {
  const t = j.updated || j.created;
  if (!t) return '';
  const d = new Date(t);
  const same = d.toDateString() === new Date().toDateString();
  return same ? d.toLocaleTimeString() : d.toLocaleString();
}

const RECENT_COLUMNS = [
  { head: 'Job', cls: 'mono nowrap', cell: (j) => j.id },
  { head: 'Model', cls: 'mono', cell: (j) => j.ref || j.operation || '–' },
  { head: 'Outcome', cell: (j) => badge(j.state) },
  { head: 'Detail', cls: 'detail', cell: (j) => (j.error && j.error !== j.state ? j.error : whenOf(j)),
    attrs: (j) => (j.state === 'failed' ? { class: 'detail bad' } : {}) },
  { head: 'Actions', hidden: true, cls: 'actions', cell: (j) => {
    const canRetry = RETRYABLE.has(j.state) && j.operation === 'model_download' && j.ref;
    return canRetry ? h('button', {
      type: 'button', class: 'btn btn-small', 'data-action': 'retry',
      'aria-label': `Retry ${j.ref}`, onclick: () => retry(j),
    }, 'Retry') : null;
  } },
];

function renderRecent(jobs) {
  const done = jobs.filter((j) => TERMINAL.has(j.state))
    .sort((a, b) => (b.updated || b.created) - (a.updated || a.created)).slice(0, RECENT_MAX);
  drawTable('recent', RECENT_COLUMNS, done, (j) => ({ dataset: { jobId: j.id, state: j.state } }));
  $('recent-count').textContent = done.length ? `${done.length}` : '';
}

let jobsBusy = false;
async function refreshJobs() {
  if (jobsBusy) return;
  jobsBusy = true;
  try {
    const jobs = await api.listJobs();
    // Jobs started elsewhere (the CLI, another tab) get a live card too.
    for (const j of jobs) {
      if (!TERMINAL.has(j.state) && j.operation === 'model_download' && !live.has(j.id)) {
        track(j.id, j.ref, j.state, j.progress);
      }
    }
    renderRecent(jobs);
  } catch { /* shown by the connection indicator */ } finally {
    jobsBusy = false;
  }
}

/* ---------- token and connection ---------- */

function showToken(required) {
  const panel = $('token-panel');
  panel.hidden = false;
  $('token-toggle').setAttribute('aria-expanded', 'true');
  if (required) {
    panel.dataset.required = '';
    $('token-note').textContent = getTokenNote();
    $('token-input').focus();
  }
}

function getTokenNote() {
  return api.getToken()
    ? 'The daemon refused the saved token. Enter the token from its --token-file.'
    : 'This daemon requires a bearer token. Enter the token from its --token-file; it is kept in this tab only.';
}

function setConn(state) {
  const c = $('conn');
  c.dataset.state = state;
  c.textContent = { ok: 'Connected', auth: 'Token required', down: 'Daemon unreachable' }[state] || state;
}

function initToken() {
  $('token-toggle').addEventListener('click', () => {
    const panel = $('token-panel');
    panel.hidden = !panel.hidden;
    $('token-toggle').setAttribute('aria-expanded', String(!panel.hidden));
  });
  $('token-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    api.setToken($('token-input').value.trim());
    $('token-input').value = '';
    $('token-panel').hidden = true;
    delete $('token-panel').dataset.required;
    $('token-toggle').setAttribute('aria-expanded', 'false');
    announce('Token saved');
    refreshAll();
    for (const j of live.values()) if (j.state === 'lost') { j.state = 'running'; j.error = ''; watch(j); }
  });
  $('token-forget').addEventListener('click', () => {
    api.setToken('');
    announce('Token forgotten');
    refreshAll();
  });
  api.on('auth', () => showToken(true));
  api.on('conn', setConn);
}

function refreshAll() {
  refreshModels();
  refreshJobs();
  refreshPartials();
}

function init() {
  initToken();
  $('pull-form').addEventListener('submit', pull);
  $('browse-btn').addEventListener('click', browse);
  // Typing a ref by hand un-picks the file group it no longer matches.
  $('ref-input').addEventListener('input', () => {
    for (const r of document.querySelectorAll('input[name="quant"]')) r.checked = r.value === $('ref-input').value.trim();
  });
  $('catalog-refresh').addEventListener('click', refreshModels);
  tableHead('catalog', CATALOG_COLUMNS);
  tableHead('partials', PARTIAL_COLUMNS);
  tableHead('recent', RECENT_COLUMNS);
  updateJobsCount();
  refreshAll();
  // Polling finds jobs started elsewhere and catalog changes made by others;
  // the live cards themselves are fed by their streams, not by this.
  setInterval(refreshJobs, 3000);
  setInterval(refreshPartials, 3000);
  setInterval(refreshModels, 10000);
}

init();
