// The camera grid: one tile per camera, each refreshed from the hub's cached snapshot.
//
// Why snapshots and not an MJPEG <img> per tile: browsers open at most ~6 HTTP/1.1 connections per
// host, and every MJPEG stream holds one forever, so a grid of 8+ streams stalls (and starves the
// event stream). A snapshot request is short: tiles share a few connections, one request in flight
// per tile, a few in flight overall, only for tiles on screen and only while the tab is visible.
// Each tile decodes the next picture off screen and swaps it in, so it never flashes.

import * as fmt from './format.js';
import { icon } from './icons.js';

const FRAME_INTERVAL_MS = 500; // ~2 fps per tile
const SLOW_INTERVAL_MS = 2000; // cameras that are not streaming (no new frames expected)
const ERROR_INTERVAL_MS = 3000;
const MAX_IN_FLIGHT = 4; // leaves connections for the event stream and a focused MJPEG stream
const FETCH_TIMEOUT_MS = 8000;

/** A counting semaphore shared by all tiles: at most MAX_IN_FLIGHT snapshot requests at once. */
class Slots {
  constructor(n) {
    this.free = n;
    this.waiting = [];
  }

  acquire() {
    if (this.free > 0) {
      this.free -= 1;
      return Promise.resolve();
    }
    return new Promise((resolve) => this.waiting.push(resolve));
  }

  release() {
    const next = this.waiting.shift();
    if (next) next();
    else this.free += 1;
  }
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

function stat(name, label) {
  const wrap = el('span', `stat stat-${name}`);
  wrap.title = label;
  wrap.insertAdjacentHTML('afterbegin', icon(name === 'viewers' ? 'eye' : name === 'dropped' ? 'drop' : 'clock'));
  const value = el('span', 'stat-value');
  const sr = el('span', 'visually-hidden', `${label}: `);
  wrap.append(sr, value);
  return { wrap, value, sr };
}

class Tile {
  constructor(grid, camera) {
    this.grid = grid;
    this.id = camera.id;
    this.camera = camera;
    this.visible = false;
    this.running = false;
    this.hasFrame = false;
    this.frames = 0;
    this.abort = null;
    this.#build();
  }

  #build() {
    const a = el('a', 'tile');
    a.href = `#/camera/${encodeURIComponent(this.id)}`;
    a.dataset.id = this.id;

    const media = el('div', 'tile-media');
    // Two stacked pictures: the next frame decodes in the hidden one, then they swap.
    this.front = el('img', 'frame');
    this.back = el('img', 'frame');
    for (const img of [this.front, this.back]) {
      img.decoding = 'async';
      img.alt = '';
      img.draggable = false;
    }
    this.placeholder = el('div', 'placeholder');
    this.placeholderIcon = el('span', 'placeholder-icon');
    this.placeholderText = el('span', 'placeholder-text');
    this.placeholder.append(this.placeholderIcon, this.placeholderText);
    this.badge = el('span', 'badge');
    this.fpsChip = el('span', 'chip fps-chip');
    this.lastSeen = el('span', 'chip last-seen');
    this.motionChip = el('span', 'chip motion-chip');
    this.motionChip.textContent = 'Motion';
    this.motionChip.hidden = true;
    this.recChip = el('span', 'chip rec-chip');
    this.recChip.textContent = 'Rec';
    this.recChip.hidden = true;
    // A battery camera: when its next picture is due, and its battery where the board reads one.
    this.wakeChip = el('span', 'chip wake-chip');
    this.wakeChip.hidden = true;
    this.batteryChip = el('span', 'chip battery-chip');
    this.batteryChip.hidden = true;
    media.append(this.front, this.back, this.placeholder, this.badge, this.fpsChip, this.lastSeen, this.motionChip,
      this.recChip, this.wakeChip, this.batteryChip);

    const body = el('div', 'tile-body');
    const head = el('div', 'tile-head');
    this.nameEl = el('h2', 'tile-name');
    this.idEl = el('code', 'tile-id');
    head.append(this.nameEl, this.idEl);

    const stats = el('div', 'tile-stats');
    this.viewers = stat('viewers', 'Viewers');
    this.dropped = stat('dropped', 'Frames dropped');
    this.age = stat('age', 'Last frame age');
    stats.append(this.viewers.wrap, this.dropped.wrap, this.age.wrap);

