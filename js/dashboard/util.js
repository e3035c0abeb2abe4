// Small helpers shared by the dashboard's views: building DOM, formatting numbers and times,
// links between views, and the plot theme. No dependencies on the page's state.

/**
 * Creates an element: `el('a', {href: '#', class: 'x', dataset: {key: 'k'}}, 'text', child)`.
 * Attributes whose value is null or undefined are left out.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value == null) continue;
    if (name === 'dataset') {
      for (const [k, v] of Object.entries(value)) if (v != null) node.dataset[k] = String(v);
    }
    else if (name === 'class') node.className = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child == null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

export const $ = (id) => document.getElementById(id);

/** A number with `digits` decimals, or an em dash. */
export function fixed(v, digits) {
  return Number.isFinite(v) ? v.toFixed(digits) : '—';
}

export function text(v) {
  return v == null || v === '' ? '—' : String(v);
}

/** The hash route of an object's page; keys keep their colon readable. */
export function objectHref(key) {
  return `#/object/${encodeURIComponent(key).replace(/%3A/gi, ':')}`;
}

export function objectLink(key) {
  return el('a', { href: objectHref(key), class: 'key' }, key);
}

const MJD_UNIX_EPOCH = 40587;
const MS_PER_DAY = 86_400_000;

/** The instant of an MJD (read as UTC; TAI is 37 s ahead, below what these plots resolve). */
export function mjdToDate(mjd) {
  return new Date((mjd - MJD_UNIX_EPOCH) * MS_PER_DAY);
}

/** `2021-07-01 04:43:38` (UTC) for an MJD. */
export function formatMjdDate(mjd) {
  if (!Number.isFinite(mjd)) return '—';
  return mjdToDate(mjd).toISOString().replace('T', ' ').slice(0, 19);
}

/** A wall-clock time with milliseconds, for event logs. */
export function clockTime(date = new Date()) {
  return date.toLocaleTimeString([], { hour12: false }) + `.${String(date.getMilliseconds()).padStart(3, '0')}`;
}

/** `g 18.21, r 18.05`: each band's latest detection magnitude from a summary's `bands`. */
export function formatBandMags(bands) {
  if (!bands || typeof bands !== 'object') return '—';
  const parts = Object.entries(bands)
    .filter(([, b]) => Number.isFinite(b?.mag))
    .map(([band, b]) => `${band} ${b.mag.toFixed(2)}`);
  return parts.length ? parts.join(', ') : '—';
}

/** A table body filled with one row per item (`row(item)` returns a `<tr>`), or a note row. */
export function fillTable(tbody, items, row, emptyText = 'Nothing to show.') {
  const columns = tbody.closest('table')?.querySelectorAll('thead th').length || 1;
  if (items.length === 0) {
    tbody.replaceChildren(el('tr', { class: 'empty' }, el('td', { colspan: columns }, emptyText)));
    return;
  }
  tbody.replaceChildren(...items.map(row));
}

/** Band colors, the usual ones of ZTF and Rubin plots. */
export const BAND_COLORS = { u: '#6a3d9a', g: '#1a9850', r: '#d62728', i: '#ef8a17', z: '#8c564b', y: '#3f3f3f' };
export const OTHER_BAND_COLOR = '#555555';
export const SURVEY_COLORS = { ztf: '#1f5fa8', lsst: '#c2410c' };

/** Plotly's global, loaded by a classic script before the modules (vendor/README.md). */
export function plotly() {
  const P = globalThis.Plotly;
  if (!P) throw new Error('the plotting library (vendor/plotly-basic.min.js) did not load');
  return P;
}

/**
 * Whether the plotting library is there; when it is not (the page was served without its
 * vendor/ directory), says so in place of the plot `gd` instead of failing the whole view.
 */
export function canPlot(gd) {
  if (globalThis.Plotly) return true;
  if (!gd.querySelector('.no-plot')) {
    gd.replaceChildren(el('p', { class: 'no-plot' }, 'The plotting library did not load (/dashboard/vendor/plotly-basic.min.js): no plot.'));
  }
  return false;
}

export const PLOT_CONFIG = {
  responsive: true,
  displaylogo: false,
  modeBarButtonsToRemove: ['select2d', 'lasso2d', 'toggleSpikelines'],
};

/** The layout every plot starts from: the page's font and colors, small margins. */
export function baseLayout(extra = {}) {
  return {
    font: { family: 'system-ui, -apple-system, "Segoe UI", Roboto, sans-serif', size: 12, color: '#1d232a' },
    paper_bgcolor: 'rgba(0,0,0,0)',
    plot_bgcolor: '#ffffff',
    margin: { l: 60, r: 20, t: 20, b: 48 },
    hoverlabel: { font: { family: 'ui-monospace, SFMono-Regular, Menlo, Consolas, monospace', size: 12 } },
    legend: { orientation: 'h', y: -0.2 },
    ...extra,
  };
}

/** Whether the element is laid out (plots are drawn only then; hidden ones when shown). */
export function isShown(node) {
  return node.offsetParent !== null || node.getClientRects().length > 0;
}

/**
 * Coalesces calls to `fn` into one run at the next animation frame — or after `maxDelayMs`
 * when no frame comes (a background tab, a headless page) — so a burst of events costs one
 * DOM update.
 */
export function frameBatcher(fn, maxDelayMs = 100) {
  let frame = null;
  let timer = null;
  const run = () => {
    if (frame !== null) cancelAnimationFrame(frame);
    clearTimeout(timer);
    frame = null;
    timer = null;
    fn();
  };
  return () => {
    if (timer !== null) return;
    frame = requestAnimationFrame(run);
    timer = setTimeout(run, maxDelayMs);
  };
}
