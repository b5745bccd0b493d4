// keygate console: the key management screens, one more client of keygate's
// REST API on the same origin. Every decision is the API's (and its
// policies'); this file only shows the answers.
//
// Rules kept throughout:
// - every string from the API reaches the page as text (textContent, text
//   nodes, attribute values), never as markup: the page's Content Security
//   Policy enforces Trusted Types with no policy, so any markup sink throws;
// - the member token lives in memory and sessionStorage only, goes in the
//   Authorization header, and is forgotten on sign out or a 401;
// - a secret is shown once, in the secret dialog, and removed with it.
import en from './i18n/en.js';
import ja from './i18n/ja.js';

const tables = { en, ja };
const TOKEN = 'keygate.token';
const LANG = 'keygate.lang';

// The console's own root and the API's, from where this module was loaded:
// relative, so that a proxy may serve keygate under any path prefix.
const consoleRoot = new URL('./', import.meta.url);
const apiRoot = new URL('../', consoleRoot);

const CONTENT_FLAGS = ['get', 'getAllDrafts', 'getAllClosed', 'post', 'put', 'patch', 'delete'];
const MANAGEMENT_FLAGS = ['getContents', 'patchContentCreatedBy', 'patchContentStatus', 'getMedia',
  'postMedia', 'deleteMedia', 'getMembers', 'getApis', 'getService'];

const state = {
  token: sessionStorage.getItem(TOKEN) || '',
  lang: sessionStorage.getItem(LANG) || ((navigator.language || 'en').toLowerCase().startsWith('ja') ? 'ja' : 'en'),
  me: null,
};

// t returns the string key of the current language, with {name} holes
// filled in as text.
function t(key, vars) {
  const table = tables[state.lang] || en;
  let s = key in table ? table[key] : en[key];
  if (s === undefined) s = key;
  if (vars) s = s.replace(/\{(\w+)\}/g, (m, k) => (k in vars ? String(vars[k]) : m));
  return s;
}

// flagLabel is the label of a permission flag ("delete" is a reserved word
// in the tables' keys).
function flagLabel(flag) {
  return t(flag === 'delete' ? 'delete_' : flag);
}