    this.meta = el('div', 'tile-meta');
    this.boardEl = el('span', 'tile-board');
    this.resEl = el('span', 'tile-res');
    this.ownerEl = el('span', 'tile-owner');
    this.ownerEl.hidden = true;
    this.meta.append(this.boardEl, this.resEl, this.ownerEl);

    body.append(head, stats, this.meta);
    // The text first in the DOM, the picture first on screen (CSS order): the link's name, built from its
    // content, then starts with the camera's name instead of the picture's description (the card pattern
    // of Heydon Pickering's Inclusive Components; one link, so no focus order to go astray).
    a.append(body, media);
    this.el = a;
  }

  update(camera, now) {
    const prev = this.camera;
    this.camera = camera;
    const state = camera.state || 'offline';
    const name = camera.name || camera.id;
    this.el.dataset.state = state;
    this.el.classList.toggle('is-offline', state === 'offline');
    // No aria-label: the link is named by what it shows (picture, state, name, figures), so what a screen
    // reader says and what voice control matches is the visible text (WCAG 2.5.3, label in name).
    setText(this.nameEl, name);
    this.nameEl.title = name;
    setText(this.idEl, camera.id);
    this.badge.dataset.state = state;
    setText(this.badge, fmt.STATE_LABELS[state] || state);

    const streaming = state === 'streaming';
    this.motionChip.hidden = !camera.motion?.active;
    this.recChip.hidden = !camera.recording?.active;
    this.recChip.title = camera.recording?.active ? `Recording since ${fmt.clockTime(camera.recording.since)}` : '';
    this.fpsChip.hidden = !streaming;
    if (streaming) setText(this.fpsChip, `${fmt.fps(camera.fps_in)} fps`);

    const seenAgo = camera.last_seen == null ? null : now - camera.last_seen;
    this.lastSeen.hidden = state !== 'offline';
    if (state === 'offline') setText(this.lastSeen, camera.last_seen == null ? 'never seen' : `last seen ${fmt.ago(seenAgo)}`);
    if (camera.last_seen != null) this.lastSeen.title = fmt.dateTime(camera.last_seen);

    const viewers = typeof camera.clients === 'number' ? camera.clients : (camera.viewers ?? 0);
    setText(this.viewers.value, fmt.int(viewers));
    setText(this.dropped.value, fmt.int(camera.dropped_total ?? 0));
    const battery = camera.mode === 'snapshot';
    this.el.dataset.mode = battery ? 'snapshot' : 'stream';
    const ageLabel = battery ? 'Picture age' : 'Last frame age';
    setText(this.age.sr, `${ageLabel}: `);
    this.age.wrap.title = ageLabel;
    // A battery camera's picture is as old as its last wake: its age is what matters, asleep or missing.
    setText(this.age.value, state === 'offline' && !battery
      ? (camera.last_seen == null ? '—' : fmt.ago(seenAgo).replace(' ago', ''))
      : fmt.age(camera.last_frame_age_ms));
    this.age.wrap.classList.toggle('warn', state === 'stalled');
    const sleep = battery ? camera.sleep : null;
    this.wakeChip.hidden = !sleep || state === 'offline';
    if (sleep && state !== 'offline') setText(this.wakeChip, fmt.nextPicture(sleep, now));
    this.batteryChip.hidden = sleep?.battery_v == null;
    if (sleep?.battery_v != null) setText(this.batteryChip, `Battery ${fmt.volts(sleep.battery_v)}`);

    const ann = camera.announce || {};
    const board = camera.board || ann.board;
    const w = camera.width ?? ann.width;
    const h = camera.height ?? ann.height;
    setText(this.boardEl, board || (camera.source === 'static' ? 'static source' : 'unknown board'));
    setText(this.resEl, w && h ? `${w}×${h}` : '');
    this.resEl.hidden = !(w && h);
    const owner = camera.owner?.hub;  // in a cluster: the hub that pulls it
    setText(this.ownerEl, owner ? `on ${owner}` : '');
    this.ownerEl.hidden = !owner;
    if (w && h) this.el.style.setProperty('--ar', `${w} / ${h}`);

    this.#updatePlaceholder();
    this.#syncAlt();
    if (prev.state !== state) {
      this.triedOffline = false;
      this.wakeUp();
      this.kick();
    }
  }

