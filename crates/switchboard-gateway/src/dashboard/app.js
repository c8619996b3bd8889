// The Switchboard dashboard: polls /api/status, follows /api/calls/stream, lists and calls
// tools over MCP (a 2025-11-25 session on /mcp), and shows the audit log when the gateway has
// one. No framework and no external resources; every value from the server is inserted as
// text, never as HTML.
'use strict';

const TOKEN_KEY = 'switchboard.token';
const PROTOCOL = '2025-11-25';
const STATUS_EVERY_MS = 2000;
const AUDIT_EVERY_MS = 5000;
const SPARK_POINTS = 40;
const MAX_CALL_ROWS = 200;

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || '',
  latency: new Map(),
  tools: [],
  selected: null,
  session: null,
  starting: null,
  rpcId: 0,
  auditEnabled: null,
};

const $ = (id) => document.getElementById(id);

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null) continue;
    if (key === 'class') node.className = value;
    else if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

function pill(text, kind) {
  return el('span', { class: `pill pill-${kind}` }, text);
}

const HEALTH_KIND = { healthy: 'ok', degraded: 'warn', unhealthy: 'bad' };
const CIRCUIT_KIND = { closed: 'ok', half_open: 'warn', open: 'bad' };

// --- authentication --------------------------------------------------------------------------

function authHeaders(extra) {
  const headers = Object.assign({}, extra || {});
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  return headers;
}

function needToken(message) {
  const banner = $('auth-error');
  banner.textContent = message || 'This gateway requires credentials: enter a bearer token or API key.';
  banner.hidden = false;
  $('token-form').hidden = false;
}

async function api(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = authHeaders(opts.headers);
  const response = await fetch(path, opts);
  if (response.status === 401) {
    needToken();
    throw new Error('authentication required');
  }
  return response;
}

function setupToken() {
  $('token-button').addEventListener('click', () => {
    const form = $('token-form');
    form.hidden = !form.hidden;
    if (!form.hidden) $('token').focus();
  });
  $('token-form').addEventListener('submit', (event) => {
    event.preventDefault();
    state.token = $('token').value.trim();
    if (state.token) sessionStorage.setItem(TOKEN_KEY, state.token);
    else sessionStorage.removeItem(TOKEN_KEY);
    $('token').value = '';
    $('token-form').hidden = true;
    $('auth-error').hidden = true;
    state.session = null;
    refreshAll();
  });
}

// --- status: upstreams and cache -------------------------------------------------------------

function sparkline(values) {
  const width = 80;
  const height = 20;
  const ns = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('class', 'spark');
  svg.setAttribute('width', width);
  svg.setAttribute('height', height);
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  if (values.length === 1) values = [values[0], values[0]];
  if (values.length > 1) {
    const max = Math.max(...values);
    const min = Math.min(...values);
    const step = width / (SPARK_POINTS - 1);
    const offset = (SPARK_POINTS - values.length) * step;
    // Scaled between the window's minimum and maximum; a flat series sits in the middle.
    const y = (v) => (max === min ? height / 2 : height - 1 - ((v - min) / (max - min)) * (height - 2));
    const points = values.map((v, i) => `${(offset + i * step).toFixed(1)},${y(v).toFixed(1)}`).join(' ');
    const line = document.createElementNS(ns, 'polyline');
    line.setAttribute('points', points);
    svg.append(line);
  }
  return svg;
}

function renderUpstreams(status) {
  const body = $('upstreams').querySelector('tbody');
  body.replaceChildren();
  let serving = 0;
  for (const u of status.upstreams) {
    const health = u.health.state;
    if (health === 'healthy' || health === 'degraded') serving += 1;
    const samples = state.latency.get(u.name) || [];
    if (typeof u.health.last_latency_ms === 'number') {
      samples.push(u.health.last_latency_ms);
      while (samples.length > SPARK_POINTS) samples.shift();
    }
    state.latency.set(u.name, samples);
    const last = samples.length ? `${samples[samples.length - 1]} ms` : '–';
    const healthCell = el('td', null, pill(health, HEALTH_KIND[health] || 'unknown'));
    if (u.health.last_error) healthCell.title = u.health.last_error;
    body.append(
      el('tr', { 'data-upstream': u.name },
        el('td', { class: 'mono' }, u.name),
        healthCell,
        el('td', null, pill(u.circuit.replace('_', ' '), CIRCUIT_KIND[u.circuit] || 'unknown')),
        el('td', null, sparkline(samples), el('span', { class: 'muted' }, last)),
        el('td', { class: 'num' }, u.tools === null || u.tools === undefined ? '?' : u.tools),
        el('td', { class: 'num' }, u.restarts)));
  }
  const total = status.upstreams.length;
  const overall = $('overall');
  overall.textContent = `${serving}/${total} upstreams healthy`;
  overall.className = `pill pill-${serving === total && total > 0 ? 'ok' : serving > 0 ? 'warn' : 'bad'}`;
  $('version').textContent = `v${status.version} · ${status.tools} tools`;
}

