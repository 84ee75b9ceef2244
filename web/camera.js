// The camera view (#/camera/<id>): the real MJPEG stream, the camera's details, who is watching it
// right now and who stopped watching (and why), and the URLs to paste into a player.

import { getJSON } from './connection.js';
import { NodeControls } from './controls.js';
import * as fmt from './format.js';
import { icon } from './icons.js';
import { RecordingsPanel } from './recordings.js';

const DETAIL_POLL_MS = 1000;
const STREAM_RETRY_MS = [1000, 2000, 4000, 8000];
const FPS_HISTORY = 90; // seconds of fps_in shown in the sparkline

function $(root, sel) {
  return root.querySelector(sel);
}

function cell(text, className, title) {
  const td = document.createElement('td');
  if (className) td.className = className;
  td.textContent = text;
  if (title) td.title = title;
  return td;
}

function setText(node, text) {
  if (node.textContent !== text) node.textContent = text;
}

/** Copy text, with a fallback for plain-HTTP pages on the LAN where the Clipboard API is unavailable. */
async function copyText(text, input) {
  if (navigator.clipboard && window.isSecureContext) {
    try {
      await navigator.clipboard.writeText(text);
      return true;
    } catch {
      // fall through to the selection-based copy
    }
  }
  input.focus();
  input.select();
  try {
    return document.execCommand('copy');
  } catch {
    return false;
  }
}