  #updatePlaceholder() {
    // Once a picture arrived it stays (greyed when offline); the placeholder covers only "nothing yet".
    const state = this.camera.state;
    this.placeholder.hidden = this.hasFrame;
    if (this.hasFrame) return;
    let iconName = 'camera';
    let text = this.camera.mode === 'snapshot' ? 'Waiting for the first picture…' : 'Waiting for the first frame…';
    if (state === 'offline') {
      iconName = 'cameraOff';
      // The hub keeps retrying a camera that fails; its last error says why it is offline.
      text = this.camera.last_error ? `Camera offline — ${this.camera.last_error}` : 'Camera offline';
    } else if (state === 'connecting') {
      text = 'Connecting…';
    } else if (state === 'stalled') {
      iconName = 'alert';
      text = 'No frames arriving';
    }
    if (this.placeholder.dataset.icon !== iconName) {
      this.placeholder.dataset.icon = iconName;
      this.placeholderIcon.innerHTML = icon(iconName);
    }
    setText(this.placeholderText, text);
  }

  #syncAlt() {
    // Only the picture on show is described; the hidden buffer is not there for a screen reader.
    const label = `Latest picture from ${this.camera.name || this.id}`;
    for (const img of [this.front, this.back]) {
      const shown = img.classList.contains('live');
      img.alt = shown ? label : '';
      img.setAttribute('aria-hidden', String(!shown));
    }
  }

  observeVisibility(visible) {
    this.visible = visible;
    this.kick();
  }

  get wanted() {
    return this.grid.active && this.visible && !document.hidden && this.grid.hubReachable;
  }

  /** Start the refresh loop if this tile should refresh and it is not running yet. */
  kick() {
    if (this.running || !this.wanted) return;
    const state = this.camera.state;
    // An offline camera has no new frames: fetch once for its last picture, then rest.
    if (state === 'offline' && (this.hasFrame || this.triedOffline)) return;
    this.running = true;
    this.#loop();
  }

  async #loop() {
    try {
      while (this.wanted && !this.removed) {
        const state = this.camera.state;
        if (state === 'offline' && (this.hasFrame || this.triedOffline)) break;
        const started = performance.now();
        const outcome = await this.#fetchOne();
        if (state === 'offline') this.triedOffline = true;
        const interval = outcome === 'error' ? ERROR_INTERVAL_MS
          : (outcome === 'frame' && this.camera.state === 'streaming') ? FRAME_INTERVAL_MS : SLOW_INTERVAL_MS;
        const wait = Math.max(50, interval - (performance.now() - started));
        await new Promise((resolve) => {
          this.wake = resolve;
          this.sleepTimer = setTimeout(resolve, wait);
        });
        this.wake = null;
      }
    } finally {
      this.running = false;
    }
  }

  /** Cut a rest short (a state change: e.g. the camera came back). */
  wakeUp() {
    if (this.wake) {
      clearTimeout(this.sleepTimer);
      this.wake();
    }
  }

  async #fetchOne() {
    if (this.fetching) return 'skip'; // one request in flight per tile, whatever woke the loop
    this.fetching = true;
    try {
      return await this.#fetchFrame();
    } finally {
      this.fetching = false;
    }
  }

  async #fetchFrame() {
    await this.grid.slots.acquire();
    const ctrl = new AbortController();
    this.abort = ctrl;
    const timer = setTimeout(() => ctrl.abort(), FETCH_TIMEOUT_MS);
    try {
      if (!this.wanted) return 'skip';
      const url = new URL(this.camera.snapshot || `/cameras/${encodeURIComponent(this.id)}/snapshot.jpg`,
        window.location.href);
      url.searchParams.set('t', String(Date.now())); // cache-busting for caches that ignore no-store
      const resp = await fetch(url, { cache: 'no-store', signal: ctrl.signal });
      if (resp.status === 503 || resp.status === 404) {
        this.el.dataset.snapshot = resp.status === 503 ? 'none-yet' : 'unknown';
        return 'none';
      }
      if (!resp.ok) return 'error';
      const blob = await resp.blob();
      const objectUrl = URL.createObjectURL(blob);
      const next = this.back;
      next.src = objectUrl;
      try {
        await next.decode();
      } catch {
        URL.revokeObjectURL(objectUrl);
        return 'error';
      }
      if (this.removed) {
        URL.revokeObjectURL(objectUrl);
        return 'skip';
      }
      this.#swap();
      return 'frame';
    } catch {
      return 'error';
    } finally {
      clearTimeout(timer);
      this.abort = null;
      this.grid.slots.release();
    }
  }

  #swap() {
    const old = this.front;
    this.front = this.back;
    this.back = old;
    this.front.classList.add('live');
    old.classList.remove('live');
    // The hidden picture's blob is no longer shown: free it (its pixels stay decoded until replaced).
    const oldUrl = old.src;
    if (oldUrl.startsWith('blob:')) {
      old.removeAttribute('src');
      URL.revokeObjectURL(oldUrl);
    }
    this.frames += 1;
    this.el.dataset.frames = String(this.frames);
    this.el.dataset.snapshot = 'ok';
    this.hasFrame = true;
    this.#updatePlaceholder();
    this.#syncAlt();
  }

  destroy() {
    this.removed = true;
    this.abort?.abort();
    this.wakeUp();
    for (const img of [this.front, this.back]) {
      if (img.src.startsWith('blob:')) URL.revokeObjectURL(img.src);
    }
    this.el.remove();
  }
}

