// camhub dashboard: wires the hub connection, the camera grid, the camera view and the header.
// Plain ES modules, no build step, nothing loaded from anywhere but the hub itself.

import { CameraView } from './camera.js';
import { HubConnection } from './connection.js';
import * as fmt from './format.js';
import { Grid } from './grid.js';
import { fillIcons } from './icons.js';

const $ = (sel) => document.querySelector(sel);

const state = {
  hub: null,
  cameras: [],
  byId: new Map(),
  received: false,
  serverOffset: 0, // hub clock minus ours, in seconds (when the hub tells us its time)
  conn: { mode: 'connecting' },
};

fillIcons(document.body);

const grid = new Grid($('#grid'), $('#empty'));
const cameraView = new CameraView($('#camera-view'), {
  onNavigate: (id) => {
    window.location.hash = `#/camera/${encodeURIComponent(id)}`;
  },
  getOrder: () => grid.order(),
  getPoster: (id) => grid.tileFor(id)?.querySelector('img.live') ?? null,
});

function hubNow() {
  return Date.now() / 1000 + state.serverOffset;
}

// ---- data from the hub ---------------------------------------------------------------------------
function onData({ hub, cameras }) {
  state.received = true;
  if (hub) {
    state.hub = hub;
    if (typeof hub.time === 'number') state.serverOffset = hub.time - Date.now() / 1000;
  }
  state.cameras = cameras.filter((c) => c && typeof c.id === 'string');
  state.byId = new Map(state.cameras.map((c) => [c.id, c]));
  const now = hubNow();
  cameraView.serverOffset = state.serverOffset;
  grid.update(state.cameras, now);
  renderHeader();
  renderGridChrome();
  renderCluster();
  if (cameraView.open) cameraView.update(state.byId.get(cameraView.id) ?? null, now);
}

function onStatus(status) {
  state.conn = status;
  const reachable = status.mode === 'live' || status.mode === 'polling';
  document.body.dataset.conn = status.mode;
  grid.setHubReachable(reachable || status.mode === 'connecting');
  cameraView.setHubReachable(reachable || status.mode === 'connecting');
  renderLink();
  renderBanner();
}

// ---- header ----------------------------------------------------------------------------------------
function setPill(sel, html) {
  const text = $(sel).querySelector('.pill-text');
  if (text.innerHTML !== html) text.innerHTML = html;
}

function renderLink() {
  const pill = $('#h-link');
  const mode = state.conn.mode;
  pill.dataset.mode = mode;
  const label = { connecting: 'Connecting…', live: 'Live', polling: 'Polling', lost: 'Hub unreachable' }[mode];
  pill.querySelector('.pill-text').textContent = label;
  pill.title = {
    connecting: 'Connecting to the hub…',
    live: 'Live updates from the hub (server-sent events)',
    polling: 'The hub\'s event stream is unavailable: refreshing every 2 s instead',
    lost: 'The hub does not answer; retrying by itself',
  }[mode];
}

