// The operator dashboard's page (served by src/ops/dashboard/index.ts). Plain browser JS, no build
// step: it asks for an admin's access token, keeps it in sessionStorage, reads the cluster state
// from /dashboard/api/state and then follows /dashboard/api/events (server-sent events read with
// fetch, since EventSource cannot send an Authorization header). Text from the server is always
// set as textContent, never as HTML.
'use strict';

const TOKEN_KEY = 'axon.dashboard.token';
const $ = (id) => document.getElementById(id);
const OWNER_COLOURS = ['#2b59c3', '#e07a10', '#0f9d58', '#9c27b0', '#d81b60', '#00838f', '#6d4c41', '#7cb342', '#5e35b1', '#c0ca33'];

let snapshot = null;
let operation = null;
let streamAbort = null;
const freshMoves = new Set();

function el(tag, props = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props)) {
    if (k === 'class') e.className = v;
    else if (k === 'dataset') Object.assign(e.dataset, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
  return e;
}

function token() {
  return sessionStorage.getItem(TOKEN_KEY);
}

/** A call to the dashboard API with the admin's token; throws {status, errcode, error} on a non-2xx answer. */
async function api(method, path, body) {
  const res = await fetch(`/dashboard/api/${path}`, {
    method,
    headers: { Authorization: `Bearer ${token()}`, ...(body ? { 'Content-Type': 'application/json' } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const json = await res.json().catch(() => ({ errcode: 'M_UNKNOWN', error: `HTTP ${res.status}` }));
  if (!res.ok) throw { status: res.status, errcode: json.errcode, error: json.error };
  return json;
}

function describeError(e) {
  if (e && e.errcode) return `${e.errcode}: ${e.error} (HTTP ${e.status})`;
  return String(e && e.message ? e.message : e);
}

// --- signing in and out -------------------------------------------------------------------------

function showLogin(message) {
  stopStream();
  $('dashboard').hidden = true;
  $('session').hidden = true;
  $('login').hidden = false;
  const err = $('login-error');
  err.hidden = !message;
  err.textContent = message || '';
}

async function signIn() {
  try {
    const state = await api('GET', 'state');
    $('login').hidden = true;
    $('login-error').hidden = true;
    $('dashboard').hidden = false;
    $('session').hidden = false;
    $('whoami').textContent = state.user_id;
    operation = state.operation;
    render(state.cluster);
    renderOperation();
    void follow();
  } catch (e) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(describeError(e));
  }
}

$('login-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const value = $('token').value.trim();
  if (!value) return;
  sessionStorage.setItem(TOKEN_KEY, value);
  $('token').value = '';
  void signIn();
});

$('logout').addEventListener('click', () => {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin('');
});

// --- the event stream ---------------------------------------------------------------------------

function setConnection(text, cls) {
  const c = $('connection');
  c.textContent = text;
  c.className = `badge ${cls}`;
}

function stopStream() {
  if (streamAbort) streamAbort.abort();
  streamAbort = null;
}

async function follow() {
  stopStream();
  const abort = new AbortController();
  streamAbort = abort;
  while (!abort.signal.aborted) {
    try {
      const res = await fetch('/dashboard/api/events', { headers: { Authorization: `Bearer ${token()}` }, signal: abort.signal });
      if (!res.ok) {
        const json = await res.json().catch(() => ({}));
        if (res.status === 401 || res.status === 403) {
          sessionStorage.removeItem(TOKEN_KEY);
          showLogin(describeError({ status: res.status, errcode: json.errcode, error: json.error }));
          return;
        }
        throw new Error(`HTTP ${res.status}`);
      }
      setConnection('live', 'live');
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += value;
        let end = buffer.indexOf('\n\n');
        while (end >= 0) {
          onFrame(buffer.slice(0, end));
          buffer = buffer.slice(end + 2);
          end = buffer.indexOf('\n\n');
        }
      }
    } catch (e) {
      if (abort.signal.aborted) return;
      console.warn('dashboard: event stream lost', e);
    }
    setConnection('reconnecting', 'down');
    await new Promise((r) => setTimeout(r, 2000));
  }
}

function onFrame(frame) {
  let event = 'message';
  const data = [];
  for (const line of frame.split('\n')) {
    if (line.startsWith(':')) continue;
    if (line.startsWith('event: ')) event = line.slice(7);
    else if (line.startsWith('data: ')) data.push(line.slice(6));
  }
  if (!data.length) return;
  const payload = JSON.parse(data.join('\n'));
  if (event === 'snapshot') render(payload);
  else if (event === 'move') onMove(payload);
  else if (event === 'operation' || event === 'hello') {
    if (event === 'operation' || payload.operation) operation = event === 'hello' ? payload.operation : payload;
    renderOperation();
  }
}

function onMove(m) {
  freshMoves.add(`${m.at}:${m.family}:${m.shard}`);
  setTimeout(() => freshMoves.delete(`${m.at}:${m.family}:${m.shard}`), 5000);
}

// --- rendering ----------------------------------------------------------------------------------

function ownerColour(index) {
  return index < 0 ? '#bbb' : OWNER_COLOURS[index % OWNER_COLOURS.length];
}

function seconds(ms) {
  return ms === null || ms === undefined ? '–' : (ms / 1000).toFixed(ms < 10_000 ? 1 : 0);
}

function render(s) {
  snapshot = s;
  const live = s.workers.filter((w) => w.alive);
  $('live-workers').textContent = `${live.length} / ${s.workers.length}`;
  $('messages-rate').textContent = s.rates ? s.rates.messagesPerSecond.toLocaleString() : '…';
  $('events-rate').textContent = s.rates ? s.rates.eventsPerSecond.toLocaleString() : '…';
  $('total-lag').textContent = s.workers.reduce((n, w) => n + w.inboxLag + w.pending, 0).toLocaleString();
  $('dead-total').textContent = s.deadLetters.total.toLocaleString();
  $('moves-in-progress').textContent = String(s.movesInProgress);
  renderWorkers(s);
  renderMoveForm(s);
  renderHeatmaps(s);
  renderMoves(s);
  renderDeadLetters(s);
  renderFronts(s);
}

function renderWorkers(s) {
  const body = $('workers').tBodies[0];
  const rows = s.workers.map((w, i) => {
    const total = Object.values(w.shards).reduce((a, b) => a + b, 0);
    const canDrain = w.alive && w.state === 'running' && s.workers.some((o) => o.worker !== w.worker && o.alive && o.state === 'running');
    return el(
      'tr',
      { class: [w.alive ? '' : 'dead', w.state === 'draining' ? 'draining' : ''].join(' ').trim(), dataset: { worker: w.worker, alive: String(w.alive), state: w.state, shards: String(total) } },
      el('td', {}, el('span', { class: 'swatch', dataset: { owner: String(i) } }), w.worker),
      el('td', {}, w.alive ? w.state : `${w.state} (no heartbeat)`),
      el('td', {}, w.ready ? 'yes' : 'no'),
      el('td', {}, `${w.pid ?? '–'} @ ${w.host || '–'}`),
      el('td', { class: 'room-shards' }, w.shards.room ?? 0),
      el('td', { class: 'user-shards' }, w.shards.user ?? 0),
      el('td', {}, w.leaseAgeMs ? `${seconds(w.leaseAgeMs.min)} – ${seconds(w.leaseAgeMs.max)}` : '–'),
      el('td', {}, seconds(w.heartbeatAgoMs)),
      el('td', {}, w.inboxLag),
      el('td', {}, w.pending),
      el('td', {}, w.deadLetters),
      el('td', { class: 'inbox-format', title: 'the newest inbox entry format this worker reads: askers write v2 only once every live worker reads it' }, w.inboxFormat ? `v${w.inboxFormat}` : '–'),
      el('td', {}, el('button', { type: 'button', class: 'danger', dataset: { drain: w.worker }, disabled: !canDrain || operation?.state === 'running', onclick: () => confirmDrain(w, total) }, 'Drain')),
    );
  });
  body.replaceChildren(...rows);
  // CSSOM colours (the page's CSP allows no inline style attributes).
  for (const sw of body.querySelectorAll('.swatch')) sw.style.background = ownerColour(Number(sw.dataset.owner));
  const unowned = Object.values(s.heat).flat().filter((c) => c[0] < 0).length;
  $('unowned').hidden = unowned === 0;
  $('unowned').textContent = `${unowned} shard(s) have no owner right now.`;
}

function renderMoveForm(s) {
  const family = $('move-family');
  const families = Object.keys(s.shardCounts);
  if (family.options.length !== families.length) family.replaceChildren(...families.map((f) => el('option', { value: f }, f)));
  const to = $('move-to');
  const accepting = s.workers.filter((w) => w.alive && w.state === 'running').map((w) => w.worker);
  const current = to.value;
  to.replaceChildren(...accepting.map((w) => el('option', { value: w }, w)));
  if (accepting.includes(current)) to.value = current;
  $('move-shard').max = String(s.shardCounts[family.value || families[0]] - 1);
  $('rebalance').disabled = operation?.state === 'running' || accepting.length < 2;
}

function renderHeatmaps(s) {
  const legend = $('legend');
  legend.replaceChildren(...s.owners.map((w, i) => el('span', {}, el('span', { class: 'swatch', dataset: { owner: String(i) } }), w)), el('span', {}, el('span', { class: 'swatch', dataset: { owner: '-1' } }), 'no owner'));
  for (const sw of legend.querySelectorAll('.swatch')) sw.style.background = ownerColour(Number(sw.dataset.owner));
  const maxLag = Math.max(1, ...Object.values(s.heat).flat().map((c) => c[1] + c[2]));
  const maps = Object.entries(s.heat).map(([family, cells]) => {
    // Bigger cells when there are few shards (a test or small cluster); 64 a row for a thousand.
    const grid = el('div', { class: cells.length <= 256 ? 'grid large' : 'grid' });
    cells.forEach((c, shard) => {
      const [owner, lag, pending, dead, target] = c;
      const cell = el('div', {
        class: `cell${target >= 0 && target !== owner ? ' reserved' : ''}`,
        title: `${family}:${shard} owner ${owner >= 0 ? s.owners[owner] : 'none'}; lag ${lag}, pending ${pending}, dead ${dead}${target >= 0 && target !== owner ? `; moving to ${s.owners[target]}` : ''}`,
        dataset: { family, shard: String(shard), owner: owner >= 0 ? s.owners[owner] : '' },
      });
      const heat = (lag + pending) / maxLag;
      // White (no lag) through yellow to red (the most lagging shard now); dead letters: dark red.
      cell.style.background = dead > 0 && lag + pending === 0 ? '#7a0916' : lag + pending === 0 ? '#fff' : `hsl(${Math.round(55 - 55 * heat)}, 95%, ${Math.round(80 - 35 * heat)}%)`;
      cell.style.borderBottomColor = ownerColour(owner);
      grid.append(cell);
    });
    return el('div', { class: 'heatmap' }, el('h3', {}, `${family} shards (${cells.length})`), grid);
  });
  $('heatmaps').replaceChildren(...maps);
}

function renderMoves(s) {
  $('moves-count').textContent = `(${s.moves.length} seen since this page's server started watching)`;
  const items = s.moves.slice(0, 100).map((m) =>
    el(
      'li',
      { class: freshMoves.has(`${m.at}:${m.family}:${m.shard}`) ? 'fresh' : '', dataset: { at: String(m.at), family: m.family, shard: String(m.shard), from: m.from, to: m.to } },
      `${new Date(m.at).toLocaleTimeString()}  ${m.family}:${m.shard}  ${m.from || '(none)'} → ${m.to || '(none)'}`,
    ),
  );
  $('moves').replaceChildren(...items);
}

function renderDeadLetters(s) {
  const rows = s.deadLetters.recent.map((d) =>
    el('tr', {}, el('td', {}, `${d.family}:${d.shard}`), el('td', {}, `${d.kind} ${d.actor}`), el('td', {}, d.failedAt ? new Date(d.failedAt).toLocaleString() : '–'), el('td', {}, d.error)),
  );
  if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: '4' }, 'None.')));
  $('dead-letters').tBodies[0].replaceChildren(...rows);
}

