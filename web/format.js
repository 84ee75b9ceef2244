// Small pure helpers that turn the hub's numbers into short, readable text.

const nf = new Intl.NumberFormat('en-US');

export function plural(n, one, many = `${one}s`) {
  return `${nf.format(n)} ${n === 1 ? one : many}`;
}

export function int(n) {
  return n == null || Number.isNaN(n) ? '—' : nf.format(Math.round(n));
}

export function fps(x) {
  if (x == null || Number.isNaN(x)) return '—';
  return x >= 9.95 ? x.toFixed(0) : x.toFixed(1);
}

/** A frame age in ms: "85 ms", "1.2 s", "3 min". */
export function age(ms) {
  if (ms == null) return '—';
  if (ms < 1000) return `${Math.max(0, Math.round(ms))} ms`;
  if (ms < 10000) return `${(ms / 1000).toFixed(1)} s`;
  return duration(ms / 1000);
}

/** A span in seconds: "12 s", "3 min 4 s", "2 h 5 min", "3 d 4 h". */
export function duration(s) {
  if (s == null || Number.isNaN(s)) return '—';
  s = Math.max(0, Math.floor(s));
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return s % 60 ? `${m} min ${s % 60} s` : `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
}

/** How long ago, coarse on purpose: "just now", "12 s ago", "3 min ago", "2 h ago", "4 d ago". */
export function ago(seconds) {
  if (seconds == null || Number.isNaN(seconds)) return 'never';
  if (seconds < 5) return 'just now';
  if (seconds < 60) return `${Math.floor(seconds)} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
  return `${Math.floor(seconds / 86400)} d ago`;
}

export function bytes(n) {
  if (n == null) return '—';
  const units = ['B', 'KB', 'MB', 'GB', 'TB'];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) {
    n /= 1000;
    i += 1;
  }
  return `${i === 0 ? n : n.toFixed(n >= 100 ? 0 : 1)} ${units[i]}`;
}

export function clockTime(unix) {
  if (unix == null) return '—';
  return new Date(unix * 1000).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit', second: '2-digit' });
}

export function dateTime(unix) {
  if (unix == null) return '—';
  return new Date(unix * 1000).toLocaleString([], {
    year: 'numeric', month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

/** A short label for a User-Agent header: "Chrome 120 · Linux", "VLC 3.0.20", "curl 8.5.0". */
export function userAgent(ua) {
  if (!ua) return 'unknown client';
  const tools = [
    [/VLC\/([\d.]+)/, 'VLC'], [/LibVLC\/([\d.]+)/, 'VLC'], [/curl\/([\d.]+)/, 'curl'],
    [/Wget\/([\d.]+)/, 'Wget'], [/Lavf\/([\d.]+)/, 'FFmpeg'], [/HomeAssistant\/([\w.]+)/, 'Home Assistant'],
    [/go2rtc\/([\w.]+)/, 'go2rtc'], [/python-requests\/([\d.]+)/, 'Python requests'],
    [/aiohttp\/([\d.]+)/, 'aiohttp'], [/Python-urllib\/([\d.]+)/, 'Python urllib'],
  ];
  for (const [re, name] of tools) {
    const m = ua.match(re);
    if (m) return `${name} ${m[1]}`;
  }
  let browser = null;
  for (const [re, name] of [
    [/Edg\/(\d+)/, 'Edge'], [/OPR\/(\d+)/, 'Opera'], [/HeadlessChrome\/(\d+)/, 'Headless Chrome'],
    [/Firefox\/(\d+)/, 'Firefox'], [/Chrom(?:e|ium)\/(\d+)/, 'Chrome'], [/Version\/(\d+)[\d.]* .*Safari/, 'Safari'],
  ]) {
    const m = ua.match(re);
    if (m) {
      browser = `${name} ${m[1]}`;
      break;
    }
  }
  let os = null;
  for (const [re, name] of [
    [/Android/, 'Android'], [/iPhone|iPad|iPod/, 'iOS'], [/Windows/, 'Windows'], [/Mac OS X|Macintosh/, 'macOS'],
    [/CrOS/, 'ChromeOS'], [/Linux/, 'Linux'],
  ]) {
    if (re.test(ua)) {
      os = name;
      break;
    }
  }
  if (browser) return os ? `${browser} · ${os}` : browser;
  const first = ua.split(/[\s(]/)[0];
  return first.length > 40 ? `${first.slice(0, 40)}…` : first;
}

export const STATE_LABELS = {
  streaming: 'Streaming',
  connecting: 'Connecting',
  stalled: 'Stalled',
  sleeping: 'Asleep',
  offline: 'Offline',
};

/** How soon, coarse: "in 12 s", "in 3 min", "in 2 h". */
export function until(seconds) {
  if (seconds == null || Number.isNaN(seconds)) return '—';
  if (seconds < 60) return `in ${Math.max(1, Math.ceil(seconds))} s`;
  if (seconds < 3600) return `in ${Math.round(seconds / 60)} min`;
  return `in ${Math.round(seconds / 3600)} h`;
}

/** A battery camera's wake, as a tile or the camera view says it: "next picture in 3 min", "picture due". */
export function nextPicture(sleep, now) {
  if (!sleep || sleep.next_wake == null) return 'waiting for its first wake';
  const left = sleep.next_wake - now;
  return left > 0 ? `next picture ${until(left)}` : 'next picture due';
}

/** A battery voltage: "3.87 V". */
export function volts(v) {
  return v == null || Number.isNaN(v) ? '—' : `${v.toFixed(2)} V`;
}

const SETTING_LABELS = { frame_size: 'frame size', jpeg_quality: 'JPEG quality', fps: 'fps' };

/** Settings as words: "frame size QQVGA, JPEG quality 20". */
export function settings(change) {
  return Object.entries(change ?? {}).map(([k, v]) => `${SETTING_LABELS[k] ?? k} ${v}`).join(', ');
}

export const REASONS = {
  closed: 'the viewer closed the connection',
  reset: 'the connection was reset',
  write_timeout: 'the viewer stopped reading (write timeout)',
  evicted: 'evicted to stay within the viewer limit',
  server_shutdown: 'the hub shut down',
  camera_removed: 'the camera was removed',
};
