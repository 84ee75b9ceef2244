// Motion and recordings on the camera view: the camera's motion and recording options, a timeline of
// the day (motion events and recordings, each a button that plays it), a player, and the lists.
// Playback is the hub's /cameras/<id>/recordings/<rec>/stream: MJPEG at the recording's pace, in an <img>.

import { getJSON } from './connection.js';
import * as fmt from './format.js';

const REFRESH_MS = 5000;
const DAY_S = 86400;
const WINDOWS = { day: DAY_S, hour: 3600, ten: 600 }; // what the timeline spans: the day, or the last hour / 10 min
const KIND_LABELS = { motion: 'motion', always: 'continuous', timelapse: 'time-lapse' };

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = text;
  return node;
}

function dayStart(unix) {
  const d = new Date(unix * 1000);
  d.setHours(0, 0, 0, 0);
  return d.getTime() / 1000;
}

export class RecordingsPanel {
  constructor(root) {
    this.root = root;
    this.card = root.querySelector('#rec-card');
    this.motionState = root.querySelector('#motion-state');
    this.recState = root.querySelector('#rec-state');
    this.optMotion = root.querySelector('#opt-motion');
    this.optRecord = root.querySelector('#opt-record');
    this.optStatus = root.querySelector('#opt-status');
    this.timeline = root.querySelector('#timeline');
    this.dayLabel = root.querySelector('#timeline-day');
    this.playbackBox = root.querySelector('#playback-box');
    this.playback = root.querySelector('#playback');
    this.playbackLabel = root.querySelector('#playback-label');
    this.playbackSpeed = root.querySelector('#playback-speed');
    this.playbackDownload = root.querySelector('#playback-download');
    this.recBody = root.querySelector('#recordings-body');
    this.recEmpty = root.querySelector('#recordings-empty');
    this.eventsList = root.querySelector('#motion-events');
    this.eventsEmpty = root.querySelector('#motion-events-empty');
    this.id = null;
    this.recordings = [];
    this.events = [];
    this.playing = null; // {rec, offset}
    this.window = root.querySelector('#timeline-window');
    this.window.addEventListener('change', () => this.#render(Date.now() / 1000));
    this.optMotion.addEventListener('change', () => this.#setOption({ motion: this.optMotion.value }));
    this.optRecord.addEventListener('change', () => this.#setOption({ record: this.optRecord.value }));
    this.playbackSpeed.addEventListener('change', () => this.playing && this.play(this.playing.rec, this.playing.offset));
    root.querySelector('#playback-close').addEventListener('click', () => this.stop());
  }

  show(id) {
    if (id === this.id) return;
    this.stop();
    this.id = id;
    this.recordings = [];
    this.events = [];
    this.optSig = '';
    this.timeline.replaceChildren();
    this.recBody.replaceChildren();
    this.eventsList.replaceChildren();
    this.optStatus.textContent = '';
    this.#refresh();
  }

  hide() {
    this.id = null;
    clearTimeout(this.timer);
    this.stop();
  }

  /** A fresh camera summary: motion now, the recording state and the options. */
  update(summary) {
    const motion = summary?.motion;
    const rec = summary?.recording;
    const active = Boolean(motion?.active);
    this.motionState.dataset.active = String(active);
    this.motionState.textContent = !motion?.enabled ? 'Motion detection off' : active ? 'Motion now' : 'No motion';
    let recText = '';
    if (rec?.stopped === 'disk_low') recText = 'Recording stopped: the disk is nearly full';
    else if (rec?.active) recText = `Recording since ${fmt.clockTime(rec.since)}`;
    if (this.recState.textContent !== recText) this.recState.textContent = recText;
    this.recState.dataset.state = rec?.stopped ? 'stopped' : rec?.active ? 'recording' : 'idle';
    const sig = `${motion?.enabled}/${rec?.mode}`;
    if (sig !== this.optSig && document.activeElement !== this.optMotion && document.activeElement !== this.optRecord) {
      this.optSig = sig;
      if (motion) this.optMotion.value = motion.enabled ? 'on' : 'off';
      if (rec?.mode) this.optRecord.value = rec.mode;
    }
  }

  async #setOption(change) {
    const id = this.id;
    this.optStatus.textContent = 'Saving…';
    try {
      const resp = await fetch(`/api/cameras/${encodeURIComponent(id)}/options`, {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(change),
      });
      const body = await resp.json().catch(() => ({}));
      if (id !== this.id) return;
      this.optStatus.textContent = resp.ok ? 'Saved' : `Not saved: ${body.error ?? resp.status}`;
    } catch {
      if (id === this.id) this.optStatus.textContent = 'Not saved: the hub is unreachable';
    }
  }

  async #refresh() {
    clearTimeout(this.timer);
    const id = this.id;
    if (id === null) return;
    const now = Date.now() / 1000;
    const since = dayStart(now);
    const q = `?since=${since}`;
    try {
      const [recordings, events] = await Promise.all([
        getJSON(`/api/cameras/${encodeURIComponent(id)}/recordings${q}`),
        getJSON(`/api/cameras/${encodeURIComponent(id)}/motion${q}`),
      ]);
      if (id !== this.id) return;
      this.recordings = Array.isArray(recordings) ? recordings : [];
      this.events = Array.isArray(events) ? events : [];
      this.#render(now);
    } catch {
      // keep what is shown; try again at the next refresh
    }
    if (id === this.id) this.timer = setTimeout(() => this.#refresh(), REFRESH_MS);
  }

  /** The recording that holds moment ``at`` (a motion event's start), and how far into it that is. */
  #recordingAt(at) {
    const rec = this.recordings.find((r) => r.kind !== 'timelapse' && r.start <= at + 1 && r.end >= at);
    return rec ? { rec, offset: Math.max(0, at - rec.start - 1) } : null;
  }

  #render(now) {
    // Keyboard focus survives the refresh: the element with the same key is focused again.
    const focused = document.activeElement?.closest?.('#rec-card [data-key]')?.dataset.key;
    const span = WINDOWS[this.window.value] ?? DAY_S;
    const since = span === DAY_S ? dayStart(now) : now - span;
    const until = since + span;
    const pct = (t) => `${(100 * Math.min(Math.max(t - since, 0), span) / span).toFixed(3)}%`;
    const width = (a, b) => `${(100 * Math.max(Math.min(b, until) - Math.max(a, since), 0) / span).toFixed(3)}%`;
    this.dayLabel.textContent = new Date(since * 1000).toLocaleDateString(undefined,
      { weekday: 'long', day: 'numeric', month: 'long' });
    const axis = [0, 0.25, 0.5, 0.75, 1].map((f) => el('span', null, span === DAY_S ? `${String(24 * f).padStart(2, '0')}:00`
      : new Date((since + f * span) * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' })));
    this.root.querySelector('.timeline-axis').replaceChildren(...axis);
    const marks = [];
    for (const r of this.recordings) {
      if (r.kind === 'timelapse' || r.end < since) continue;
      const b = el('button', 'tl-rec');
      b.type = 'button';
      b.dataset.kind = r.kind;
      b.dataset.rec = r.id;
      b.dataset.key = `tl-${r.id}`;
      b.style.left = pct(r.start);
      b.style.width = width(r.start, r.end);
      b.setAttribute('aria-label', `Play the ${KIND_LABELS[r.kind] ?? r.kind} recording from ${fmt.clockTime(r.start)}, `
        + `${fmt.duration(r.end - r.start)}`);
      b.title = `${fmt.clockTime(r.start)} – ${fmt.clockTime(r.end)}`;
      b.addEventListener('click', () => this.play(r, 0));
      marks.push(b);
    }
    for (const e of this.events) {
      const end = e.end ?? now;
      if (end < since) continue;
      const b = el('button', 'tl-motion');
      b.type = 'button';
      b.dataset.kind = 'motion-event';
      b.dataset.key = `tl-m-${e.start}`;
      b.style.left = pct(e.start);
      b.style.width = width(e.start, end);
      const found = this.#recordingAt(e.start);
      b.disabled = !found;
      b.setAttribute('aria-label', `Motion at ${fmt.clockTime(e.start)}, ${fmt.duration(end - e.start)}, `
        + `peak ${e.peak} %${found ? ': play it' : ' (not recorded)'}`);
      b.title = b.getAttribute('aria-label');
      if (found) b.addEventListener('click', () => this.play(found.rec, found.offset));
      marks.push(b);
    }
    const nowMark = el('span', 'tl-now');
    nowMark.style.left = pct(now);
    nowMark.setAttribute('aria-hidden', 'true');
    this.timeline.replaceChildren(...marks, nowMark);

    const rows = this.recordings.map((r) => {
      const tr = el('tr');
      tr.dataset.rec = r.id;
      const actions = el('td', 'actions');
      const play = el('button', 'btn btn-small', 'Play');
      play.type = 'button';
      play.dataset.key = `play-${r.id}`;
      play.setAttribute('aria-label', `Play ${fmt.clockTime(r.start)}`);
      play.addEventListener('click', () => this.play(r, 0));
      const download = el('a', 'btn btn-small', 'Download');
      download.href = r.download;
      download.setAttribute('download', '');
      download.setAttribute('aria-label', `Download ${fmt.clockTime(r.start)}`);
      actions.append(play, download);
      tr.append(el('td', 'when', fmt.clockTime(r.start)), el('td', 'num', fmt.duration(r.end - r.start)),
        el('td', null, `${KIND_LABELS[r.kind] ?? r.kind}${r.open ? ' (recording)' : ''}`),
        el('td', 'num', fmt.int(r.frames)), el('td', 'num', fmt.bytes(r.bytes)),
        el('td', 'num', r.peak == null ? '—' : `${r.peak} %`), actions);
      return tr;
    });
    this.recBody.replaceChildren(...rows);
    this.recEmpty.hidden = rows.length > 0;

    const items = this.events.slice(0, 20).map((e) => {
      const end = e.end ?? now;
      const li = el('li', 'motion-event');
      const found = this.#recordingAt(e.start);
      const play = el('button', 'btn btn-small', 'Play');
      play.type = 'button';
      play.dataset.key = `play-m-${e.start}`;
      play.disabled = !found;
      play.setAttribute('aria-label', `Play the motion at ${fmt.clockTime(e.start)}`);
      if (found) play.addEventListener('click', () => this.play(found.rec, found.offset));
      li.append(el('span', 'when', fmt.clockTime(e.start)),
        el('span', 'muted', `${e.end == null ? 'going on, ' : ''}${fmt.duration(end - e.start)}, peak ${e.peak} %`),
        play);
      return li;
    });
    this.eventsList.replaceChildren(...items);
    this.eventsEmpty.hidden = items.length > 0;
    if (focused) this.root.querySelector(`#rec-card [data-key="${CSS.escape(focused)}"]`)?.focus();
  }

  play(rec, offset) {
    this.playing = { rec, offset };
    const speed = this.playbackSpeed.value || '1';
    this.playbackBox.hidden = false;
    this.playback.alt = `Recording from ${fmt.clockTime(rec.start)}`;
    this.playbackLabel.textContent = `${KIND_LABELS[rec.kind] ?? rec.kind} recording, ${fmt.dateTime(rec.start)}`
      + ` (${fmt.duration(rec.end - rec.start)})`;
    this.playbackDownload.href = rec.download;
    this.playback.src = `${rec.stream}?t=${offset.toFixed(1)}&speed=${encodeURIComponent(speed)}`;
    this.playbackBox.dataset.rec = rec.id;
  }

  stop() {
    this.playing = null;
    // An empty src aborts the MJPEG request (the hub's playback ends with it).
    this.playback.removeAttribute('src');
    this.playback.src = '';
    this.playbackBox.hidden = true;
    delete this.playbackBox.dataset.rec;
  }
}
