// Hookline portal: plain JavaScript, no build step. Every call goes to the
// API's own /v1/ operations under /portal/api, as this page's session.
'use strict';

const S = { token: null, session: null };
const PAGE = 20;
// STORY_PAGES bounds the pages of an event's attempts its story reads.
const STORY_PAGES = 10;

// ---- DOM helpers --------------------------------------------------------

function h(tag, attrs, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return el;
}

function svg(tag, attrs, ...kids) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  for (const kid of kids.flat()) el.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  return el;
}

const main = () => document.getElementById('main');

function show(...nodes) {
  const m = main();
  m.replaceChildren(...nodes.filter((n) => n !== null && n !== undefined && n !== false));
  const h1 = m.querySelector('h1');
  if (h1) { h1.setAttribute('tabindex', '-1'); h1.focus(); } else m.focus();
}

function say(msg, error) {
  const st = document.getElementById('status');
  st.className = 'status' + (error ? ' error' : '');
  st.textContent = msg || '';
}

function fmtTime(t) {
  if (!t) return '–';
  const d = new Date(t);
  return isNaN(d) ? t : d.toLocaleString();
}

function ms(seconds) { return (seconds * 1000).toFixed(seconds < 0.01 ? 1 : 0) + ' ms'; }

function pill(text, cls) { return h('span', { class: 'pill ' + (cls || '') }, text); }

function outcomePill(o) {
  return pill(o, o === 'success' || o === 'delivered' ? 'ok' : o === 'retry' || o === 'retrying' || o === 'pending' ? 'warn' : 'bad');
}

function table(caption, headers, rows) {
  return h('div', { class: 'table' }, h('table', {},
    h('caption', {}, caption),
    h('thead', {}, h('tr', {}, headers.map((x) => h('th', { scope: 'col', class: x.cls || null }, x.label || x)))),
    h('tbody', {}, rows.length ? rows : h('tr', {}, h('td', { colspan: headers.length, class: 'muted' }, 'Nothing here.')))));
}

// ---- API ----------------------------------------------------------------

class APIError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || 'HTTP ' + status);
    this.status = status;
    this.problem = problem;
  }
}

async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (S.token) headers.Authorization = 'Bearer ' + S.token;
  if (S.session && method !== 'GET') headers['X-Hookline-CSRF'] = S.session.csrf_token;
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const resp = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), credentials: 'same-origin', cache: 'no-store' });
  const text = await resp.text();
  const data = text ? JSON.parse(text) : null;
  if (!resp.ok) {
    if (resp.status === 401 && path !== '/portal/api/session') ended(data && data.detail);
    throw new APIError(resp.status, data);
  }
  return data;
}

const api = (method, path, body) => call(method, '/portal/api/v1' + path, body);

function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== '' && v !== null && v !== undefined) u.set(k, v);
  const s = u.toString();
  return s ? '?' + s : '';
}

function limited() { return !!(S.session && S.session.subscription_ids); }
function readOnly() { return !!(S.session && S.session.read_only); }

// run wraps an action: its button is disabled meanwhile, errors are said.
async function run(btn, fn) {
  if (btn) btn.disabled = true;
  try { await fn(); } catch (e) { say(e.message, true); } finally { if (btn) btn.disabled = false; }
}

// ---- session ------------------------------------------------------------

function ended(detail) {
  S.session = null;
  S.token = null;
  document.getElementById('signout').hidden = true;
  document.getElementById('who').textContent = '';
  say('');
  show(h('h1', {}, 'Session ended'), h('p', { id: 'ended' }, detail || 'This portal session is no longer valid.'),
    h('p', { class: 'muted' }, 'Open the portal again from your platform.'));
}

let booted = false;

async function boot() {
  const m = /^#session=([A-Za-z0-9_.-]+)$/.exec(location.hash);
  S.session = null;
  S.token = null;
  try {
    if (m) {
      // The token leaves the address bar (and history) at once; the
      // exchange sets the HttpOnly cookie. The token stays in memory only.
      S.token = m[1];
      history.replaceState(null, '', location.pathname + '#/');
      S.session = await call('POST', '/portal/api/session');
    } else {
      S.session = await call('GET', '/portal/api/session');
    }
  } catch (e) {
    ended(e.message);
    return;
  }
  document.getElementById('who').textContent = S.session.tenant + (S.session.read_only ? ' · read-only' : '');
  document.getElementById('signout').hidden = false;
  if (!booted) {
    booted = true;
    const so = document.getElementById('signout');
    so.addEventListener('click', () => run(so, async () => { await call('DELETE', '/portal/api/session'); ended('You signed out.'); }));
  }
  route();
}