function renderHeader() {
  const hub = state.hub;
  const total = hub?.cameras_total ?? state.cameras.length;
  const online = hub?.cameras_online ?? state.cameras.filter((c) => c.state !== 'offline').length;
  const viewers = hub?.viewers ?? state.cameras.reduce((n, c) => n + (typeof c.clients === 'number' ? c.clients : 0), 0);
  setPill('#h-cams', `<b>${fmt.int(online)}</b>/${fmt.int(total)} online`);
  $('#h-cams').dataset.level = total === 0 ? 'none' : online === total ? 'ok' : online === 0 ? 'bad' : 'warn';
  setPill('#h-viewers', `<b>${fmt.int(viewers)}</b> ${viewers === 1 ? 'viewer' : 'viewers'}`);

  // Not part of the documented API: shown only when the hub reports it.
  const rejected = hub?.announces_rejected ?? 0;
  $('#h-rejected').hidden = !(rejected > 0);
  if (rejected > 0) setPill('#h-rejected', `<b>${fmt.int(rejected)}</b> rejected`);

  const mqtt = $('#h-mqtt');
  const connected = hub?.mqtt?.connected;
  mqtt.dataset.ok = connected == null ? 'unknown' : String(Boolean(connected));
  mqtt.querySelector('.pill-text').textContent = connected == null ? 'MQTT' : connected ? 'MQTT' : 'MQTT down';
  mqtt.title = hub?.mqtt?.broker
    ? `MQTT broker ${hub.mqtt.broker}: ${connected ? 'connected' : 'not connected'}`
    : 'MQTT broker';

  $('#f-version').textContent = hub?.version ? `camhub ${hub.version}` : 'camhub';
  $('#f-hub').textContent = hub?.cluster ? `hub ${hub.cluster.hub_id} (${hub.cluster.role})` : '';
  $('#f-uptime').textContent = hub?.uptime_s != null ? `hub up ${fmt.duration(hub.uptime_s)}` : '';
  $('#f-broker').textContent = hub?.mqtt?.broker ? `broker ${hub.mqtt.broker}` : '';
  $('#f-auth').textContent = hub?.auth == null ? '' : hub.auth ? 'sign-in required' : 'open access (loopback)';
  $('#empty-broker').textContent = hub?.mqtt?.broker ? ` (broker: ${hub.mqtt.broker})` : '';
  const where = hub?.mqtt?.broker?.match(/([\w.:[\]-]+):(\d+)$/);
  $('#empty-sim').textContent = where
    ? `camhub node --sim --id test --mqtt-host ${where[1]} --mqtt-port ${where[2]}`
    : 'camhub node --sim --id test';
  if (!cameraView.open) {
    document.title = total ? `camhub · ${online}/${total} online` : 'camhub';
  }
}

// ---- the cluster's hubs (only when this hub is one of several) -----------------------------------------
function renderCluster() {
  const cluster = state.hub?.cluster;
  const section = $('#cluster');
  section.hidden = !cluster;
  if (!cluster) return;
  const members = Array.isArray(cluster.members) ? cluster.members : [];
  $('#cluster-count').textContent = `${members.filter((m) => m.online).length}/${members.length}`;
  const rows = members.map((m) => {
    const tr = document.createElement('tr');
    if (m.self) tr.className = 'is-me';
    const name = document.createElement('td');
    name.textContent = m.id;
    if (m.self) {
      const you = document.createElement('span');
      you.className = 'you';
      you.textContent = 'this hub';
      name.append(you);
    }
    const role = document.createElement('td');
    role.textContent = m.role ?? 'unknown';
    const url = document.createElement('td');
    url.className = 'mono';
    url.textContent = m.url ?? '';
    const online = document.createElement('td');
    const status = document.createElement('span');
    status.className = 'reason';
    status.dataset.reason = m.online ? 'online' : 'offline';
    status.textContent = m.online ? 'online' : 'offline';
    online.append(status);
    const owned = document.createElement('td');
    owned.className = 'num';
    owned.textContent = m.role === 'origin' ? fmt.int(m.cameras_owned ?? 0) : '—';
    tr.append(name, role, url, online, owned);
    return tr;
  });
  const sig = JSON.stringify(members.map((m) => [m.id, m.role, m.url, m.online, m.cameras_owned, m.self]));
  if (sig !== section.dataset.sig) {
    section.dataset.sig = sig;
    $('#cluster-body').replaceChildren(...rows);
  }
}

function renderGridChrome() {
  $('#loading').hidden = state.received;
  const total = state.cameras.length;
  const offline = state.cameras.filter((c) => c.state !== undefined && c.state === 'offline').length;
  const streaming = state.cameras.filter((c) => c.state === 'streaming').length;
  const parts = [];
  if (total) parts.push(fmt.plural(total, 'camera'));
  if (streaming) parts.push(`${streaming} streaming`);
  if (offline) parts.push(`${offline} offline`);
  $('#grid-summary').textContent = parts.join(' · ');
  $('#no-match').hidden = !(total > 0 && grid.shownCount === 0);
  $('.toolbar-controls').hidden = total === 0;
}