function renderCache(status) {
  const body = $('cache').querySelector('tbody');
  body.replaceChildren();
  const cached = status.upstreams.filter((u) => u.cache);
  $('cache-empty').hidden = cached.length > 0;
  $('cache').hidden = cached.length === 0;
  for (const u of cached) {
    const c = u.cache;
    const total = c.hits + c.misses;
    const rate = total ? `${((100 * c.hits) / total).toFixed(1)} %` : '–';
    body.append(
      el('tr', null,
        el('td', { class: 'mono' }, u.name),
        el('td', { class: 'num' }, rate),
        el('td', { class: 'num' }, c.hits),
        el('td', { class: 'num' }, c.misses),
        el('td', { class: 'num' }, c.entries),
        el('td', null, el('button', { class: 'small', type: 'button', onclick: () => invalidate(u.name) }, 'Invalidate'))));
  }
}

async function invalidate(upstream) {
  const message = $('cache-message');
  try {
    const response = await api('/api/cache/invalidate', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ upstream }),
    });
    const body = await response.json();
    message.textContent = response.ok
      ? `Dropped ${body.dropped} cached result(s) of ${upstream}.`
      : `Could not invalidate: ${body.error || response.status}`;
  } catch (err) {
    message.textContent = `Could not invalidate: ${err.message}`;
  }
  pollStatus();
}

async function pollStatus() {
  try {
    const response = await api('/api/status');
    if (!response.ok) throw new Error(`HTTP ${response.status}`);
    const status = await response.json();
    renderUpstreams(status);
    renderCache(status);
  } catch (err) {
    const overall = $('overall');
    overall.textContent = `status unavailable: ${err.message}`;
    overall.className = 'pill pill-bad';
  }
}

// --- MCP client (2025-11-25 session on /mcp) ------------------------------------------------

async function mcpPost(message) {
  const headers = authHeaders({
    'Content-Type': 'application/json',
    Accept: 'application/json, text/event-stream',
    'MCP-Protocol-Version': PROTOCOL,
  });
  if (state.session) headers['Mcp-Session-Id'] = state.session;
  const response = await fetch('/mcp', { method: 'POST', headers, body: JSON.stringify(message) });
  if (response.status === 401) {
    needToken();
    throw new Error('authentication required');
  }
  return response;
}

// A response is JSON or an SSE stream of JSON-RPC messages (`data:` lines).
async function readMessages(response) {
  const type = response.headers.get('Content-Type') || '';
  const text = await response.text();
  if (!text.trim()) return [];
  if (!type.includes('text/event-stream')) return [JSON.parse(text)];
  const messages = [];
  for (const block of text.split(/\r?\n\r?\n/)) {
    const data = block
      .split(/\r?\n/)
      .filter((line) => line.startsWith('data:'))
      .map((line) => line.slice(5).replace(/^ /, ''))
      .join('\n');
    if (data.trim()) messages.push(JSON.parse(data));
  }
  return messages;
}

async function ensureSession() {
  if (state.session) return;
  if (!state.starting) {
    state.starting = (async () => {
      const response = await mcpPost({
        jsonrpc: '2.0',
        id: ++state.rpcId,
        method: 'initialize',
        params: {
          protocolVersion: PROTOCOL,
          capabilities: {},
          clientInfo: { name: 'switchboard-dashboard', version: '1' },
        },
      });
      if (!response.ok) throw new Error(`initialize: HTTP ${response.status} ${await response.text()}`);
      const session = response.headers.get('Mcp-Session-Id');
      await readMessages(response);
      state.session = session;
      await mcpPost({ jsonrpc: '2.0', method: 'notifications/initialized' });
    })();
  }
  try {
    await state.starting;
  } finally {
    state.starting = null;
  }
}

async function rpc(method, params) {
  await ensureSession();
  const id = ++state.rpcId;
  let response = await mcpPost({ jsonrpc: '2.0', id, method, params });
  if (response.status === 404 && state.session) {
    // The session expired (idle timeout or a gateway restart): start a new one.
    state.session = null;
    await ensureSession();
    response = await mcpPost({ jsonrpc: '2.0', id, method, params });
  }
  if (!response.ok) throw new Error(`HTTP ${response.status}: ${await response.text()}`);
  const reply = (await readMessages(response)).find((m) => m.id === id);
  if (!reply) throw new Error('the gateway sent no response');
  if (reply.error) throw new Error(`${reply.error.message} (JSON-RPC ${reply.error.code})`);
  return reply.result;
}