export class CameraView {
  constructor(root, { onNavigate, getOrder, getPoster }) {
    this.root = root;
    this.onNavigate = onNavigate;
    this.getOrder = getOrder;
    this.getPoster = getPoster;
    this.id = null;
    this.summary = null;
    this.detail = null;
    this.history = [];
    this.pollTimer = null;
    this.streamToken = 0;
    this.hubReachable = true;
    this.serverOffset = 0;

    this.stream = $(root, '#stream');
    this.poster = $(root, '#poster');
    this.streamBox = $(root, '.stream-box');
    this.streamOverlay = $(root, '.stream-overlay');
    this.streamOverlayText = $(root, '.stream-overlay-text');
    this.title = $(root, '#camera-title');
    this.idEl = $(root, '#camera-id');
    this.badge = $(root, '#camera-badge');
    this.notFound = $(root, '#camera-missing');
    this.body = $(root, '#camera-body');
    this.viewersBody = $(root, '#viewers-body');
    this.viewersEmpty = $(root, '#viewers-empty');
    this.viewersCount = $(root, '#viewers-count');
    this.discBody = $(root, '#disconnects-body');
    this.discEmpty = $(root, '#disconnects-empty');
    this.details = $(root, '#camera-details');
    this.spark = $(root, '#fps-spark');
    this.controls = new NodeControls(root);
    this.recordings = new RecordingsPanel(root);

    $(root, '#btn-fullscreen').addEventListener('click', () => this.#fullscreen());
    $(root, '#btn-prev').addEventListener('click', () => this.step(-1));
    $(root, '#btn-next').addEventListener('click', () => this.step(1));
    for (const btn of root.querySelectorAll('[data-copy]')) {
      btn.addEventListener('click', () => this.#copy(btn));
    }
    this.stream.addEventListener('load', () => this.#streamEvent('load'));
    this.stream.addEventListener('error', () => this.#streamEvent('error'));
    this.streamBox.addEventListener('dblclick', () => this.#fullscreen());
  }

  get open() {
    return this.id !== null;
  }

  show(id, summary) {
    const same = this.id === id;
    this.id = id;
    this.summary = summary ?? null;
    this.root.hidden = false;
    if (!same) {
      this.detail = null;
      this.history = [];
      this.urls = null;
      this.viewersBody.replaceChildren();
      this.discBody.replaceChildren();
      this.notFound.hidden = true;
      this.body.hidden = false;
      this.#renderHeader();
      this.#renderDetails();
      this.#clearPoster();
      this.#capture(this.getPoster(id)); // the grid's latest picture, shown until the stream starts
      this.#startStream(0);
      this.#loadUrls();
    }
    this.controls.show(id);
    this.controls.update(this.summary);
    this.recordings.show(id);
    this.recordings.update(this.summary);
    this.#poll();
  }

  hide() {
    this.id = null;
    this.root.hidden = true;
    clearTimeout(this.pollTimer);
    clearInterval(this.captureTimer);
    this.#stopStream();
    this.controls.hide();
    this.recordings.hide();
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
  }

  step(delta) {
    const order = this.getOrder();
    if (!order.length || this.id === null) return;
    const at = order.indexOf(this.id);
    const next = order[(at + delta + order.length) % order.length];
    if (next && next !== this.id) this.onNavigate(next);
  }

  /** A fresh summary from the event stream (every second and on every state change). */
  update(summary, now) {
    if (!this.open) return;
    const before = this.summary?.state;
    this.summary = summary;
    this.now = now;
    if (summary) {
      this.history.push(summary.fps_in ?? 0);
      if (this.history.length > FPS_HISTORY) this.history.shift();
    }
    this.#renderHeader();
    this.#renderDetails();
    this.#renderSpark();
    this.controls.update(summary);
    this.recordings.update(summary);
    // The camera came back: if our stream had given up, start it again right away.
    if (summary && before && before !== summary.state && summary.state === 'streaming' && this.streamFailed) {
      this.#startStream(0);
    }
  }

  setHubReachable(reachable) {
    const was = this.hubReachable;
    this.hubReachable = reachable;
    // The hub restarted: the old MJPEG connection is gone; open a new one.
    if (reachable && !was && this.open) this.#startStream(0);
    this.#renderOverlay();
  }

  // ---- the live stream -------------------------------------------------------------------------
  // A canvas behind the stream keeps a recent picture: when the MJPEG connection breaks the <img>
  // goes blank, and the dimmed last picture says "this is what we saw last" instead of a black box.
  #capture(img) {
    if (!img || !img.naturalWidth) return;
    const c = this.poster;
    if (c.width !== img.naturalWidth || c.height !== img.naturalHeight) {
      c.width = img.naturalWidth;
      c.height = img.naturalHeight;
    }
    try {
      c.getContext('2d').drawImage(img, 0, 0);
      c.hidden = false;
    } catch {
      // an image that cannot be drawn (not decoded yet): keep the previous picture
    }
  }

  #clearPoster() {
    this.poster.hidden = true;
    this.poster.getContext('2d').clearRect(0, 0, this.poster.width, this.poster.height);
  }

  #startStream(attempt) {
    clearTimeout(this.streamRetry);
    this.streamToken += 1;
    this.streamAttempt = attempt;
    this.streamLoaded = false;
    this.streamFailed = false;
    this.#renderOverlay();
    const url = new URL(`/cameras/${encodeURIComponent(this.id)}/stream`, window.location.href);
    if (attempt > 0) url.searchParams.set('t', String(Date.now()));
    this.stream.src = url.pathname + url.search;
  }

  #stopStream() {
    clearTimeout(this.streamRetry);
    this.streamToken += 1;
    // An empty src aborts the MJPEG request (frees the connection and the hub's viewer slot).
    this.stream.removeAttribute('src');
    this.stream.src = '';
    this.streamBox.dataset.stream = 'stopped';
  }

  #streamEvent(kind) {
    if (!this.open || !this.stream.getAttribute('src')) return;
    if (kind === 'load' && !this.streamLoaded) {
      this.streamLoaded = true;
      this.streamAttempt = 0;
      this.#renderOverlay();
      clearInterval(this.captureTimer);
      this.captureTimer = setInterval(() => {
        if (this.streamLoaded) this.#capture(this.stream);
      }, 1000);
      return;
    }
    if (kind === 'load') return; // some browsers report every multipart part as a load
    // The stream ended or never started: retry with backoff; the hub's state says why meanwhile.
    clearInterval(this.captureTimer);
    this.streamFailed = true;
    this.streamLoaded = false;
    this.#renderOverlay();
    const delay = STREAM_RETRY_MS[Math.min(this.streamAttempt, STREAM_RETRY_MS.length - 1)];
    const token = this.streamToken;
    clearTimeout(this.streamRetry);
    this.streamRetry = setTimeout(() => {
      if (token === this.streamToken && this.open && this.hubReachable) this.#startStream(this.streamAttempt + 1);
    }, delay);
  }

