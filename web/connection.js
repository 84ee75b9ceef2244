// The dashboard's link to the hub: Server-Sent Events first, polling as a fallback, and a visible
// "lost" state that retries with backoff until the hub answers again.
//
// Status values given to onStatus: {mode: 'connecting'} · {mode: 'live'} (SSE) · {mode: 'polling'}
// · {mode: 'lost', retryAt, attempt}.

const STALE_MS = 6000; // the hub sends a state event every second; this much silence means a dead link
const POLL_MS = 2000;
const SSE_RETRY_WHILE_POLLING_MS = [1000, 2000, 5000, 10000, 20000];
const BACKOFF_MS = [500, 1000, 2000, 4000, 6000];
const PROBE_TIMEOUT_MS = 4000;

export async function getJSON(path, { timeout = PROBE_TIMEOUT_MS, signal } = {}) {
  const ctrl = new AbortController();
  const timer = setTimeout(() => ctrl.abort(), timeout);
  signal?.addEventListener('abort', () => ctrl.abort(), { once: true });
  try {
    const resp = await fetch(path, { cache: 'no-store', signal: ctrl.signal, headers: { Accept: 'application/json' } });
    const body = await resp.json().catch(() => null);
    if (!resp.ok) {
      const err = new Error(body?.error || `HTTP ${resp.status}`);
      err.status = resp.status;
      err.body = body;
      throw err;
    }
    return body;
  } finally {
    clearTimeout(timer);
  }
}

export class HubConnection {
  /** onData({hub, cameras}) receives every snapshot of the hub's state; onStatus(status) every mode change. */
  constructor({ onData, onStatus }) {
    this.onData = onData;
    this.onStatus = onStatus;
    this.status = { mode: 'connecting' };
    this.es = null;
    this.lastMessage = 0;
    this.failures = 0;
    this.sseRetries = 0; // event-stream attempts since we fell back to polling
    this.timers = new Set();
    this.watchdog = null;
    this.pollTimer = null;
    this.generation = 0; // bumps on every (re)connect so late callbacks of an old attempt are ignored
  }

  start() {
    this.#openSse();
    this.watchdog = setInterval(() => this.#checkStale(), 1000);
    window.addEventListener('online', () => this.retryNow());
    document.addEventListener('visibilitychange', () => {
      if (!document.hidden && this.status.mode === 'lost') this.retryNow();
    });
  }

  /** Skip the backoff wait (the "Retry now" button, the network coming back). */
  retryNow() {
    if (this.status.mode === 'live') return;
    this.#reset();
    this.#setStatus({ mode: this.status.mode === 'polling' ? 'polling' : 'connecting' });
    this.#openSse();
  }

  #later(fn, ms) {
    const t = setTimeout(() => {
      this.timers.delete(t);
      fn();
    }, ms);
    this.timers.add(t);
  }

  #reset() {
    this.generation += 1;
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    clearTimeout(this.pollTimer);
    this.pollTimer = null;
    if (this.es) {
      this.es.close();
      this.es = null;
    }
  }

  #setStatus(status) {
    const changed = status.mode !== this.status.mode || status.retryAt !== this.status.retryAt;
    this.status = status;
    if (changed) this.onStatus(status);
  }

  #openSse() {
    if (typeof EventSource === 'undefined') {
      this.#failed();
      return;
    }
    const gen = this.generation;
    const es = new EventSource('/api/events');
    this.es = es;
    this.sseOpenedAt = performance.now();
    es.addEventListener('state', (ev) => {
      if (gen !== this.generation) return;
      let data;
      try {
        data = JSON.parse(ev.data);
      } catch {
        return; // a malformed event is skipped; the next one (≤ 1 s) carries the full state again
      }
      this.lastMessage = performance.now();
      this.failures = 0;
      this.sseRetries = 0;
      clearTimeout(this.pollTimer);
      this.pollTimer = null;
      this.#setStatus({ mode: 'live' });
      this.onData({ hub: data.hub ?? null, cameras: Array.isArray(data.cameras) ? data.cameras : [] });
    });
    // EventSource retries by itself, but silently and at its own pace; we take over to show the
    // state and to fall back to polling when the hub answers but its event stream does not.
    es.onerror = () => {
      if (gen === this.generation) this.#failed();
    };
  }

  #checkStale() {
    const now = performance.now();
    if (this.status.mode === 'live' && now - this.lastMessage > STALE_MS) this.#failed();
    // An event stream that never delivers (a buffering proxy, a hung hub) also counts as failed.
    const silent = this.es && this.lastMessage < this.sseOpenedAt && now - this.sseOpenedAt > STALE_MS;
    if (this.status.mode !== 'live' && silent) this.#failed();
  }

  async #failed() {
    this.#reset();
    const gen = this.generation;
    const reachable = await this.#poll(gen);
    if (gen !== this.generation) return; // a newer attempt took over meanwhile
    if (reachable) {
      // The hub answers plain requests: poll, and try the event stream again, soon at first (the hub
      // may just have come back), then less and less often (a proxy that never passes it through).
      this.#setStatus({ mode: 'polling' });
      const wait = SSE_RETRY_WHILE_POLLING_MS[Math.min(this.sseRetries, SSE_RETRY_WHILE_POLLING_MS.length - 1)];
      this.sseRetries += 1;
      this.#later(() => this.#openSse(), wait);
      return;
    }
    const delay = BACKOFF_MS[Math.min(this.failures, BACKOFF_MS.length - 1)] * (0.8 + Math.random() * 0.4);
    this.failures += 1;
    this.#setStatus({ mode: 'lost', retryAt: Date.now() + delay, attempt: this.failures });
    this.#later(() => {
      this.#setStatus({ mode: 'lost', retryAt: null, attempt: this.failures });
      this.#openSse();
    }, delay);
  }

  /** One polling round; schedules the next while this connection attempt is current. */
  async #poll(gen) {
    let cameras;
    let hub = null;
    try {
      [cameras, hub] = await Promise.all([getJSON('/api/cameras'), getJSON('/api/hub').catch(() => null)]);
    } catch {
      return false;
    }
    if (gen !== this.generation) return true;
    this.failures = 0;
    this.onData({ hub, cameras: Array.isArray(cameras) ? cameras : [] });
    this.pollTimer = setTimeout(async () => {
      if (gen !== this.generation || this.status.mode === 'live') return;
      if (!(await this.#poll(gen)) && gen === this.generation) this.#failed();
    }, POLL_MS);
    return true;
  }
}