// h builds an element: attrs are set as attributes (on* keys as listeners,
// "text" as textContent), children are nodes or strings (text nodes).
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') el.addEventListener(k.slice(2), v);
    else if (k === 'text') el.textContent = v;
    else if (k === 'checked' || k === 'value' || k === 'disabled') el[k] = v;
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of children.flat()) {
    if (c === null || c === undefined || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

let uid = 0;
const nextId = (p) => `${p}-${++uid}`;

function announce(msg) {
  const live = document.getElementById('announce');
  live.textContent = '';
  // A change of text in a live region is what screen readers announce.
  setTimeout(() => { live.textContent = msg; }, 30);
}

// ---- API ------------------------------------------------------------------

class SessionEnded extends Error {}

// api calls keygate's API; the answer is {status, body}. A 401 forgets the
// token and returns to sign-in.
async function api(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (state.token) headers.Authorization = `Bearer ${state.token}`;
  const init = { method, headers, cache: 'no-store', credentials: 'omit', referrerPolicy: 'no-referrer' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const res = await fetch(new URL(path, apiRoot), init);
  let data = null;
  const ct = res.headers.get('Content-Type') || '';
  if (ct.includes('json')) data = await res.json();
  if (res.status === 401 && path !== 'v1/me') {
    forgetToken();
    renderSignIn(t('sessionEnded'));
    throw new SessionEnded();
  }
  return { status: res.status, body: data };
}

function problemText(res) {
  const b = res.body || {};
  return b.detail || b.title || `HTTP ${res.status}`;
}

function forgetToken() {
  state.token = '';
  state.me = null;
  sessionStorage.removeItem(TOKEN);
}

const svcPath = (service, rest) => `v1/services/${encodeURIComponent(service)}/${rest}`;

// ---- routing ----------------------------------------------------------------

// route is the path under the console's root, split: [] for the services,
// ['services', id, 'keys' | 'ip-restrictions' | 'audit'].
function route() {
  const p = location.pathname;
  const base = consoleRoot.pathname;
  const rest = p.startsWith(base) ? p.slice(base.length) : '';
  return rest.split('/').filter(Boolean).map(decodeURIComponent);
}

function hrefOf(parts) {
  return new URL(parts.map(encodeURIComponent).join('/'), consoleRoot).href;
}

function navigate(parts) {
  history.pushState(null, '', hrefOf(parts));
  render();
}

function link(parts, text, attrs) {
  return h('a', { href: hrefOf(parts), ...attrs, onclick: (e) => {
    if (e.ctrlKey || e.metaKey || e.shiftKey || e.button !== 0) return;
    e.preventDefault();
    navigate(parts);
  } }, text);
}

window.addEventListener('popstate', () => render());

// ---- page frame ---------------------------------------------------------------

const main = () => document.getElementById('main');

function setMain(...nodes) {
  const m = main();
  m.replaceChildren(...nodes);
}

function renderTools() {
  const tools = document.getElementById('tools');
  const langId = nextId('lang');
  const select = h('select', { id: langId, onchange: (e) => {
    state.lang = e.target.value;
    sessionStorage.setItem(LANG, state.lang);
    render();
  } }, Object.entries(tables).map(([code, tb]) => h('option', { value: code, lang: code, text: tb.langName })));
  select.value = state.lang;
  const parts = [h('label', { for: langId, text: t('language') }), select];
  if (state.token) parts.push(h('button', { type: 'button', onclick: signOut, text: t('signOut') }));
  tools.replaceChildren(...parts);
  document.documentElement.lang = state.lang;
  document.title = t('title');
}

function signOut() {
  forgetToken();
  closeAllDialogs();
  history.pushState(null, '', consoleRoot.href);
  render();
}

function closeAllDialogs() {
  for (const d of document.querySelectorAll('dialog')) {
    if (d.open) d.close();
    d.remove();
  }
}

async function render() {
  renderTools();
  if (!state.token) {
    renderSignIn();
    return;
  }
  try {
    if (!state.me) {
      setMain(h('p', { text: t('loading') }));
      const res = await api('GET', 'v1/me');
      if (res.status === 401) {
        forgetToken();
        renderSignIn(t('badToken'));
        return;
      }
      if (res.status !== 200) {
        setMain(h('p', { role: 'alert', text: t('error', { detail: problemText(res) }) }));
        return;
      }
      state.me = res.body;
    }
    const parts = route();
    if (parts.length === 0) {
      renderServices();
    } else if (parts.length === 3 && parts[0] === 'services') {
      const svc = state.me.services.find((s) => s.id === parts[1]);
      if (!svc) {
        setMain(h('h1', { text: t('notFound') }), link([], t('navServices')));
        return;
      }
      if (parts[2] === 'keys') await renderKeys(svc);
      else if (parts[2] === 'ip-restrictions') await renderIP(svc);
      else if (parts[2] === 'audit') await renderAudit(svc);
      else setMain(h('h1', { text: t('notFound') }), link([], t('navServices')));
    } else {
      setMain(h('h1', { text: t('notFound') }), link([], t('navServices')));
    }
  } catch (e) {
    if (e instanceof SessionEnded) return;
    setMain(h('p', { role: 'alert', text: t('error', { detail: String(e.message || e) }) }));
  }
}

// ---- sign in -------------------------------------------------------------------

function renderSignIn(message) {
  renderTools();
  const id = nextId('token');
  const err = h('p', { class: 'error', role: 'alert', id: nextId('err'), text: message || '' });
  const input = h('input', { id, type: 'password', name: 'token', autocomplete: 'off', required: true, spellcheck: 'false' });
  const form = h('form', { class: 'card', onsubmit: async (e) => {
    e.preventDefault();
    const token = input.value.trim();
    input.value = '';
    if (!token) return;
    state.token = token;
    state.me = null;
    const res = await api('GET', 'v1/me');
    if (res.status !== 200) {
      forgetToken();
      err.textContent = res.status === 401 ? t('badToken') : t('error', { detail: problemText(res) });
      input.focus();
      return;
    }
    sessionStorage.setItem(TOKEN, token);
    state.me = res.body;
    render();
  } },
  h('h1', { text: t('signInTitle') }),
  h('p', { text: t('signInIntro') }),
  h('label', { for: id, text: t('memberToken') }), input,
  h('button', { type: 'submit', class: 'primary', text: t('signIn') }),
  err);
  setMain(form);
  input.focus();
}

// ---- services ---------------------------------------------------------------------

function countText(svc) {
  return t('apiKeysCount', { count: svc.keys.count, limit: svc.keys.limit });
}

function renderServices() {
  const rows = state.me.services.map((s) => h('tr', {},
    h('th', { scope: 'row' }, link(['services', s.id, 'keys'], s.id)),
    h('td', { text: s.plan }), h('td', { text: s.role }), h('td', { text: countText(s) })));
  setMain(h('h1', { text: t('servicesTitle') }),
    h('table', {}, h('thead', {}, h('tr', {}, ['service', 'plan', 'role', 'navKeys'].map((k) => h('th', { scope: 'col', text: t(k) })))),
      h('tbody', {}, rows)));
  main().focus();
}

function serviceNav(svc, current) {
  const items = [['keys', 'navKeys'], ['ip-restrictions', 'navIP'], ['audit', 'navAudit']].map(([p, label]) =>
    h('li', {}, link(['services', svc.id, p], t(label), { 'aria-current': p === current ? 'page' : null })));
  return h('nav', { 'aria-label': svc.id, class: 'service-nav' },
    h('ul', {}, h('li', {}, link([], t('navServices'))), items),
    h('p', { class: 'count', id: 'key-count', text: countText(svc) }));
}

// refreshMe reloads /v1/me (key counts change with creates and deletes).
async function refreshMe(svcId) {
  const res = await api('GET', 'v1/me');
  if (res.status === 401) {
    forgetToken();
    renderSignIn(t('sessionEnded'));
    throw new SessionEnded();
  }
  if (res.status === 200) state.me = res.body;
  return state.me.services.find((s) => s.id === svcId);
}

// ---- key list -------------------------------------------------------------------

function summary(k) {
  const flags = CONTENT_FLAGS.filter((f) => k.contentApi.default[f]).map(flagLabel);
  const parts = [t('summaryDefault', { flags: flags.length ? flags.join(', ') : t('summaryNone') })];
  const n = Object.keys(k.contentApi.individual || {}).length;
  if (n) parts.push(t('summaryIndividual', { n }));
  const m = MANAGEMENT_FLAGS.filter((f) => k.managementApi[f]).length;
  if (m) parts.push(t('summaryManagement', { n: m }));
  return parts.join(' · ');
}

function when(ts) {
  const d = new Date(ts);
  return h('time', { datetime: ts, text: d.toLocaleString(state.lang === 'ja' ? 'ja-JP' : 'en-GB') });
}

async function renderKeys(svc, focusSel) {
  svc = await refreshMe(svc.id);
  const title = h('h1', {}, t('keysTitle'), ' — ', svc.id);
  if (svc.role !== 'admin') {
    setMain(serviceNav(svc, 'keys'), title, h('p', { class: 'notice', text: t('adminsOnly') }));
    main().focus();
    return;
  }
  const res = await api('GET', svcPath(svc.id, 'keys'));
  if (res.status !== 200) {
    const msg = res.status === 403 ? t('forbidden', { detail: problemText(res) }) : t('error', { detail: problemText(res) });
    setMain(serviceNav(svc, 'keys'), title, h('p', { role: 'alert', text: msg }));
    return;
  }
  const { keys, count, limit } = res.body;
  const atLimit = count >= limit;
  const reasonId = nextId('limit');
  const searchId = nextId('search');
  const tbody = h('tbody');
  const empty = h('p', { class: 'empty' });
  const search = h('input', { id: searchId, type: 'search', autocomplete: 'off', oninput: () => fill() });
  function fill() {
    const q = search.value.trim().toLowerCase();
    const shown = keys.filter((k) => k.name.toLowerCase().includes(q));
    tbody.replaceChildren(...shown.map((k) => h('tr', { 'data-key': k.id },
      h('th', { scope: 'row', text: k.name }),
      h('td', {}, when(k.createdAt)), h('td', {}, when(k.updatedAt)),
      h('td', { text: summary(k) }),
      h('td', { class: 'row-actions' },
        h('button', { type: 'button', 'aria-label': t('editNamed', { name: k.name }), text: t('edit'), onclick: () => openKeyDialog(svc, k) }),
        h('button', { type: 'button', 'aria-label': t('rotateNamed', { name: k.name }), text: t('rotate'), onclick: () => openRotate(svc, k) }),
        h('button', { type: 'button', class: 'danger', 'aria-label': t('deleteNamed', { name: k.name }), text: t('delete'), onclick: () => openDelete(svc, k) })))));
    empty.textContent = shown.length ? '' : (keys.length ? t('noMatch') : t('noKeys'));
  }
  fill();
  const add = h('button', { type: 'button', class: 'primary', id: 'add-key', disabled: atLimit,
    'aria-describedby': atLimit ? reasonId : null, text: t('add'), onclick: () => openKeyDialog(svc, null) });
  setMain(serviceNav(svc, 'keys'), title,
    h('div', { class: 'toolbar' },
      h('div', {}, h('label', { for: searchId, text: t('search') }), search),
      h('div', {}, add, atLimit ? h('p', { id: reasonId, class: 'reason', text: t('limitReached', { plan: svc.plan, limit, count }) }) : null)),
    h('table', { id: 'keys' },
      h('caption', { class: 'visually-hidden', text: t('keysTitle') }),
      h('thead', {}, h('tr', {}, ['name', 'created', 'updated', 'permissions', 'actions'].map((k) => h('th', { scope: 'col', text: t(k) })))),
      tbody),
    empty);
  const f = focusSel && main().querySelector(focusSel);
  (f || main()).focus();
}

// ---- dialogs ----------------------------------------------------------------------

// modal opens a <dialog> as a modal: the rest of the page is inert, Tab
// cycles inside it, and Escape closes it unless canClose says no (the secret
// dialog before Done).
function modal(dialog, { canClose = () => true, onClose = () => {}, returnFocus } = {}) {
  const back = returnFocus || document.activeElement;
  dialog.addEventListener('cancel', (e) => {
    if (!canClose()) e.preventDefault();
  });
  dialog.addEventListener('keydown', (e) => {
    if (e.key === 'Escape' && !canClose()) {
      e.preventDefault();
      return;
    }
    if (e.key !== 'Tab') return;
    const items = [...dialog.querySelectorAll('button, input, select, textarea, a[href], [tabindex]:not([tabindex="-1"])')]
      .filter((el) => !el.disabled && el.offsetParent !== null);
    if (!items.length) return;
    const first = items[0];
    const last = items[items.length - 1];
    if (e.shiftKey && document.activeElement === first) {
      e.preventDefault();
      last.focus();
    } else if (!e.shiftKey && document.activeElement === last) {
      e.preventDefault();
      first.focus();
    }
  });
  dialog.addEventListener('close', () => {
    if (!canClose()) {
      dialog.showModal();
      return;
    }
    dialog.remove();
    onClose();
    if (back && back.isConnected) back.focus();
  });
  document.body.append(dialog);
  dialog.showModal();
  return dialog;
}

function dialogFrame(titleText, ...body) {
  const titleId = nextId('dlg');
  return h('dialog', { 'aria-labelledby': titleId, 'aria-modal': 'true' },
    h('h2', { id: titleId, text: titleText }), ...body);
}

// ---- create / edit ---------------------------------------------------------------

function checkbox(flag, checked, onChange) {
  const id = nextId(flag);
  return h('div', { class: 'check' },
    h('input', { type: 'checkbox', id, 'data-flag': flag, checked: !!checked, onchange: onChange }),
    h('label', { for: id, text: flagLabel(flag) }));
}

function readFlags(container, flags) {
  const out = {};
  for (const f of flags) {
    const box = container.querySelector(`:scope > .flags input[data-flag="${f}"]`);
    out[f] = !!(box && box.checked);
  }
  return out;
}

function openKeyDialog(svc, key) {
  const editing = !!key;
  const name = h('input', { id: nextId('name'), type: 'text', autocomplete: 'off', required: true, value: key ? key.name : '' });
  const nameErr = h('p', { class: 'field-error', id: nextId('err') });
  const general = h('div', { class: 'field-error' });
  const adviceList = h('ul');
  const advice = h('section', { class: 'advice', role: 'status', 'aria-live': 'polite' },
    h('h3', { text: t('advice') }), adviceList);
  const datalistId = nextId('apis');
  const datalist = h('datalist', { id: datalistId }, (svc.apis || []).map((a) => h('option', { value: a })));
  const schedule = debounce(() => check(), 250);

  const defaults = h('fieldset', { class: 'perm', 'data-endpoint': 'default' },
    h('legend', { text: t('defaultPermissions') }),
    h('div', { class: 'flags' }, CONTENT_FLAGS.map((f) => checkbox(f, key && key.contentApi.default[f], schedule))),
    h('div', { class: 'field-error' }));
  const individuals = h('div', { class: 'individuals' });
  function addIndividual(endpoint, perms) {
    const apiId = nextId('api');
    const removeName = (ep) => (ep ? t('removeIndividualNamed', { name: ep }) : t('removeIndividual'));
    const remove = h('button', { type: 'button', class: 'link', 'aria-label': removeName(endpoint),
      text: t('removeIndividual'), onclick: () => {
        group.remove();
        addBtn.focus();
        schedule();
      } });
    const api = h('input', { id: apiId, type: 'text', list: datalistId, autocomplete: 'off', value: endpoint || '',
      'data-role': 'api', oninput: () => {
        remove.setAttribute('aria-label', removeName(api.value.trim()));
        schedule();
      } });
    const group = h('fieldset', { class: 'perm individual' },
      h('legend', { text: t('individualPermissions') }),
      h('div', { class: 'api-field' }, h('label', { for: apiId, text: t('api') }), api),
      h('div', { class: 'flags' }, CONTENT_FLAGS.map((f) => checkbox(f, perms && perms[f], schedule))),
      remove,
      h('div', { class: 'field-error' }));
    individuals.append(group);
    return api;
  }
  const addBtn = h('button', { type: 'button', class: 'secondary', text: t('addIndividual'), onclick: () => {
    addIndividual('', null).focus();
    schedule();
  } });
  for (const [ep, perms] of Object.entries(key ? key.contentApi.individual || {} : {})) addIndividual(ep, perms);
  const management = h('fieldset', { class: 'perm', 'data-endpoint': 'management' },
    h('legend', { text: t('managementPermissions') }),
    h('div', { class: 'flags' }, MANAGEMENT_FLAGS.map((f) => checkbox(f, key && key.managementApi[f], schedule))));

  // Tabs (WAI-ARIA tabs pattern: arrow keys move between tabs).
  const tabIds = [nextId('tab'), nextId('tab')];
  const panelIds = [nextId('panel'), nextId('panel')];
  const panels = [
    h('div', { role: 'tabpanel', id: panelIds[0], 'aria-labelledby': tabIds[0], tabindex: '0' }, defaults, individuals, addBtn, datalist),
    h('div', { role: 'tabpanel', id: panelIds[1], 'aria-labelledby': tabIds[1], tabindex: '0', hidden: true }, management),
  ];
  const tabs = ['contentApi', 'managementApi'].map((label, i) => h('button', { type: 'button', role: 'tab', id: tabIds[i],
    'aria-controls': panelIds[i], 'aria-selected': i === 0 ? 'true' : 'false', tabindex: i === 0 ? '0' : '-1',
    text: t(label), onclick: () => select(i), onkeydown: (e) => {
      if (e.key === 'ArrowRight' || e.key === 'ArrowLeft') {
        e.preventDefault();
        const j = (i + 1) % 2;
        select(j);
        tabs[j].focus();
      }
    } }));
  function select(i) {
    tabs.forEach((tab, j) => {
      tab.setAttribute('aria-selected', String(i === j));
      tab.tabIndex = i === j ? 0 : -1;
      panels[j].hidden = i !== j;
    });
  }

  function spec() {
    const individual = {};
    for (const g of individuals.querySelectorAll('fieldset.individual')) {
      const ep = g.querySelector('input[data-role="api"]').value.trim();
      individual[ep] = readFlags(g, CONTENT_FLAGS);
    }
    return {
      name: name.value,
      contentApi: { default: readFlags(defaults, CONTENT_FLAGS), individual },
      managementApi: readFlags(management, MANAGEMENT_FLAGS),
    };
  }
  const keyPath = editing ? svcPath(svc.id, `keys/${encodeURIComponent(key.id)}`) : svcPath(svc.id, 'keys');
  const method = editing ? 'PUT' : 'POST';

  function clearErrors() {
    for (const el of dialog.querySelectorAll('.field-error')) {
      el.replaceChildren();
      el.removeAttribute('role');
    }
    for (const el of dialog.querySelectorAll('[aria-invalid]')) el.removeAttribute('aria-invalid');
  }
  // showError puts a message next to what it concerns, as an alert.
  function showError(where, msg, control) {
    where.setAttribute('role', 'alert');
    where.append(h('p', { text: msg }));
    if (control) {
      control.setAttribute('aria-invalid', 'true');
      if (!where.id) where.id = nextId('err');
      control.setAttribute('aria-describedby', where.id);
    }
  }
  // groupOf finds the fieldset a violation's endpoint names.
  function groupOf(endpoint) {
    if (endpoint === 'default') return defaults;
    for (const g of individuals.querySelectorAll('fieldset.individual')) {
      if (g.querySelector('input[data-role="api"]').value.trim() === endpoint) return g;
    }
    return null;
  }
  function showProblem(res) {
    const b = res.body || {};
    if (res.status === 422 && Array.isArray(b.violations) && b.violations.length) {
      for (const v of b.violations) {
        const g = groupOf(v.endpoint);
        const box = g && v.flag ? g.querySelector(`:scope > .flags input[data-flag="${CSS.escape(v.flag)}"]`) : null;
        showError(g ? g.querySelector(':scope > .field-error') : general, `${v.message} (${v.endpoint})`, box);
      }
      return;
    }
    if (res.status === 400 && b.code === 'invalid_field' && /name/i.test(b.detail || '')) {
      showError(nameErr, problemText(res), name);
      return;
    }
    showError(general, res.status === 403 ? t('forbidden', { detail: problemText(res) }) : problemText(res));
  }
  function showAdvice(warnings) {
    adviceList.replaceChildren(...(warnings.length ? warnings.map((w) => h('li', { 'data-code': w.code || '', text: w.message }))
      : [h('li', { class: 'none', text: t('noAdvice') })]));
  }

  // check asks the API what the write would answer (a dry run of the real
  // write): advice and violations come from the policy, never from here.
  let seq = 0;
  async function check() {
    const mine = ++seq;
    const res = await api(method, `${keyPath}?dryRun=true`, spec());
    if (mine !== seq) return null;
    clearErrors();
    if (res.status === 200 || res.status === 201) {
      showAdvice(res.body.warnings || []);
    } else {
      adviceList.replaceChildren();
      showProblem(res);
    }
    dialog.dataset.checked = String(mine);
    return res;
  }

  const submit = h('button', { type: 'submit', class: 'primary', text: editing ? t('save') : t('create') });
  const form = h('form', { method: 'dialog', novalidate: true, onsubmit: async (e) => {
    e.preventDefault();
    submit.disabled = true;
    try {
      // The dry run of the form as it is now. A check that input started
      // meanwhile supersedes this one (check answers null): ask again, so
      // that a click right after typing is never lost.
      schedule.cancel();
      let dry = null;
      for (let i = 0; i < 5 && dry === null; i++) dry = await check();
      if (!dry || (dry.status !== 200 && dry.status !== 201)) return;
      const res = await api(method, keyPath, spec());
      if (res.status === 200 || res.status === 201) {
        const saved = res.body.key;
        dialog.close();
        if (!editing) {
          await renderKeys(svc);
          announce(t('created_', { name: saved.name }));
          openSecret(saved, res.body.secret, `tr[data-key="${CSS.escape(saved.id)}"] button`);
        } else {
          await renderKeys(svc, `tr[data-key="${CSS.escape(saved.id)}"] button`);
          announce(t('saved', { name: saved.name }));
        }
      } else {
        clearErrors();
        showProblem(res);
      }
    } finally {
      submit.disabled = false;
    }
  } },
  h('div', { class: 'field' }, h('label', { for: name.id, text: t('name') }), name, nameErr),
  h('div', { role: 'tablist', 'aria-label': t('permissions') }, tabs),
  panels,
  advice,
  general,
  h('div', { class: 'buttons' },
    h('button', { type: 'button', class: 'secondary', text: t('cancel'), onclick: () => dialog.close() }),
    submit));
  name.addEventListener('input', schedule);
  const dialog = dialogFrame(editing ? t('editKeyTitle') : t('addKeyTitle'), form);
  dialog.id = 'key-dialog';
  modal(dialog);
  name.focus();
  if (editing) check();
}

function debounce(fn, ms) {
  let timer;
  const run = () => {
    clearTimeout(timer);
    timer = setTimeout(fn, ms);
  };
  run.cancel = () => clearTimeout(timer);
  return run;
}

// ---- the secret, once --------------------------------------------------------------

function openSecret(key, secret, focusAfter) {
  let finished = false;
  const status = h('p', { class: 'copy-status', role: 'status' });
  const value = h('code', { class: 'secret', id: 'secret-value', text: secret });
  const doneBtn = h('button', { type: 'button', class: 'primary', text: t('done'), onclick: () => {
    finished = true;
    value.textContent = '';
    secret = null;
    dialog.close();
  } });
  const dialog = dialogFrame(t('secretTitle'),
    h('p', { class: 'warning', text: t('secretWarning') }),
    h('p', { class: 'key-name', text: key.name }),
    h('p', {}, h('span', { class: 'visually-hidden', text: `${t('secretLabel')}: ` }), value),
    h('div', { class: 'buttons' },
      h('button', { type: 'button', class: 'secondary', text: t('copy'), onclick: async () => {
        try {
          await navigator.clipboard.writeText(secret);
          status.textContent = t('copied');
        } catch {
          status.textContent = t('copyFailed');
        }
      } }),
      doneBtn),
    status);
  dialog.id = 'secret-dialog';
  dialog.setAttribute('closedby', 'none');
  modal(dialog, { canClose: () => finished, onClose: () => {
    const f = focusAfter && document.querySelector(focusAfter);
    if (f) f.focus();
  } });
  doneBtn.focus();
}

// ---- rotate and delete ------------------------------------------------------------

function openRotate(svc, key) {
  const err = h('div', { class: 'field-error' });
  const go = h('button', { type: 'button', class: 'danger', text: t('rotateKey'), onclick: async () => {
    go.disabled = true;
    const res = await api('POST', svcPath(svc.id, `keys/${encodeURIComponent(key.id)}/rotate`));
    go.disabled = false;
    if (res.status !== 200) {
      err.setAttribute('role', 'alert');
      err.replaceChildren(h('p', { text: problemText(res) }));
      return;
    }
    dialog.close();
    await renderKeys(svc);
    openSecret(res.body.key, res.body.secret, `tr[data-key="${CSS.escape(key.id)}"] button`);
  } });
  const dialog = dialogFrame(t('rotateTitle', { name: key.name }),
    h('p', { class: 'warning', text: t('rotateWarning') }), err,
    h('div', { class: 'buttons' }, h('button', { type: 'button', class: 'secondary', text: t('cancel'), onclick: () => dialog.close() }), go));
  dialog.id = 'rotate-dialog';
  modal(dialog);
  go.focus();
}

function openDelete(svc, key) {
  const id = nextId('confirm');
  const err = h('div', { class: 'field-error' });
  const input = h('input', { id, type: 'text', autocomplete: 'off', oninput: () => { go.disabled = input.value !== key.name; } });
  const go = h('button', { type: 'submit', class: 'danger', disabled: true, text: t('deleteKey') });
  const form = h('form', { onsubmit: async (e) => {
    e.preventDefault();
    if (input.value !== key.name) return;
    go.disabled = true;
    const res = await api('DELETE', svcPath(svc.id, `keys/${encodeURIComponent(key.id)}`));
    if (res.status !== 204) {
      go.disabled = false;
      err.setAttribute('role', 'alert');
      err.replaceChildren(h('p', { text: problemText(res) }));
      return;
    }
    dialog.close();
    await renderKeys(svc, '#add-key');
    announce(t('deleted', { name: key.name }));
  } },
  h('p', { class: 'warning', text: t('deleteWarning') }),
  h('div', { class: 'field' }, h('label', { for: id, text: t('typeName') }), input),
  err,
  h('div', { class: 'buttons' }, h('button', { type: 'button', class: 'secondary', text: t('cancel'), onclick: () => dialog.close() }), go));
  const dialog = dialogFrame(t('deleteTitle', { name: key.name }), form);
  dialog.id = 'delete-dialog';
  modal(dialog);
  input.focus();
}

// ---- API IP restriction ----------------------------------------------------------

async function renderIP(svc) {
  svc = await refreshMe(svc.id);
  const title = h('h1', { text: t('ipTitle') });
  const res = await api('GET', svcPath(svc.id, 'ip-restrictions'));
  if (res.status !== 200) {
    const msg = res.status === 403 ? t('forbidden', { detail: problemText(res) }) : t('error', { detail: problemText(res) });
    setMain(serviceNav(svc, 'ip-restrictions'), title, h('p', { role: 'alert', text: msg }));
    main().focus();
    return;
  }
  const settings = res.body || {};
  // Whether a save could succeed is the API's to say: a dry run of a PUT
  // restricting one documentation address (192.0.2.1) gets the network
  // policy's decision on adding a restriction (member, role, the plan's
  // feature) with nothing written. A refusal is shown as the screen opens,
  // and the controls that would only meet it are disabled.
  const probe = await api('PUT', svcPath(svc.id, 'ip-restrictions?dryRun=true'), { default: ['192.0.2.1'], apis: {} });
  const refusal = probe.status === 200 ? null : h('p', { role: 'alert', id: 'ip-refusal', text: problemText(probe) });
  const defId = nextId('ipdef');
  const def = h('textarea', { id: defId, rows: '4', spellcheck: 'false', 'data-role': 'default' });
  def.value = (settings.default || []).join('\n');
  const apis = h('div', { class: 'ip-apis' });
  const msg = h('div', { class: 'field-error' });
  const ok = h('p', { role: 'status' });
  function addApi(endpoint, entries) {
    const apiId = nextId('ipapi');
    const listId = nextId('iplist');
    const api = h('input', { id: apiId, type: 'text', autocomplete: 'off', 'data-role': 'api', value: endpoint || '',
      list: 'ip-api-names' });
    const list = h('textarea', { id: listId, rows: '3', spellcheck: 'false', 'data-role': 'entries' });
    list.value = (entries || []).join('\n');
    const group = h('fieldset', { class: 'perm' }, h('legend', { text: endpoint || t('api') }),
      h('label', { for: apiId, text: t('api') }), api,
      h('label', { for: listId, text: t('ipApiAddresses') }), list,
      h('button', { type: 'button', class: 'link', text: t('ipRemoveApi', { name: endpoint || t('api') }), onclick: () => group.remove() }));
    apis.append(group);
    return api;
  }
  for (const [ep, entries] of Object.entries(settings.apis || {})) addApi(ep, entries);
  const lines = (s) => s.split('\n').map((l) => l.trim()).filter(Boolean);
  const form = h('form', { onsubmit: async (e) => {
    e.preventDefault();
    msg.replaceChildren();
    msg.removeAttribute('role');
    ok.textContent = '';
    const body = { default: lines(def.value), apis: {} };
    for (const g of apis.querySelectorAll('fieldset')) {
      const ep = g.querySelector('[data-role="api"]').value.trim();
      if (ep) body.apis[ep] = lines(g.querySelector('[data-role="entries"]').value);
    }
    const put = await api('PUT', svcPath(svc.id, 'ip-restrictions'), body);
    if (put.status === 200) {
      ok.textContent = t('ipSaved');
      return;
    }
    msg.setAttribute('role', 'alert');
    msg.append(h('p', { text: problemText(put) }));
    for (const v of (put.body && put.body.violations) || []) msg.append(h('p', { text: v.message }));
  } },
  h('p', { text: t('ipIntro') }),
  refusal,
  h('label', { for: defId, text: t('ipDefault') }), def,
  h('h2', { text: t('ipApis') }), apis,
  h('datalist', { id: 'ip-api-names' }, (svc.apis || []).map((a) => h('option', { value: a }))),
  h('button', { type: 'button', class: 'secondary', text: t('ipAddApi'), onclick: () => addApi('', []).focus() }),
  msg, ok,
  h('div', { class: 'buttons' }, h('button', { type: 'submit', class: 'primary', text: t('save') })));
  if (refusal) {
    for (const el of form.querySelectorAll('textarea, input, button')) el.disabled = true;
  }
  setMain(serviceNav(svc, 'ip-restrictions'), title, form);
  main().focus();
}

// ---- audit ------------------------------------------------------------------------

async function renderAudit(svc) {
  svc = await refreshMe(svc.id);
  const title = h('h1', { text: t('auditTitle') });
  const tbody = h('tbody');
  const more = h('button', { type: 'button', class: 'secondary', hidden: true, text: t('auditMore') });
  const empty = h('p', { class: 'empty' });
  let cursor = '';
  async function page() {
    const q = new URLSearchParams({ limit: '20' });
    if (cursor) q.set('cursor', cursor);
    const res = await api('GET', `${svcPath(svc.id, 'audit')}?${q}`);
    if (res.status !== 200) {
      const msg = res.status === 403 ? t('forbidden', { detail: problemText(res) }) : t('error', { detail: problemText(res) });
      setMain(serviceNav(svc, 'audit'), title, h('p', { role: 'alert', text: msg }));
      return false;
    }
    const first = tbody.rows.length;
    for (const e of res.body.entries) {
      const keyName = (e.after && e.after.name) || (e.before && e.before.name) || '';
      tbody.append(h('tr', {},
        h('td', {}, when(e.at)),
        h('td', { class: 'actor', text: e.actor || '—' }),
        h('td', { text: e.action }),
        h('td', {}, keyName ? h('span', { class: 'key-name', text: keyName }) : null, keyName && e.keyId ? ' ' : null,
          e.keyId ? h('span', { class: 'key-id', text: e.keyId }) : null),
        h('td', { text: `${e.outcome} (${e.status}${e.message ? `: ${e.message}` : ''})` })));
    }
    cursor = res.body.next || '';
    more.hidden = !cursor;
    empty.textContent = tbody.rows.length ? '' : t('auditEmpty');
    const firstNew = tbody.rows[first];
    return firstNew || true;
  }
  more.addEventListener('click', async () => {
    const firstNew = await page();
    if (firstNew instanceof HTMLElement) {
      firstNew.tabIndex = -1;
      firstNew.focus();
    }
  });
  setMain(serviceNav(svc, 'audit'), title, h('p', { text: t('loading') }));
  if (!(await page())) return;
  setMain(serviceNav(svc, 'audit'), title,
    h('table', { id: 'audit' },
      h('thead', {}, h('tr', {}, ['auditWhen', 'auditActor', 'auditAction', 'auditKey', 'auditResult'].map((k) => h('th', { scope: 'col', text: t(k) })))),
      tbody),
    empty, more);
  main().focus();
}

render();