// A new session link opened in this tab changes only the fragment: take
// its session.
window.addEventListener('hashchange', () => { if (location.hash.startsWith('#session=')) boot(); else route(); });

// ---- routing ------------------------------------------------------------

function route() {
  if (!S.session) return;
  say('');
  const parts = location.hash.replace(/^#\/?/, '').split('?')[0].split('/').filter(Boolean).map(decodeURIComponent);
  const r = (async () => {
    if (parts.length === 0) return endpoints();
    if (parts[0] === 'new') return createEndpoint();
    if (parts[0] === 'endpoints' && parts[1]) {
      const id = parts[1];
      switch (parts[2] || '') {
        case '': return endpoint(id);
        case 'deliveries': return deliveries(id);
        case 'events': return story(id, parts[3]);
        case 'recovery': return recovery(id);
        case 'health': return health(id);
      }
    }
    show(h('h1', {}, 'Not found'), h('p', {}, h('a', { href: '#/' }, 'Back to endpoints')));
  })();
  r.catch((e) => { if (S.session) show(h('h1', {}, 'Something went wrong'), h('p', { class: 'bad' }, e.message), h('p', {}, h('a', { href: '#/' }, 'Back to endpoints'))); });
}

// ---- endpoints ----------------------------------------------------------

async function endpoints() {
  const body = h('div', {});
  const more = h('button', { type: 'button', class: 'secondary', hidden: true }, 'Load more');
  let cursor = '';
  const rows = h('tbody', {});
  const load = async () => {
    const page = await api('GET', '/subscriptions' + qs({ tenant: S.session.tenant, limit: PAGE, cursor }));
    for (const s of page.subscriptions) {
      rows.append(h('tr', {},
        h('td', {}, h('a', { href: '#/endpoints/' + encodeURIComponent(s.id) }, s.url)),
        h('td', { class: 'hide-sm' }, s.description || ''),
        h('td', { class: 'hide-sm' }, s.event_types.join(', ')),
        h('td', {}, s.disabled ? pill('disabled' + (s.disabled_reason ? ': ' + s.disabled_reason : ''), 'bad') : pill('enabled', 'ok'))));
    }
    cursor = page.next_cursor || '';
    more.hidden = !cursor;
    if (!rows.children.length) rows.append(h('tr', {}, h('td', { colspan: 4, class: 'muted' }, 'No endpoints yet.')));
  };
  more.addEventListener('click', () => run(more, load));
  body.append(h('div', { class: 'table' }, h('table', {},
    h('caption', {}, 'Your endpoints'),
    h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, 'URL'), h('th', { scope: 'col', class: 'hide-sm' }, 'Description'),
      h('th', { scope: 'col', class: 'hide-sm' }, 'Event types'), h('th', { scope: 'col' }, 'State'))),
    rows)), more);
  const add = !readOnly() && !limited() ? h('p', {}, h('a', { href: '#/new', id: 'add-endpoint' }, '+ Add endpoint')) : null;
  show(h('h1', {}, 'Endpoints'), add, body);
  await load();
}

// knownTypes are the event types seen in the recent event log (a page,
// never all of it).
async function knownTypes() {
  if (limited()) return [];
  try {
    const page = await api('GET', '/events' + qs({ limit: 200 }));
    return [...new Set(page.events.map((e) => e.type))].sort();
  } catch (e) { return []; }
}

function typePicker(types, selected) {
  const extra = selected.filter((t) => !types.includes(t));
  const boxes = types.map((t) => h('label', { class: 'check' },
    h('input', { type: 'checkbox', name: 'type', value: t, checked: selected.includes(t) }), t));
  return h('fieldset', {},
    h('legend', {}, 'Event types'),
    types.length ? h('div', { role: 'group', 'aria-label': 'Event types seen recently' }, boxes) : h('p', { class: 'muted' }, 'No events seen yet: type the types below.'),
    h('label', { for: 'types-extra' }, 'Other types or filters ', h('span', { class: 'hint' }, '(comma-separated; order.* matches one word, invoice.> the rest)')),
    h('input', { type: 'text', id: 'types-extra', name: 'types_extra', value: extra.join(', '), autocomplete: 'off' }));
}