// --- tool catalog ------------------------------------------------------------------------------

async function loadTools() {
  try {
    const tools = [];
    let cursor;
    do {
      const result = await rpc('tools/list', cursor ? { cursor } : {});
      tools.push(...(result.tools || []));
      cursor = result.nextCursor;
    } while (cursor);
    tools.sort((a, b) => a.name.localeCompare(b.name));
    state.tools = tools;
    renderToolList();
  } catch (err) {
    $('tool-count').textContent = `could not list tools: ${err.message}`;
  }
}

function renderToolList() {
  const query = $('tool-search').value.trim().toLowerCase();
  const list = $('tool-list');
  list.replaceChildren();
  const shown = state.tools.filter(
    (t) => !query || t.name.toLowerCase().includes(query) || (t.description || '').toLowerCase().includes(query));
  for (const tool of shown) {
    const item = el('li', { 'data-tool': tool.name, onclick: () => selectTool(tool.name) },
      el('span', { class: 'name' }, tool.name),
      el('span', { class: 'desc' }, tool.title || tool.description || ''));
    if (tool.name === state.selected) item.classList.add('selected');
    list.append(item);
  }
  $('tool-count').textContent = query ? `${shown.length} of ${state.tools.length}` : `${state.tools.length}`;
}

// A starting point for the arguments: every required property with an empty value of its type.
function skeleton(schema) {
  const args = {};
  const props = (schema && schema.properties) || {};
  for (const name of (schema && schema.required) || []) {
    const prop = props[name] || {};
    const type = Array.isArray(prop.type) ? prop.type[0] : prop.type;
    args[name] = prop.default !== undefined ? prop.default
      : type === 'string' ? ''
      : type === 'integer' || type === 'number' ? 0
      : type === 'boolean' ? false
      : type === 'array' ? []
      : type === 'object' ? {}
      : null;
  }
  return args;
}

function selectTool(name) {
  const tool = state.tools.find((t) => t.name === name);
  if (!tool) return;
  state.selected = name;
  for (const item of $('tool-list').children) item.classList.toggle('selected', item.dataset.tool === name);
  const detail = $('tool-detail');
  detail.replaceChildren($('detail-template').content.cloneNode(true));
  detail.querySelector('.tool-name').textContent = tool.name;
  detail.querySelector('.tool-description').textContent = tool.description || '';
  const annotations = detail.querySelector('.annotations');
  const a = tool.annotations || {};
  if (a.readOnlyHint) annotations.append(pill('read-only', 'ok'));
  if (a.destructiveHint) annotations.append(pill('destructive', 'bad'));
  if (a.idempotentHint) annotations.append(pill('idempotent', 'unknown'));
  if (a.openWorldHint) annotations.append(pill('open world', 'warn'));
  if (a.title) annotations.append(el('span', { class: 'muted' }, a.title));
  detail.querySelector('.input-schema').textContent = JSON.stringify(tool.inputSchema || {}, null, 2);
  if (tool.outputSchema) {
    detail.querySelector('.output-schema').textContent = JSON.stringify(tool.outputSchema, null, 2);
  } else {
    detail.querySelector('.output-wrap').remove();
  }
  $('try-args').value = JSON.stringify(skeleton(tool.inputSchema), null, 2);
  $('try-form').addEventListener('submit', (event) => {
    event.preventDefault();
    tryTool(tool.name);
  });
}

async function tryTool(name) {
  const status = $('try-status');
  const output = $('try-result');
  const button = $('try-call');
  let args;
  try {
    args = JSON.parse($('try-args').value || '{}');
  } catch (err) {
    status.textContent = `The arguments are not valid JSON: ${err.message}`;
    return;
  }
  button.disabled = true;
  status.textContent = 'Calling…';
  const started = performance.now();
  try {
    const result = await rpc('tools/call', { name, arguments: args });
    const texts = (result.content || []).filter((c) => c.type === 'text').map((c) => c.text);
    // The text rendering reads best; structured content when there is no text.
    const shown = texts.length
      ? texts.join('\n')
      : JSON.stringify(result.structuredContent !== undefined ? result.structuredContent : result, null, 2);
    output.textContent = shown;
    output.classList.toggle('error', result.isError === true);
    status.textContent = `${result.isError ? 'Tool error' : 'OK'} in ${Math.round(performance.now() - started)} ms`;
  } catch (err) {
    output.textContent = err.message;
    output.classList.add('error');
    status.textContent = 'Failed';
  } finally {
    output.hidden = false;
    button.disabled = false;
  }
}