  #renderOverlay() {
    const state = this.summary?.state;
    let text = null;
    if (!this.hubReachable) text = 'Hub unreachable — the picture is paused';
    else if (state === 'offline') {
      const seen = this.summary?.last_seen;
      const now = this.now ?? Date.now() / 1000 + this.serverOffset;
      const what = this.summary?.mode === 'snapshot' ? 'Camera missing: it has not woken' : 'Camera offline';
      text = seen == null ? what : `${what} — last seen ${fmt.ago(now - seen)}`;
      if (this.summary?.last_error) text += ` — ${this.summary.last_error}`;
    } else if (state === 'stalled') text = 'No frames arriving from the camera';
    else if (this.streamFailed) text = 'Stream interrupted — reconnecting…';
    else if (!this.streamLoaded) text = state === 'connecting' ? 'Connecting to the camera…' : 'Opening the stream…';
    this.streamOverlay.hidden = text === null;
    this.streamBox.dataset.stream = this.streamLoaded ? 'playing' : (this.streamFailed ? 'failed' : 'opening');
    this.streamBox.classList.toggle('dim', state === 'offline' || !this.hubReachable);
    this.streamOverlay.classList.toggle('busy', text !== null && !this.streamFailed && state !== 'offline'
      && state !== 'stalled' && this.hubReachable);
    if (text !== null) setText(this.streamOverlayText, text);
  }

  #fullscreen() {
    if (document.fullscreenElement) document.exitFullscreen().catch(() => {});
    else this.streamBox.requestFullscreen?.().catch(() => {});
  }

  // ---- details ---------------------------------------------------------------------------------
  async #poll() {
    clearTimeout(this.pollTimer);
    const id = this.id;
    if (id === null) return;
    try {
      const detail = await getJSON(`/api/cameras/${encodeURIComponent(id)}`);
      if (id !== this.id) return;
      this.detail = detail;
      this.notFound.hidden = true;
      this.body.hidden = false;
      if (!this.summary) this.summary = detail;
      this.#renderHeader();
      this.#renderDetails();
      this.#renderViewers();
      this.#renderDisconnects();
    } catch (err) {
      if (id !== this.id) return;
      if (err.status === 404) this.#showMissing();
    }
    if (id === this.id) this.pollTimer = setTimeout(() => this.#poll(), DETAIL_POLL_MS);
  }

  #showMissing() {
    this.notFound.hidden = false;
    this.body.hidden = true;
    setText($(this.notFound, '.missing-id'), this.id);
    this.#stopStream();
    this.badge.hidden = true;
  }

  async #loadUrls() {
    const id = this.id;
    const streamInput = $(this.root, '#url-stream');
    const snapInput = $(this.root, '#url-snapshot');
    const base = window.location.origin;
    // Until the hub answers, show the plain URLs (correct whenever auth is off).
    streamInput.value = `${base}/cameras/${encodeURIComponent(id)}/stream`;
    snapInput.value = `${base}/cameras/${encodeURIComponent(id)}/snapshot.jpg`;
    try {
      const urls = await getJSON(`/api/cameras/${encodeURIComponent(id)}/urls`);
      if (id !== this.id) return;
      if (typeof urls?.stream === 'string') streamInput.value = urls.stream;
      if (typeof urls?.snapshot === 'string') snapInput.value = urls.snapshot;
      this.urls = urls;
      $(this.root, '#url-token-note').hidden = !/[?&]token=/.test(`${urls?.stream}`);
    } catch {
      // keep the plain URLs
    }
    $(this.root, '#link-snapshot').href = snapInput.value;
    $(this.root, '#link-stream').href = streamInput.value;
  }

  async #copy(btn) {
    const input = $(this.root, `#${btn.dataset.copy}`);
    const ok = await copyText(input.value, input);
    const label = btn.querySelector('.btn-label');
    btn.classList.toggle('copied', ok);
    btn.querySelector('svg').outerHTML = icon(ok ? 'check' : 'copy');
    label.textContent = ok ? 'Copied' : 'Press Ctrl+C';
    $(this.root, '#copy-status').textContent = ok ? `${input.dataset.what} URL copied` : '';
    clearTimeout(btn.resetTimer);
    btn.resetTimer = setTimeout(() => {
      btn.classList.remove('copied');
      btn.querySelector('svg').outerHTML = icon('copy');
      label.textContent = 'Copy';
    }, 1800);
  }

  #renderHeader() {
    const c = this.summary ?? this.detail;
    const name = c?.name || this.id;
    setText(this.title, name);
    setText(this.idEl, this.id ?? '');
    const state = c?.state ?? 'connecting';
    this.badge.hidden = !c;
    this.badge.dataset.state = state;
    setText(this.badge, fmt.STATE_LABELS[state] || state);
    this.root.dataset.state = state;
    this.stream.alt = `Live stream from ${name}`;
    document.title = `${name} · camhub`;
    this.#renderOverlay();
  }

  #renderDetails() {
    const c = this.summary ?? this.detail;
    if (!c) return;
    const ann = c.announce || this.detail?.announce || {};
    const live = {
      'fps-in': fmt.fps(c.fps_in),
      'frames-in': fmt.int(c.frames_in),
      viewers: fmt.int(typeof c.clients === 'number' ? c.clients
        : (Array.isArray(c.clients) ? c.clients.length : (this.detail?.viewers ?? 0))),
      dropped: fmt.int(c.dropped_total),
      age: c.state === 'offline' ? '—' : fmt.age(c.last_frame_age_ms),
    };
    for (const [key, value] of Object.entries(live)) setText($(this.root, `[data-live="${key}"]`), value);
    const targetFps = ann.fps;
    setText($(this.root, '[data-live="fps-target"]'), targetFps ? `of ${targetFps} target` : 'frames per second in');

    const w = c.width ?? ann.width;
    const h = c.height ?? ann.height;
    if (w && h) {
      this.streamBox.style.setProperty('--ar', `${w} / ${h}`);
      this.streamBox.style.setProperty('--ar-num', String(w / h));
    }
    const sleep = c.mode === 'snapshot' ? (c.sleep ?? {}) : null;
    const now = this.now ?? Date.now() / 1000 + this.serverOffset;
    const battery = sleep ? [
      ['Mode', `battery camera: a picture every ${fmt.duration(sleep.interval_s)}${sleep.wake_pin ? ' and when its wake pin fires' : ''}`],
      ['Last wake', sleep.last_wake == null ? 'not since the hub started'
        : `${fmt.dateTime(sleep.last_wake)}${sleep.wake_reason ? ` (${sleep.wake_reason})` : ''}`],
      ['Next picture', c.state === 'offline' ? 'missing: it has not woken' : fmt.nextPicture(sleep, now)],
      ['Battery', sleep.battery_v == null ? null : fmt.volts(sleep.battery_v)],
      ['Queued for the next wake', fmt.settings(sleep.pending) || null],
    ] : [];
    const rows = [
      ...battery,
      ['Board', c.board || ann.board],
      ['Sensor', ann.sensor],
      ['Resolution', w && h ? `${w} × ${h}${ann.frame_size ? ` (${ann.frame_size})` : ''}` : ann.frame_size],
      ['Target fps', sleep ? null : ann.fps],
      ['JPEG quality', ann.jpeg_quality],
      ['Firmware', ann.firmware],
      ['Address', ann.ip],
      ['Node stream', ann.stream_url],
      ['Source', c.source === 'static' ? 'static (CAMHUB_SOURCES)' : c.source === 'mqtt' ? 'MQTT discovery' : c.source],
      ['Owner', ownerText(c)],
      ['Last frame', c.last_seen == null ? 'never' : fmt.dateTime(c.last_seen)],
      ['Last error', c.last_error],
    ];
    const frag = document.createDocumentFragment();
    for (const [label, value] of rows) {
      if (value == null || value === '') continue;
      const dt = document.createElement('dt');
      dt.textContent = label;
      const dd = document.createElement('dd');
      dd.textContent = String(value);
      if (label === 'Node stream' || label === 'Address') dd.className = 'mono';
      frag.append(dt, dd);
    }
    const sig = JSON.stringify(rows);
    if (sig !== this.detailsSig) {
      this.detailsSig = sig;
      this.details.replaceChildren(frag);
    }
    $(this.root, '#details-empty').hidden = this.details.childElementCount > 2;
  }

  #renderSpark() {
    const values = this.history;
    const W = 120;
    const H = 32;
    if (values.length < 2) {
      this.spark.innerHTML = '';
      return;
    }
    const max = Math.max(1, ...values) * 1.15;
    // The window starts at 20 s and grows to FPS_HISTORY, so a fresh view is not a speck in a corner.
    const span = Math.min(FPS_HISTORY, Math.max(20, values.length));
    const step = W / (span - 1);
    const x0 = W - (values.length - 1) * step;
    const pts = values.map((v, i) => `${(x0 + i * step).toFixed(1)},${(H - (v / max) * H).toFixed(1)}`);
    this.spark.innerHTML = `<polygon class="spark-fill" points="${x0.toFixed(1)},${H} ${pts.join(' ')} ${W},${H}"/>`
      + `<polyline class="spark-line" points="${pts.join(' ')}"/>`;
  }

  #renderViewers() {
    const clients = Array.isArray(this.detail?.clients) ? this.detail.clients : [];
    setText(this.viewersCount, String(clients.length));
    this.viewersEmpty.hidden = clients.length > 0;
    const me = navigator.userAgent;
    const rows = clients.map((v) => {
      const tr = document.createElement('tr');
      tr.dataset.viewer = String(v.id);
      const uaTd = document.createElement('td');
      uaTd.className = 'ua';
      const label = document.createElement('span');
      label.className = 'ua-label';
      label.textContent = fmt.userAgent(v.user_agent);
      const full = document.createElement('span');
      full.className = 'ua-full';
      full.textContent = v.user_agent || '';
      uaTd.append(label);
      if (v.user_agent && v.user_agent === me) {
        const you = document.createElement('span');
        you.className = 'you';
        you.textContent = 'this browser';
        uaTd.append(you);
        tr.classList.add('is-me');
      }
      uaTd.append(full);
      uaTd.title = v.user_agent || '';
      const offered = (v.frames_sent ?? 0) + (v.frames_dropped ?? 0);
      const pct = offered > 0 ? (100 * (v.frames_dropped ?? 0)) / offered : 0;
      const dropPct = v.frames_dropped > 0 ? ` (${pct < 0.1 ? '<0.1' : pct.toFixed(1)} %)` : '';
      tr.append(
        cell(v.peer ?? '—', 'mono'),
        uaTd,
        cell(fmt.duration(v.connected_for_s), 'num', v.connected_at ? `since ${fmt.dateTime(v.connected_at)}` : ''),
        cell(fmt.int(v.frames_sent), 'num'),
        cell(`${fmt.int(v.frames_dropped)}${dropPct}`, `num${v.frames_dropped > 0 ? ' warn' : ''}`),
        cell(fmt.fps(v.fps), 'num'),
        cell(fmt.bytes(v.bytes_sent), 'num'),
      );
      return tr;
    });
    this.viewersBody.replaceChildren(...rows);
  }

  #renderDisconnects() {
    const list = Array.isArray(this.detail?.disconnects) ? this.detail.disconnects.slice(0, 20) : [];
    this.discEmpty.hidden = list.length > 0;
    const now = Date.now() / 1000 + this.serverOffset;
    const rows = list.map((d) => {
      const tr = document.createElement('tr');
      const reason = document.createElement('td');
      const tag = document.createElement('span');
      tag.className = 'reason';
      tag.dataset.reason = d.reason ?? 'unknown';
      tag.textContent = (d.reason ?? 'unknown').replace('_', ' ');
      tag.title = fmt.REASONS[d.reason] ?? '';
      reason.append(tag);
      const lasted = d.closed_at != null && d.connected_at != null ? d.closed_at - d.connected_at : null;
      tr.append(
        cell(fmt.ago(now - d.closed_at), 'when', fmt.dateTime(d.closed_at)),
        cell(d.peer ?? '—', 'mono'),
        cell(fmt.userAgent(d.user_agent), 'ua', d.user_agent || ''),
        reason,
        cell(fmt.duration(lasted), 'num'),
        cell(fmt.int(d.frames_sent), 'num'),
        cell(fmt.int(d.frames_dropped), `num${d.frames_dropped > 0 ? ' warn' : ''}`),
      );
      return tr;
    });
    this.discBody.replaceChildren(...rows);
  }
}

// In a cluster: which hub owns (pulls) the camera; undefined on a single hub.
function ownerText(c) {
  if (!('owner' in c)) return undefined;
  if (!c.owner) return 'none yet';
  const where = c.owned ? 'this hub' : c.owner.url;
  return `${c.owner.hub} (${where})${c.owner.online ? '' : ', offline'}`;
}