function pickedTypes(form) {
  const picked = [...form.querySelectorAll('input[name=type]:checked')].map((i) => i.value);
  const extra = form.elements.types_extra.value.split(',').map((s) => s.trim()).filter(Boolean);
  return [...new Set([...picked, ...extra])];
}

function fieldErrors(e) {
  if (e.problem && e.problem.errors) return e.problem.errors.map((x) => x.field + ': ' + x.message).join('; ');
  return e.message;
}

async function createEndpoint() {
  const types = await knownTypes();
  const form = h('form', { class: 'stack', novalidate: true },
    h('div', {}, h('label', { for: 'url' }, 'Endpoint URL'), h('input', { type: 'url', id: 'url', name: 'url', required: true, placeholder: 'https://example.com/webhooks', autocomplete: 'off' })),
    h('div', {}, h('label', { for: 'description' }, 'Description ', h('span', { class: 'hint' }, '(optional)')), h('input', { type: 'text', id: 'description', name: 'description', autocomplete: 'off' })),
    typePicker(types, []),
    h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'create' }, 'Create endpoint'), h('a', { href: '#/' }, 'Cancel')));
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    run(form.querySelector('button[type=submit]'), async () => {
      try {
        const s = await api('POST', '/subscriptions', { tenant: S.session.tenant, url: form.elements.url.value.trim(), description: form.elements.description.value.trim(), event_types: pickedTypes(form) });
        S.revealed = { id: s.id, secret: s.secret };
        location.hash = '#/endpoints/' + encodeURIComponent(s.id);
      } catch (e) { say(fieldErrors(e), true); }
    });
  });
  show(h('h1', {}, 'Add an endpoint'), form);
}

function tabs(id, current) {
  const t = (slug, label) => h('a', { href: '#/endpoints/' + encodeURIComponent(id) + (slug ? '/' + slug : ''), 'aria-current': current === slug ? 'page' : null }, label);
  return h('nav', { class: 'tabs', 'aria-label': 'Endpoint' }, t('', 'Overview'), t('deliveries', 'Deliveries'), t('recovery', 'Recovery'), t('health', 'Health'));
}

function secretBox(secret) {
  return h('div', { class: 'secret', id: 'secret-box' },
    h('p', {}, h('strong', {}, 'Signing secret — shown once. '), 'Copy it now: it is not shown again (rotate it to get a new one).'),
    h('p', {}, h('code', { id: 'secret' }, secret)),
    h('button', { type: 'button', class: 'secondary', onclick: (e) => run(e.target, async () => { await navigator.clipboard.writeText(secret); say('Secret copied.'); }) }, 'Copy secret'));
}

function snippet(scheme) {
  const key = scheme === 'v1a' ? 'whpk_… (the public key)' : 'whsec_… (your secret)';
  return h('details', {},
    h('summary', {}, 'Verify the signature (Standard Webhooks)'),
    h('p', {}, 'Each request carries webhook-id, webhook-timestamp and webhook-signature headers. Verify them on the raw body with a Standard Webhooks library:'),
    h('pre', {}, '// Node: npm install standardwebhooks\nimport { Webhook } from "standardwebhooks";\nconst wh = new Webhook(process.env.WEBHOOK_SECRET); // ' + key + '\nconst payload = wh.verify(rawBody, req.headers); // throws when not valid'),
    h('pre', {}, '# Python: pip install standardwebhooks\nfrom standardwebhooks.webhooks import Webhook\nwh = Webhook(os.environ["WEBHOOK_SECRET"])\npayload = wh.verify(raw_body, request.headers)'),
    h('pre', {}, '// Go: github.com/standard-webhooks/standard-webhooks/libraries/go\nwh, _ := standardwebhooks.NewWebhook(os.Getenv("WEBHOOK_SECRET"))\nerr := wh.Verify(body, r.Header) // nil when valid'),
    h('p', { class: 'muted' }, 'Deduplicate on webhook-id: a retried or replayed event keeps its id.'));
}

