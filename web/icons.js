// Inline SVG icons (24×24 outline, drawn for camhub): no icon font, no external file.

const paths = {
  camera: '<path d="M3 8.5A1.5 1.5 0 0 1 4.5 7h2.2l1.6-2.2A1.5 1.5 0 0 1 9.5 4.2h5a1.5 1.5 0 0 1 1.2.6L17.3 7h2.2'
    + 'A1.5 1.5 0 0 1 21 8.5v9a1.5 1.5 0 0 1-1.5 1.5h-15A1.5 1.5 0 0 1 3 17.5z"/><circle cx="12" cy="12.5" r="3.5"/>',
  cameraOff: '<path d="M3 3l18 18"/><path d="M8.3 4.8A1.5 1.5 0 0 1 9.5 4.2h5a1.5 1.5 0 0 1 1.2.6L17.3 7h2.2'
    + 'A1.5 1.5 0 0 1 21 8.5v8.7M17.4 19H4.5A1.5 1.5 0 0 1 3 17.5v-9A1.5 1.5 0 0 1 4.5 7h1.7"/>'
    + '<path d="M9.9 10.1a3.5 3.5 0 0 0 4.6 4.9"/>',
  eye: '<path d="M2 12s3.6-7 10-7 10 7 10 7-3.6 7-10 7S2 12 2 12z"/><circle cx="12" cy="12" r="3"/>',
  drop: '<path d="M12 3v12"/><path d="M7 10l5 5 5-5"/><path d="M5 21h14"/>',
  clock: '<circle cx="12" cy="12" r="9"/><path d="M12 7v5l3 2"/>',
  chip: '<rect x="6" y="6" width="12" height="12" rx="1.5"/><path d="M9 2v4M15 2v4M9 18v4M15 18v4M2 9h4M2 15h4'
    + 'M18 9h4M18 15h4"/>',
  frame: '<rect x="3" y="5" width="18" height="14" rx="1.5"/><path d="M3 15l5-4 4 3 3-2 6 4"/>',
  activity: '<path d="M3 12h4l3-7 4 14 3-7h4"/>',
  broker: '<circle cx="12" cy="12" r="2"/><path d="M7.8 7.8a6 6 0 0 0 0 8.4M16.2 16.2a6 6 0 0 0 0-8.4'
    + 'M5 5a10 10 0 0 0 0 14M19 19a10 10 0 0 0 0-14"/>',
  back: '<path d="M19 12H5"/><path d="M11 6l-6 6 6 6"/>',
  prev: '<path d="M15 6l-6 6 6 6"/>',
  next: '<path d="M9 6l6 6-6 6"/>',
  copy: '<rect x="8" y="8" width="13" height="13" rx="2"/><path d="M16 8V5a2 2 0 0 0-2-2H5a2 2 0 0 0-2 2v9'
    + 'a2 2 0 0 0 2 2h3"/>',
  check: '<path d="M4 12.5l5 5L20 6.5"/>',
  external: '<path d="M14 4h6v6"/><path d="M20 4l-9 9"/><path d="M18 14v5a1 1 0 0 1-1 1H5a1 1 0 0 1-1-1V7'
    + 'a1 1 0 0 1 1-1h5"/>',
  expand: '<path d="M4 9V4h5M20 9V4h-5M4 15v5h5M20 15v5h-5"/>',
  download: '<path d="M12 4v11"/><path d="M7 10l5 5 5-5"/><path d="M4 20h16"/>',
  alert: '<path d="M12 3l10 18H2z"/><path d="M12 10v5"/><path d="M12 18h.01"/>',
  search: '<circle cx="11" cy="11" r="7"/><path d="M20 20l-4-4"/>',
  refresh: '<path d="M20 11a8 8 0 0 0-14.6-4.5L4 8"/><path d="M4 3v5h5"/><path d="M4 13a8 8 0 0 0 14.6 4.5L20 16"/>'
    + '<path d="M20 21v-5h-5"/>',
  users: '<circle cx="9" cy="8" r="3.5"/><path d="M2.5 20a6.5 6.5 0 0 1 13 0"/><path d="M16 4.5a3.5 3.5 0 0 1 0 7'
    + 'M18.5 14.5a6.5 6.5 0 0 1 3 5.5"/>',
  terminal: '<rect x="3" y="4" width="18" height="16" rx="2"/><path d="M7 9l3 3-3 3M13 15h4"/>',
  logo: '<rect x="2.5" y="6" width="13" height="12" rx="2.5"/><path d="M15.5 10.5l5-3v9l-5-3"/>'
    + '<circle cx="9" cy="12" r="2.2"/>',
};

/** The SVG markup of a named icon; decorative (hidden from screen readers) unless a label is given. */
export function icon(name, label = null) {
  const a11y = label ? `role="img" aria-label="${label}"` : 'aria-hidden="true" focusable="false"';
  return `<svg class="icon icon-${name}" viewBox="0 0 24 24" ${a11y}>${paths[name]}</svg>`;
}

/** Fill every ``[data-icon]`` placeholder below ``root`` with its icon. */
export function fillIcons(root) {
  for (const el of root.querySelectorAll('[data-icon]')) {
    el.insertAdjacentHTML('afterbegin', icon(el.dataset.icon));
    el.removeAttribute('data-icon');
  }
}
