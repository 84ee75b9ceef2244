// The camera's node settings on the camera view: frame size, JPEG quality and fps, sent through
// POST /api/cameras/<id>/settings. A change is "pending" until the node re-announces it (the announce
// arrives with every summary over the event stream); if it has not after CONFIRM_MS, the page says so.

import * as fmt from './format.js';

const CONFIRM_MS = 10000;
const FIELDS = ['frame_size', 'jpeg_quality', 'fps'];
const LABELS = { frame_size: 'frame size', jpeg_quality: 'JPEG quality', fps: 'fps' };

function describe(change) {
  return FIELDS.filter((k) => k in change).map((k) => `${LABELS[k]} ${change[k]}`).join(', ');
}

function fmtNext(sleep) {
  const left = sleep.next_wake - Date.now() / 1000;
  return left > 0 ? `about ${fmt.until(left)}` : 'due now';
}

export class NodeControls {
  constructor(root) {
    this.card = root.querySelector('#controls-card');
    this.form = root.querySelector('#controls-form');
    this.inputs = {
      frame_size: root.querySelector('#ctl-frame-size'),
      jpeg_quality: root.querySelector('#ctl-quality'),
      fps: root.querySelector('#ctl-fps'),
    };
    this.apply = root.querySelector('#ctl-apply');
    this.status = root.querySelector('#ctl-status');
    this.id = null;
    this.pending = null; // {requested, timer}
    this.dirty = new Set(); // fields the user edited and has not applied yet
    this.sizesSig = '';
    for (const [key, input] of Object.entries(this.inputs)) {
      input.addEventListener('input', () => this.dirty.add(key));
    }
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.#send();
    });
  }

  show(id) {
    if (id === this.id) return;
    this.id = id;
    this.#clearPending();
    this.dirty.clear();
    this.sizesSig = '';
    this.#say('', 'idle');
  }

  hide() {
    this.id = null;
    this.#clearPending();
  }

  /** A fresh camera summary: its node's controls and what it last announced. */
  update(summary) {
    const controls = summary?.controls;
    const announce = summary?.announce;
    this.card.hidden = !controls || !announce;
    if (this.card.hidden) return;
    this.announce = announce;
    const sizes = controls.frame_size ?? [];
    const sig = sizes.join(',');
    if (sig !== this.sizesSig) {
      this.sizesSig = sig;
      this.inputs.frame_size.replaceChildren(...sizes.map((name) => new Option(name, name)));
    }
    for (const [key, input] of [['fps', this.inputs.fps], ['jpeg_quality', this.inputs.jpeg_quality]]) {
      const [low, high] = controls[key] ?? [];
      input.min = String(low ?? '');
      input.max = String(high ?? '');
    }
    for (const key of FIELDS) {
      const input = this.inputs[key];
      if (!this.dirty.has(key) && document.activeElement !== input && announce[key] != null) {
        input.value = String(announce[key]);
      }
    }
    // A battery camera takes its changes when it wakes: queued, whether it sleeps or is missing.
    const battery = summary.mode === 'snapshot';
    this.battery = battery ? summary.sleep ?? {} : null;
    const offline = summary.state === 'offline' && !battery;
    this.apply.disabled = offline || this.sending === true;
    const said = this.status.dataset.state;
    if (offline && !this.pending && (said === 'idle' || said === undefined)) {
      this.#say('The camera is offline: its settings can be changed when it is back.', 'offline');
    } else if (!offline && said === 'offline') {
      this.#say('', 'idle');
    }
    const queued = this.battery?.pending ?? {};
    if (battery && Object.keys(queued).length && !this.pending) {
      this.pending = { requested: queued, queued: true }; // queued earlier (another page, Home Assistant)
      this.#sayQueued(queued);
    }
    if (this.pending && FIELDS.every((k) => !(k in this.pending.requested) || announce[k] === this.pending.requested[k])) {
      const done = this.pending.requested;
      this.#clearPending();
      for (const key of Object.keys(done)) this.dirty.delete(key);
      this.#say(`Applied: the camera now runs at ${describe(done)}.`, 'applied');
    } else if (this.pending?.queued && battery && !Object.keys(queued).length) {
      const refused = this.pending.requested; // the hub no longer holds it, and the announce does not show it
      this.#clearPending();
      this.#say(`The camera woke and did not take ${describe(refused)}: its current settings are shown.`, 'timeout');
    }
  }

  #changes() {
    const change = {};
    const size = this.inputs.frame_size.value;
    if (size && size !== this.announce?.frame_size) change.frame_size = size;
    for (const key of ['jpeg_quality', 'fps']) {
      const raw = this.inputs[key].value.trim();
      if (raw === '') continue;
      const value = Number(raw);
      if (value !== this.announce?.[key]) change[key] = value;
    }
    return change;
  }

  async #send() {
    const id = this.id;
    const change = this.#changes();
    if (!Object.keys(change).length) {
      this.#say('Nothing to change: these are the camera’s current settings.', 'idle');
      return;
    }
    this.sending = true;
    this.apply.disabled = true;
    let resp;
    let body = null;
    try {
      resp = await fetch(`/api/cameras/${encodeURIComponent(id)}/settings`, {
        method: 'POST',
        cache: 'no-store',
        headers: { 'Content-Type': 'application/json', Accept: 'application/json' },
        body: JSON.stringify(change),
      });
      body = await resp.json().catch(() => null);
    } catch {
      resp = null;
    } finally {
      this.sending = false;
      this.apply.disabled = false;
    }
    if (id !== this.id) return;
    if (!resp) {
      this.#say('The hub could not be reached: nothing was changed.', 'error');
    } else if (resp.status === 202 && body?.queued) {
      this.#clearPending();
      const pending = body.pending ?? change;
      this.pending = { requested: pending, queued: true }; // no timeout: it applies when the camera wakes
      this.#sayQueued(pending);
    } else if (resp.status === 202) {
      this.#clearPending();
      const requested = body?.requested ?? change;
      this.pending = { requested, timer: setTimeout(() => this.#unconfirmed(), CONFIRM_MS) };
      this.#say(`Pending: waiting for the camera to confirm ${describe(requested)}…`, 'pending');
    } else if (resp.status === 401) {
      this.#say('Sign in to change camera settings (reload the page to be asked for the password).', 'error');
    } else {
      this.#say(`Not changed: ${body?.error ?? `the hub answered ${resp.status}`}.`, 'error');
    }
  }

  #sayQueued(pending) {
    const when = this.battery?.next_wake != null ? ` (${fmtNext(this.battery)})` : '';
    this.#say(`Queued for the camera’s next wake${when}: ${describe(pending)}. It sleeps between pictures.`, 'pending');
  }

  #unconfirmed() {
    if (!this.pending) return;
    const requested = this.pending.requested;
    this.pending = null;
    this.#say(`The camera did not confirm ${describe(requested)} within ${CONFIRM_MS / 1000} s: it may be`
      + ' offline, or it refused the value. Its current settings are shown.', 'timeout');
    this.dirty.clear();
  }

  #clearPending() {
    if (this.pending) clearTimeout(this.pending.timer);
    this.pending = null;
  }

  #say(text, state) {
    this.status.textContent = text;
    this.status.dataset.state = state;
    this.form.dataset.state = state;
  }
}