async function endpoint(id) {
  const s = await api('GET', '/subscriptions/' + encodeURIComponent(id));
  const types = await knownTypes();
  const ro = readOnly();
  const revealed = S.revealed && S.revealed.id === id ? S.revealed.secret : null;
  S.revealed = null;
  const secretSlot = h('div', {}, revealed ? secretBox(revealed) : null);
  const form = h('form', { class: 'stack', novalidate: true },
    h('div', {}, h('label', { for: 'url' }, 'Endpoint URL'), h('input', { type: 'url', id: 'url', name: 'url', value: s.url, required: true, disabled: ro })),
    h('div', {}, h('label', { for: 'description' }, 'Description'), h('input', { type: 'text', id: 'description', name: 'description', value: s.description || '', disabled: ro })),
    typePicker(types, s.event_types),
    ro ? null : h('div', { class: 'actions' }, h('button', { type: 'submit', id: 'save' }, 'Save changes')));
  if (ro) form.querySelectorAll('input').forEach((i) => { i.disabled = true; });
  form.addEventListener('submit', (ev) => {
    ev.preventDefault();
    run(form.querySelector('button[type=submit]'), async () => {
      try {
        await api('PATCH', '/subscriptions/' + encodeURIComponent(id), { url: form.elements.url.value.trim(), description: form.elements.description.value.trim(), event_types: pickedTypes(form) });
        say('Saved.');
      } catch (e) { say(fieldErrors(e), true); }
    });
  });
  const state = h('p', {}, 'State: ', s.disabled ? pill('disabled' + (s.disabled_reason ? ': ' + s.disabled_reason : ''), 'bad') : pill('enabled', 'ok'));
  const actions = ro ? null : h('div', { class: 'actions' },
    h('button', { type: 'button', id: 'send-test', class: 'secondary', onclick: (e) => run(e.target, async () => {
      const r = await api('POST', '/subscriptions/' + encodeURIComponent(id) + '/test');
      say('Test event ' + r.event_id + ' sent. ');
      document.getElementById('status').append(h('a', { href: '#/endpoints/' + encodeURIComponent(id) + '/events/' + encodeURIComponent(r.event_id) }, 'Follow it'));
    }) }, 'Send test event'),
    h('button', { type: 'button', id: 'toggle', class: 'secondary', onclick: (e) => run(e.target, async () => {
      await api('PATCH', '/subscriptions/' + encodeURIComponent(id), { disabled: !s.disabled });
      route();
    }) }, s.disabled ? 'Enable' : 'Disable'),
    h('button', { type: 'button', id: 'rotate', class: 'secondary', onclick: (e) => run(e.target, async () => {
      if (!confirm('Rotate the signing secret? The old one keeps signing for a while next to the new one.')) return;
      const r = await api('POST', '/subscriptions/' + encodeURIComponent(id) + '/rotate-secret');
      secretSlot.replaceChildren(secretBox(r.secret));
      say('Secret rotated.');
    }) }, 'Rotate secret'),
    h('button', { type: 'button', id: 'delete', class: 'danger', onclick: (e) => run(e.target, async () => {
      if (!confirm('Delete this endpoint? It receives nothing more.')) return;
      await api('DELETE', '/subscriptions/' + encodeURIComponent(id));
      location.hash = '#/';
      say('Endpoint deleted.');
    }) }, 'Delete'));
  show(h('h1', {}, s.url), tabs(id, ''), state, secretSlot, actions,
    h('dl', { class: 'kv' }, h('dt', {}, 'Id'), h('dd', {}, h('code', {}, s.id)), h('dt', {}, 'Created'), h('dd', {}, fmtTime(s.created_at)),
      h('dt', {}, 'Signature'), h('dd', {}, s.signature_scheme || 'v1'), h('dt', {}, 'Payload'), h('dd', {}, s.payload_format || 'envelope')),
    h('h2', {}, 'Settings'), form, h('h2', {}, 'Verification'), snippet(s.signature_scheme));
}

// ---- deliveries ---------------------------------------------------------

function toRFC3339(local) { return local ? new Date(local).toISOString() : ''; }