// --- live call stream --------------------------------------------------------------------------

function addCall(call) {
  const body = $('calls').querySelector('tbody');
  const kind = call.outcome === 'ok' ? 'ok' : call.outcome === 'tool_error' ? 'warn' : 'bad';
  const time = new Date(call.time);
  body.prepend(
    el('tr', { 'data-tool': call.tool },
      el('td', { class: 'mono', title: call.time }, time.toLocaleTimeString()),
      el('td', { class: 'mono', title: call.upstream }, call.tool),
      el('td', null, call.identity || el('span', { class: 'muted' }, 'anonymous')),
      el('td', { class: 'num' }, `${call.latency_ms.toFixed(1)} ms`),
      el('td', null, pill(call.outcome, kind))));
  while (body.children.length > MAX_CALL_ROWS) body.lastElementChild.remove();
}

function setStreamState(text, kind) {
  const badge = $('calls-state');
  badge.textContent = text;
  badge.className = `pill pill-${kind}`;
}

// fetch() rather than EventSource, so the request can carry the Authorization header.
async function followCalls() {
  for (;;) {
    try {
      const response = await api('/api/calls/stream', { headers: { Accept: 'text/event-stream' } });
      if (!response.ok || !response.body) throw new Error(`HTTP ${response.status}`);
      setStreamState('live', 'ok');
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      let buffer = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buffer += decoder.decode(value, { stream: true });
        let end;
        while ((end = buffer.search(/\r?\n\r?\n/)) >= 0) {
          const block = buffer.slice(0, end);
          buffer = buffer.slice(end).replace(/^\r?\n\r?\n/, '');
          let event = 'message';
          const data = [];
          for (const line of block.split(/\r?\n/)) {
            if (line.startsWith('event:')) event = line.slice(6).trim();
            else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
          }
          if (event === 'call' && data.length) addCall(JSON.parse(data.join('\n')));
          if (event === 'lagged') setStreamState(`missed ${data.join('')} calls`, 'warn');
        }
      }
      setStreamState('reconnecting', 'warn');
    } catch (err) {
      setStreamState(err.message === 'authentication required' ? 'needs a token' : 'disconnected', 'bad');
    }
    await new Promise((resolve) => setTimeout(resolve, 2000));
  }
}

// --- audit log -----------------------------------------------------------------------------

const AUDIT_COLUMNS = ['time', 'timestamp', 'identity', 'subject', 'tool', 'upstream', 'outcome', 'status', 'latency_ms', 'duration_ms'];

function auditEntries(body) {
  if (Array.isArray(body)) return body;
  for (const key of ['entries', 'records', 'events', 'items']) {
    if (body && Array.isArray(body[key])) return body[key];
  }
  return [];
}

function renderValue(value) {
  if (value === null || value === undefined) return '';
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

async function pollAudit() {
  const target = $('audit');
  try {
    const response = await api('/api/audit?limit=50');
    if (!response.ok) {
      state.auditEnabled = false;
      target.replaceChildren(el('p', { class: 'muted', id: 'audit-disabled' }, 'Audit log not enabled.'));
      return;
    }
    state.auditEnabled = true;
    const entries = auditEntries(await response.json());
    if (!entries.length) {
      target.replaceChildren(el('p', { class: 'muted' }, 'No audit entries yet.'));
      return;
    }
    const keys = Object.keys(entries[0]);
    const columns = AUDIT_COLUMNS.filter((c) => keys.includes(c));
    const used = columns.length ? columns : keys.slice(0, 8);
    const table = el('table', { id: 'audit-table' },
      el('thead', null, el('tr', null, ...used.map((c) => el('th', null, c.replace('_', ' '))))),
      el('tbody', null, ...entries.map((entry) =>
        el('tr', null, ...used.map((c) => el('td', { class: 'mono' }, renderValue(entry[c])))))));
    target.replaceChildren(el('div', { class: 'scroll tall' }, table));
  } catch (err) {
    target.replaceChildren(el('p', { class: 'muted' }, `Audit log unavailable: ${err.message}`));
  }
}

// --- start -----------------------------------------------------------------------------------

function refreshAll() {
  pollStatus();
  loadTools();
  pollAudit();
}

document.addEventListener('DOMContentLoaded', () => {
  setupToken();
  $('tool-search').addEventListener('input', renderToolList);
  refreshAll();
  followCalls();
  setInterval(pollStatus, STATUS_EVERY_MS);
  setInterval(() => {
    if (state.auditEnabled) pollAudit();
  }, AUDIT_EVERY_MS);
});