function renderFronts(s) {
  const rows = s.fronts.map((f) =>
    el('tr', { class: f.alive ? '' : 'dead' }, el('td', {}, f.id), el('td', {}, f.state), el('td', {}, f.ready ? 'yes' : 'no'), el('td', {}, `${f.pid ?? '–'} @ ${f.host || '–'}`), el('td', {}, f.port ?? '–'), el('td', {}, f.pingMs ?? '–'), el('td', {}, f.inFlight)),
  );
  if (!rows.length) rows.push(el('tr', {}, el('td', { colspan: '7' }, 'No fronts report in.')));
  $('fronts').tBodies[0].replaceChildren(...rows);
}

function renderOperation() {
  const p = $('operation');
  if (!operation) {
    p.textContent = 'No operation yet.';
    p.className = 'operation';
    return;
  }
  const what = `${operation.kind}${Object.keys(operation.args).length ? ` ${JSON.stringify(operation.args)}` : ''}`;
  const took = operation.finishedAt ? ` in ${((operation.finishedAt - operation.startedAt) / 1000).toFixed(1)} s` : '';
  p.textContent =
    operation.state === 'running'
      ? `Running: ${what} (by ${operation.by})…`
      : operation.state === 'done'
        ? `Done: ${what}, ${operation.moved} shard(s) moved${took}.`
        : `Failed: ${what}: ${operation.error}`;
  p.className = `operation ${operation.state}`;
  p.dataset.state = operation.state;
  p.dataset.kind = operation.kind;
  if (snapshot) {
    renderWorkers(snapshot);
    renderMoveForm(snapshot);
  }
}

// --- the buttons --------------------------------------------------------------------------------

async function run(path, body) {
  try {
    const res = await api('POST', path, body);
    operation = res.operation;
  } catch (e) {
    operation = { kind: path, args: body || {}, state: 'failed', error: describeError(e), startedAt: Date.now(), finishedAt: null };
  }
  renderOperation();
}

function confirmDrain(w, total) {
  if (!confirm(`Drain ${w.worker}? Its ${total} shard(s) move to the other workers, then the worker stops.`)) return;
  void run('drain', { worker: w.worker });
}

$('rebalance').addEventListener('click', () => {
  if (!confirm('Rebalance? Shards move until every live worker holds an even share.')) return;
  void run('rebalance', {});
});

$('move-form').addEventListener('submit', (ev) => {
  ev.preventDefault();
  const family = $('move-family').value;
  const shard = Number($('move-shard').value);
  const to = $('move-to').value;
  if (!confirm(`Move ${family}:${shard} to ${to}?`)) return;
  void run('move-shard', { family, shard, to });
});

$('move-family').addEventListener('change', () => snapshot && renderMoveForm(snapshot));

if (token()) void signIn();
else showLogin('');