async function deliveries(id) {
  const s = await api('GET', '/subscriptions/' + encodeURIComponent(id));
  const f = h('form', { class: 'filters', id: 'filters' },
    h('label', {}, 'Outcome', h('select', { name: 'outcome' }, h('option', { value: '' }, 'any'), ['success', 'retry', 'dead_letter'].map((o) => h('option', { value: o }, o)))),
    h('label', {}, 'HTTP status ', h('input', { type: 'text', name: 'status', placeholder: '5xx, 429, 0', autocomplete: 'off' })),
    h('label', {}, 'Event type ', h('input', { type: 'text', name: 'type', placeholder: 'order.*', autocomplete: 'off' })),
    h('label', {}, 'Since ', h('input', { type: 'datetime-local', name: 'since' })),
    h('label', {}, 'Until ', h('input', { type: 'datetime-local', name: 'until' })),
    h('button', { type: 'submit' }, 'Apply'));
  const rows = h('tbody', {});
  const more = h('button', { type: 'button', class: 'secondary', hidden: true }, 'Older');
  let cursor = '';
  const load = async (reset) => {
    if (reset) { rows.replaceChildren(); cursor = ''; }
    const page = await api('GET', '/subscriptions/' + encodeURIComponent(id) + '/attempts' + qs({
      limit: PAGE, cursor, outcome: f.elements.outcome.value, status: f.elements.status.value.trim(), type: f.elements.type.value.trim(),
      since: toRFC3339(f.elements.since.value), until: toRFC3339(f.elements.until.value) }));
    for (const a of page.attempts) {
      rows.append(h('tr', {},
        h('td', {}, fmtTime(a.started_at)),
        h('td', {}, h('a', { href: '#/endpoints/' + encodeURIComponent(id) + '/events/' + encodeURIComponent(a.event_id) }, a.event_id)),
        h('td', { class: 'hide-sm' }, a.event_type),
        h('td', { class: 'num' }, a.attempt),
        h('td', { class: 'num' }, a.status || '–'),
        h('td', {}, outcomePill(a.outcome)),
        h('td', { class: 'num' }, ms(a.duration_seconds)),
        h('td', { class: 'hide-sm excerpt', title: a.response_excerpt || a.error || '' }, a.response_excerpt || a.error || '')));
    }
    if (!rows.children.length) rows.append(h('tr', {}, h('td', { colspan: 8, class: 'muted' }, 'No attempts match.')));
    cursor = page.next_cursor || '';
    more.hidden = !cursor;
  };
  f.addEventListener('submit', (ev) => { ev.preventDefault(); run(f.querySelector('button'), () => load(true)); });
  more.addEventListener('click', () => run(more, () => load(false)));
  show(h('h1', {}, s.url), tabs(id, 'deliveries'), f,
    h('div', { class: 'table' }, h('table', { id: 'attempts' }, h('caption', {}, 'Delivery attempts, newest first'),
      h('thead', {}, h('tr', {}, ['Time', 'Event', 'Type', 'Attempt', 'Status', 'Outcome', 'Latency', 'Response'].map((x, i) =>
        h('th', { scope: 'col', class: i === 2 || i === 7 ? 'hide-sm' : null }, x)))), rows)), more);
  await load(true);
}