// ---- the "lost" banner with its countdown -----------------------------------------------------------
let bannerTimer = null;
function renderBanner() {
  clearInterval(bannerTimer);
  const { mode, retryAt } = state.conn;
  const banner = $('#banner');
  banner.hidden = mode !== 'lost';
  if (mode !== 'lost') return;
  const tick = () => {
    const left = retryAt ? Math.ceil((retryAt - Date.now()) / 1000) : 0;
    $('#banner-text').textContent = left > 0
      ? `Connection to hub lost — retrying in ${left} s`
      : 'Connection to hub lost — retrying…';
  };
  tick();
  bannerTimer = setInterval(tick, 250);
}

// ---- routing -----------------------------------------------------------------------------------------
let lastCameraId = null;
function route() {
  const match = window.location.hash.match(/^#\/camera\/(.+)$/);
  if (match) {
    let id;
    try {
      id = decodeURIComponent(match[1]);
    } catch {
      id = match[1];
    }
    const entering = !cameraView.open;
    $('#grid-view').hidden = true;
    grid.setActive(false);
    cameraView.show(id, state.byId.get(id) ?? null);
    if (state.received) cameraView.update(state.byId.get(id) ?? null, hubNow());
    lastCameraId = id;
    window.scrollTo(0, 0);
    if (entering || document.activeElement === document.body) $('#camera-title').focus({ preventScroll: true });
    return;
  }
  const wasCamera = cameraView.open;
  cameraView.hide();
  $('#grid-view').hidden = false;
  grid.setActive(true);
  renderHeader();
  if (wasCamera && lastCameraId) {
    // Back on the grid: put focus on the tile we came from, so keyboard users keep their place.
    const tile = grid.tileFor(lastCameraId);
    tile?.focus({ preventScroll: false });
  }
}

// ---- controls and keys ---------------------------------------------------------------------------------
$('#filter').addEventListener('input', (ev) => {
  grid.setFilter({ text: ev.target.value });
  renderGridChrome();
});
for (const btn of document.querySelectorAll('[data-filter]')) {
  btn.addEventListener('click', () => {
    for (const other of document.querySelectorAll('[data-filter]')) {
      other.setAttribute('aria-pressed', String(other === btn));
    }
    grid.setFilter({ state: btn.dataset.filter });
    renderGridChrome();
  });
}
$('#clear-filter').addEventListener('click', () => {
  $('#filter').value = '';
  document.querySelector('[data-filter="all"]').click();
  grid.setFilter({ text: '', state: 'all' });
  renderGridChrome();
});
$('#banner-retry').addEventListener('click', () => connection.retryNow());

document.addEventListener('keydown', (ev) => {
  if (ev.defaultPrevented || ev.altKey || ev.ctrlKey || ev.metaKey) return;
  const typing = ev.target instanceof HTMLElement && ev.target.matches('input, textarea, select, [contenteditable]');
  if (ev.key === 'Escape') {
    if (typing && ev.target.id === 'filter' && ev.target.value) return; // the search box clears itself
    if (cameraView.open && !document.fullscreenElement) {
      ev.preventDefault();
      window.location.hash = '#/';
    } else if (typing) {
      ev.target.blur();
    }
    return;
  }
  if (typing) return;
  if (cameraView.open) {
    if (ev.key === 'ArrowLeft') cameraView.step(-1);
    else if (ev.key === 'ArrowRight') cameraView.step(1);
    else if (ev.key === 'f') $('#btn-fullscreen').click();
    else return;
    ev.preventDefault();
  } else if (ev.key === '/') {
    ev.preventDefault();
    $('#filter').focus();
  }
});

window.addEventListener('hashchange', route);

const connection = new HubConnection({ onData, onStatus });
renderLink();
route();
connection.start();

// Ages ("last seen 3 min ago") move on even when nothing else changes.
setInterval(() => {
  if (state.received && state.conn.mode !== 'live') grid.update(state.cameras, hubNow());
}, 5000);