export class Grid {
  constructor(root, emptyEl) {
    this.root = root;
    this.emptyEl = emptyEl;
    this.tiles = new Map();
    this.slots = new Slots(MAX_IN_FLIGHT);
    this.active = true;
    this.hubReachable = true;
    this.filter = { text: '', state: 'all' };
    this.cameras = [];
    this.observer = new IntersectionObserver((entries) => {
      for (const entry of entries) {
        const tile = this.tiles.get(entry.target.dataset.id);
        tile?.observeVisibility(entry.isIntersecting);
      }
    }, { rootMargin: '200px 0px' });
    document.addEventListener('visibilitychange', () => this.#kickAll());
  }

  #kickAll() {
    for (const tile of this.tiles.values()) tile.kick();
  }

  setActive(active) {
    this.active = active;
    this.#kickAll();
  }

  setHubReachable(reachable) {
    this.hubReachable = reachable;
    this.#kickAll();
  }

  setFilter(filter) {
    this.filter = { ...this.filter, ...filter };
    this.#applyFilter();
  }

  tileFor(id) {
    return this.tiles.get(id)?.el ?? null;
  }

  /** Bring the tiles in line with the hub's camera list (sorted by name, then id). */
  update(cameras, now) {
    this.cameras = cameras;
    const seen = new Set();
    const sorted = [...cameras].sort((a, b) => (a.name || a.id).localeCompare(b.name || b.id, undefined,
      { numeric: true, sensitivity: 'base' }) || a.id.localeCompare(b.id));
    let previous = null;
    for (const camera of sorted) {
      if (typeof camera?.id !== 'string') continue;
      seen.add(camera.id);
      let tile = this.tiles.get(camera.id);
      if (!tile) {
        tile = new Tile(this, camera);
        this.tiles.set(camera.id, tile);
        this.observer.observe(tile.el);
      }
      tile.update(camera, now);
      // Keep DOM order equal to sorted order without touching tiles already in place (keeps focus).
      const want = previous ? previous.el.nextElementSibling : this.root.firstElementChild;
      if (want !== tile.el) this.root.insertBefore(tile.el, want);
      previous = tile;
    }
    for (const [id, tile] of this.tiles) {
      if (!seen.has(id)) {
        this.observer.unobserve(tile.el);
        tile.destroy();
        this.tiles.delete(id);
      }
    }
    this.#applyFilter();
  }

  #applyFilter() {
    const text = this.filter.text.trim().toLowerCase();
    let shown = 0;
    for (const tile of this.tiles.values()) {
      const c = tile.camera;
      const online = c.state !== 'offline';
      const stateOk = this.filter.state === 'all' || (this.filter.state === 'online' ? online : !online);
      const textOk = !text || (c.name || '').toLowerCase().includes(text) || c.id.toLowerCase().includes(text)
        || (c.board || '').toLowerCase().includes(text);
      const show = stateOk && textOk;
      tile.el.hidden = !show;
      if (show) shown += 1;
    }
    this.emptyEl.hidden = this.tiles.size > 0;
    this.root.dataset.count = String(this.tiles.size);
    this.noMatch = this.tiles.size > 0 && shown === 0;
    return shown;
  }

  get shownCount() {
    let n = 0;
    for (const tile of this.tiles.values()) if (!tile.el.hidden) n += 1;
    return n;
  }

  /** Ids in display order, for previous/next navigation in the camera view. */
  order() {
    return [...this.root.children].map((node) => node.dataset.id).filter(Boolean);
  }
}