async function story(id, eventId) {
  // A test event is not in the event log (nor one older than it keeps):
  // its attempts still tell its story.
  const missing = (e) => { if (e.status === 404) return null; throw e; };
  const [ev, states] = await Promise.all([
    api('GET', '/events/' + encodeURIComponent(eventId) + qs({ tenant: S.session.tenant })).catch(missing),
    api('GET', '/events/' + encodeURIComponent(eventId) + '/deliveries' + qs({ tenant: S.session.tenant })).catch(missing),
  ]);
  // Its attempts, oldest first from the time the event was stored: a page
  // reads a bounded stretch of the subscription's records, so follow the
  // cursor (at most STORY_PAGES pages) to reach its later retries.
  const atts = { attempts: [] };
  let cursor = '', more = false;
  for (let i = 0; i < STORY_PAGES; i++) {
    const page = await api('GET', '/subscriptions/' + encodeURIComponent(id) + '/attempts' + qs({
      event_id: eventId, order: 'asc', limit: 100, since: ev ? ev.received_at : '', cursor }));
    atts.attempts.push(...page.attempts);
    cursor = page.next_cursor || '';
    more = !!cursor;
    if (!cursor) break;
  }
  const last = atts.attempts[atts.attempts.length - 1];
  const matched = ev && (ev.subscriptions || []).find((x) => x.id === id);
  const st = (states && states.deliveries.find((d) => d.subscription_id === id)) ||
    (last && { state: last.outcome === 'success' ? 'delivered' : last.outcome === 'retry' ? 'retrying' : 'dead_lettered' });
  const job = h('div', {});
  const resend = readOnly() || !ev ? null : h('button', { type: 'button', id: 'resend', onclick: (e) => run(e.target, async () => {
    const j = await api('POST', '/replays', { source: 'events', subscription_id: id, event_id: eventId });
    watch(j, job);
  }) }, 'Resend this event');
  show(h('h1', {}, 'Event ' + eventId), tabs(id, 'deliveries'),
    h('dl', { class: 'kv' }, h('dt', {}, 'Type'), h('dd', {}, ev ? ev.type : last ? last.event_type : '–'),
      h('dt', {}, 'Occurred'), h('dd', {}, ev ? fmtTime(ev.occurred_at) : '–'),
      h('dt', {}, 'Received'), h('dd', {}, ev ? fmtTime(ev.received_at) : '–'),
      h('dt', {}, 'State'), h('dd', { id: 'delivery-state' }, st ? outcomePill(st.state) : '–', st && st.reason ? ' ' + st.reason : '')),
    h('div', { class: 'actions' }, resend), job,
    h('h2', {}, 'Request headers'),
    matched ? table('Headers each attempt sends (secrets are never shown)', ['Header', 'Value', ''],
      matched.request_headers.map((x) => h('tr', {}, h('td', {}, h('code', {}, x.name)), h('td', {}, h('code', {}, x.value || '…')), h('td', { class: 'muted' }, x.note || ''))))
      : h('p', { class: 'muted' }, 'Not shown: the event is not in the event log, or this endpoint no longer takes its type.'),
    h('h2', {}, 'Request body (data)'),
    ev ? h('pre', {}, JSON.stringify(ev.data, null, 2)) : h('p', { class: 'muted' }, 'Not in the event log: a test event, or older than the log keeps.'),
    h('h2', {}, 'Attempts'),
    more ? h('p', { class: 'muted' }, 'Later attempts may follow: only the records of the first stretch after the event were read.') : null,
    table('Each attempt and what the endpoint answered', ['#', 'Time', 'Status', 'Outcome', 'Latency', 'Response or error'],
      atts.attempts.map((a) => h('tr', {}, h('td', { class: 'num' }, a.attempt), h('td', {}, fmtTime(a.started_at)), h('td', { class: 'num' }, a.status || '–'),
        h('td', {}, outcomePill(a.outcome)), h('td', { class: 'num' }, ms(a.duration_seconds)), h('td', {}, h('code', {}, a.response_excerpt || a.error || ''))))));
}

// ---- recovery -----------------------------------------------------------

// watch polls a replay job until it ends, showing its progress.
function watch(j, slot) {
  const bar = h('progress', { max: Math.max(j.total, 1), value: j.done, 'aria-label': 'Replay progress' });
  const text = h('p', { id: 'job-state', role: 'status' });
  const cancel = h('button', { type: 'button', class: 'secondary', onclick: (e) => run(e.target, async () => { await api('DELETE', '/replays/' + encodeURIComponent(j.id)); }) }, 'Cancel');
  slot.replaceChildren(h('h2', {}, 'Replay job'), bar, text, cancel);
  const paint = (x) => {
    bar.max = Math.max(x.total, 1);
    bar.value = x.done + x.failed + x.gone + (x.skipped || 0);
    text.textContent = x.state + ': ' + x.done + ' of ' + x.total + ' replayed' + (x.failed ? ', ' + x.failed + ' refused' : '') +
      (x.gone ? ', ' + x.gone + ' gone' : '') + (x.last_error ? ' — ' + x.last_error : '');
    cancel.hidden = x.state !== 'running';
  };
  paint(j);
  const tick = async () => {
    if (!document.body.contains(text)) return;
    try {
      const x = await api('GET', '/replays/' + encodeURIComponent(j.id));
      paint(x);
      if (x.state === 'running') setTimeout(tick, 1000);
    } catch (e) { say(e.message, true); }
  };
  if (j.state === 'running') setTimeout(tick, 500);
}

async function recovery(id) {
  const s = await api('GET', '/subscriptions/' + encodeURIComponent(id));
  const hl = await api('GET', '/subscriptions/' + encodeURIComponent(id) + '/health').catch(() => null);
  const broke = hl && hl.circuit && hl.circuit.failing_since;
  const rows = h('tbody', {});
  const more = h('button', { type: 'button', class: 'secondary', hidden: true }, 'Older');
  let cursor = '';
  const load = async () => {
    const page = await api('GET', '/dead-letters' + qs({ subscription_id: id, limit: PAGE, cursor }));
    for (const d of page.dead_letters) {
      rows.append(h('tr', {}, h('td', {}, fmtTime(d.dead_lettered_at)),
        h('td', {}, h('a', { href: '#/endpoints/' + encodeURIComponent(id) + '/events/' + encodeURIComponent(d.event_id) }, d.event_id)),
        h('td', { class: 'hide-sm' }, d.event_type), h('td', {}, d.reason), h('td', { class: 'num' }, d.last_status || '–'), h('td', { class: 'num' }, d.attempts)));
    }
    if (!rows.children.length) rows.append(h('tr', {}, h('td', { colspan: 6, class: 'muted' }, 'No dead letters.')));
    cursor = page.next_cursor || '';
    more.hidden = !cursor;
  };
  more.addEventListener('click', () => run(more, load));
  const job = h('div', {});
  const result = h('div', { id: 'dry-run', role: 'status' });
  const f = h('form', { class: 'filters', id: 'replay-form' },
    h('label', {}, 'Dead-lettered since ', h('span', { class: 'hint' }, '(empty: all)'), h('input', { type: 'datetime-local', name: 'since' })),
    h('label', {}, 'Event type ', h('span', { class: 'hint' }, '(empty: all; order.*)'), h('input', { type: 'text', name: 'type', placeholder: 'order.*', autocomplete: 'off' })),
    h('button', { type: 'submit', id: 'dry-run-btn' }, 'Count (dry run)'));
  if (broke) {
    f.append(h('button', { type: 'button', class: 'secondary', onclick: () => {
      const d = new Date(broke);
      f.elements.since.value = new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 16);
    } }, 'Since the endpoint broke'));
  }
  const filter = () => ({ source: 'dead_letters', subscription_id: id, since: toRFC3339(f.elements.since.value) || undefined,
    type: f.elements.type.value.trim() || undefined });
  f.addEventListener('submit', (ev) => {
    ev.preventDefault();
    run(f.querySelector('button[type=submit]'), async () => {
      const d = await api('POST', '/replays', { ...filter(), dry_run: true });
      const go = h('button', { type: 'button', id: 'replay-btn', disabled: d.count === 0, onclick: (e) => run(e.target, async () => {
        const j = await api('POST', '/replays', { ...filter(), rate: 0 });
        result.replaceChildren();
        watch(j, job);
      }) }, 'Replay ' + d.count + ' dead letter' + (d.count === 1 ? '' : 's'));
      result.replaceChildren(h('p', { id: 'dry-run-count' }, d.count + ' dead letter' + (d.count === 1 ? '' : 's') + ' would be replayed' + (d.count ? ', oldest first.' : '.')), go);
    });
  });
  const form = readOnly() ? h('p', { class: 'muted' }, 'This session is read-only.') : h('div', {}, f, result, job);
  show(h('h1', {}, s.url), tabs(id, 'recovery'),
    s.disabled ? h('p', { class: 'bad' }, 'This endpoint is disabled (' + (s.disabled_reason || 'by hand') + '): enable it before replaying, or the replayed events are dead-lettered again.') : null,
    h('h2', {}, 'Replay dead letters'), form,
    h('h2', {}, 'Dead letters'),
    h('div', { class: 'table' }, h('table', { id: 'dead-letters' }, h('caption', {}, 'Events that were not delivered, newest first'),
      h('thead', {}, h('tr', {}, ['Dead-lettered', 'Event', 'Type', 'Reason', 'Last status', 'Attempts'].map((x, i) => h('th', { scope: 'col', class: i === 2 ? 'hide-sm' : null }, x)))), rows)), more);
  await load();
}

// ---- health -------------------------------------------------------------

function chart(buckets) {
  const w = 600, hgt = 120, pad = 18;
  const max = Math.max(1, ...buckets.map((b) => b.successes + b.failures));
  const bw = (w - pad) / buckets.length;
  const g = svg('svg', { class: 'chart', viewBox: `0 0 ${w} ${hgt + pad}`, role: 'img', 'aria-label': 'Attempts per five minutes over the last hour: successes in green, failures in red' });
  buckets.forEach((b, i) => {
    const x = pad + i * bw + 2;
    const sh = (b.successes / max) * hgt, fh = (b.failures / max) * hgt;
    g.append(svg('rect', { class: 's', x, y: hgt - sh, width: bw - 4, height: sh }, svg('title', {}, `${b.successes} delivered`)));
    g.append(svg('rect', { class: 'f', x, y: hgt - sh - fh, width: bw - 4, height: fh }, svg('title', {}, `${b.failures} failed`)));
  });
  g.append(svg('text', { x: pad, y: hgt + 14 }, '−60 min'), svg('text', { x: w - 30, y: hgt + 14 }, 'now'), svg('text', { x: 0, y: 10 }, String(max)));
  return g;
}

function card(k, v, cls) { return h('div', { class: 'card' }, h('div', { class: 'k' }, k), h('div', { class: 'v ' + (cls || '') }, v)); }

// deferrals reads "12 (rate_limited 10, circuit_open 2)".
function deferrals(d) {
  if (!d) return '–';
  const by = Object.entries(d.by_reason || {}).sort((a, b) => b[1] - a[1]).map(([r, n]) => r + ' ' + n);
  return d.total + (by.length ? ' (' + by.join(', ') + ')' : '');
}

function pct(x) { return (x * 100).toFixed(1) + ' %'; }

async function health(id) {
  const s = await api('GET', '/subscriptions/' + encodeURIComponent(id));
  const x = await api('GET', '/subscriptions/' + encodeURIComponent(id) + '/health');
  const c = x.circuit;
  const circ = c.state === 'closed' ? 'closed' : c.state === 'open' ? 'open' : 'half-open';
  show(h('h1', {}, s.url), tabs(id, 'health'),
    x.live_unavailable ? h('p', { class: 'warn' }, 'Live state unavailable: ' + x.live_unavailable) : null,
    x.disabled ? h('p', { class: 'bad', id: 'disabled-reason' }, 'Disabled: ' + (x.disabled_reason || 'by hand')) : null,
    h('div', { class: 'grid' },
      card('Circuit', h('span', { id: 'circuit' }, circ), c.state === 'closed' ? 'ok' : 'bad'),
      card('Failures in a row', c.consecutive_failures, c.consecutive_failures ? 'warn' : ''),
      card('In flight / cap', x.in_flight + ' / ' + (x.max_in_flight || 'adaptive')),
      card('Rate limit', x.rate_limit_per_second ? x.rate_limit_per_second + '/s' : 'none'),
      card('Deferred, last hour', h('span', { id: 'deferrals' }, deferrals(x.deferrals_last_hour)), x.deferrals_last_hour && x.deferrals_last_hour.total ? 'warn' : ''),
      card('Success, last hour', x.last_hour.attempts ? pct(x.last_hour.success_ratio) : '–', x.last_hour.success_ratio >= 0.99 ? 'ok' : x.last_hour.attempts ? 'bad' : ''),
      card('Success, last day', x.last_day.attempts ? pct(x.last_day.success_ratio) : '–'),
      card('Latency p50 / p95 (hour)', x.last_hour.attempts ? ms(x.last_hour.latency_p50_seconds) + ' / ' + ms(x.last_hour.latency_p95_seconds) : '–'),
      card('Attempts, hour / day', x.last_hour.attempts + ' / ' + x.last_day.attempts + (x.last_day.sampled ? '+' : ''))),
    h('dl', { class: 'kv' },
      h('dt', {}, 'Failing since'), h('dd', {}, fmtTime(c.failing_since)),
      h('dt', {}, c.state === 'open' ? 'Next probe' : 'Opened until'), h('dd', {}, fmtTime(c.open_until)),
      h('dt', {}, 'Openings in this streak'), h('dd', {}, c.opens),
      h('dt', {}, 'Probe in flight'), h('dd', {}, c.probe_in_flight ? 'yes' : 'no')),
    h('h2', {}, 'Last hour'), chart(x.buckets),
    h('p', { class: 'muted' }, 'An open circuit holds this endpoint\'s deliveries (none is lost or charged an attempt) until a probe succeeds; a Retry-After from the endpoint opens it for that long.'),
    h('p', {}, h('button', { type: 'button', class: 'secondary', onclick: () => route() }, 'Refresh')));
}

document.addEventListener('DOMContentLoaded', boot);
