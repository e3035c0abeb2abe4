// Lightkeeper dashboard: watch one object, show its summary and a light curve that grows live.
// Served by the gateway at / (this file at /dashboard/dashboard.js); no build step.
import { LightkeeperClient } from '/js/lightkeeper.js';

const BAND_COLORS = { g: '#1a8a3a', r: '#d62728', i: '#ff8c00', u: '#8a2be2', z: '#808080', y: '#8b4513' };
const OTHER_BAND_COLOR = '#333333';
const KIND_LABELS = { detection: 'detection', upper_limit: 'upper limit', forced: 'forced photometry' };
const MAX_LOG = 20;
const SVG_NS = 'http://www.w3.org/2000/svg';
const PLOT = { width: 800, height: 380, left: 62, right: 18, top: 16, bottom: 48 };
/** AB zero point for flux in nJy: mag = 31.4 − 2.5·log10(f). */
const NJY_ZERO_POINT = 31.4;

const $ = (id) => document.getElementById(id);
const client = new LightkeeperClient();

/**
 * What the page is watching: the object summary and version from the stream, and the light
 * curve (from REST on a snapshot, then grown by each update's new_points).
 * @type {null | {key: string, sub: string|null, object: object|null|undefined, version: number|null,
 *   points: object[], seen: Set<string>, loading: boolean, pending: object[][], generation: number}}
 */
let watch = null;

// ---- watching -----------------------------------------------------------------------------

function startWatching(rawKey) {
  const key = rawKey.trim();
  if (!key) { showMessage('Enter an object key, such as ztf:ZTF21abiuvdk.'); return; }
  showMessage('');
  if (watch?.sub) client.unsubscribe(watch.sub);
  const w = { key, sub: null, object: undefined, version: null, points: [], seen: new Set(),
    loading: false, pending: [], generation: 0 };
  watch = w;
  const url = new URL(location.href);
  url.searchParams.set('key', key);
  history.replaceState(null, '', url);
  $('key-input').value = key;
  setStatus(client.state === 'open' ? 'open' : 'connecting');
  renderSummary();
  renderPlot();
  w.sub = client.subscribe([key], (event) => { if (w === watch) onEvent(w, event); });
}

function onEvent(w, event) {
  logEvent(event);
  switch (event.type) {
    case 'status': setStatus(event.state); break;
    case 'snapshot': onSnapshot(w, event); break;
    case 'update': onUpdate(w, event); break;
    case 'error': showMessage(`${event.error?.code ?? 'error'}: ${event.error?.message ?? 'unknown error'}`); break;
    default: break;
  }
}

/** A snapshot starts (or restarts) the object: reload its whole light curve over REST. */
async function onSnapshot(w, event) {
  w.object = event.object;
  w.version = event.version;
  const generation = ++w.generation;
  renderSummary();
  if (!event.object) { // no alert yet: the first update will carry every point
    w.points = [];
    w.seen = new Set();
    w.loading = false;
    w.pending = [];
    renderPlot();
    return;
  }
  w.loading = true; // updates arriving meanwhile wait in w.pending
  renderPlot();
  try {
    const lc = await client.getLightcurve(w.key);
    if (generation !== w.generation) return;
    w.points = [];
    w.seen = new Set();
    addPoints(w, lc.points);
  } catch (e) {
    if (generation === w.generation) showMessage(`Could not load the light curve: ${e.code ?? 'error'}: ${e.message}`);
  }
  if (generation !== w.generation) return;
  w.loading = false;
  for (const points of w.pending) addPoints(w, points);
  w.pending = [];
  renderPlot();
}

function onUpdate(w, event) {
  w.object = event.object ?? w.object;
  w.version = event.version;
  const points = event.new_points ?? [];
  if (w.loading) w.pending.push(points);
  else addPoints(w, points);
  renderSummary();
  renderPlot();
}

/** Adds points not seen yet, by source_id or by (mjd, band, kind); keeps them sorted by time. */
function addPoints(w, points) {
  let added = 0;
  for (const p of points ?? []) {
    const ids = [`t:${p.mjd}|${p.band}|${p.kind}`];
    if (p.source_id != null) ids.push(`s:${String(p.source_id)}`);
    if (ids.some((id) => w.seen.has(id))) continue;
    for (const id of ids) w.seen.add(id);
    w.points.push(p);
    added += 1;
  }
  if (added) w.points.sort((a, b) => a.mjd - b.mjd);
  return added;
}

// ---- summary ------------------------------------------------------------------------------

const fixed = (digits) => (v) => (Number.isFinite(v) ? v.toFixed(digits) : '—');
const text = (v) => (v == null || v === '' ? '—' : String(v));

/** Summary fields shown in their own row: object field → element id and formatter. */
const SUMMARY_FIELDS = {
  key: ['key', text],
  survey: ['survey', text],
  object_id: ['object-id', text],
  ra: ['ra', fixed(6)],
  dec: ['dec', fixed(6)],
  first_mjd: ['first-mjd', fixed(5)],
  last_mjd: ['last-mjd', fixed(5)],
  n_detections: ['n-detections', text],
  n_upper_limits: ['n-upper-limits', text],
  n_forced: ['n-forced', text],
  bands: ['bands', formatBands],
  latest_alert_id: ['latest-alert-id', text],
  solar_system: ['solar-system', formatSolarSystem],
  version: ['version', text],
  updated_at: ['updated-at', text],
};

function formatBands(bands) {
  if (!bands || typeof bands !== 'object') return '—';
  const parts = Object.entries(bands).map(([band, b]) => {
    if (typeof b === 'number') return `${band} ${b.toFixed(2)}`;
    const mag = Number.isFinite(b?.mag) ? b.mag.toFixed(2) : '—';
    const err = Number.isFinite(b?.mag_err) ? ` ± ${b.mag_err.toFixed(2)}` : '';
    const when = Number.isFinite(b?.mjd) ? ` @ ${b.mjd.toFixed(3)}` : '';
    return `${band} ${mag}${err}${when}`;
  });
  return parts.length ? parts.join('; ') : '—';
}

function formatSolarSystem(ss) {
  if (!ss) return 'none';
  if (typeof ss !== 'object') return String(ss);
  const distance = ss.distance_arcsec ?? ss.distance;
  return `${ss.name ?? '?'}${Number.isFinite(distance) ? ` at ${distance.toFixed(1)}″` : ''}`;
}

function renderSummary() {
  const w = watch;
  const obj = w?.object;
  const note = $('summary-note');
  note.classList.toggle('waiting', obj === null);
  if (!w) note.textContent = 'Enter an object key and press Watch.';
  else if (obj === undefined) note.textContent = `Connecting to ${w.key}…`;
  else if (obj === null) note.textContent = 'Waiting for first alert.';
  else note.textContent = '';
  note.hidden = note.textContent === '';

  const values = { ...(obj ?? {}), key: obj?.key ?? w?.key, version: w?.version ?? obj?.version };
  if (obj === null) Object.assign(values, { n_detections: 0, n_upper_limits: 0, n_forced: 0 });
  for (const [field, [id, format]] of Object.entries(SUMMARY_FIELDS)) {
    $(id).textContent = values[field] === undefined ? '—' : format(values[field]);
  }

  // Fields the page has no row for still show, so nothing the server sends is hidden.
  const extra = $('extra');
  extra.replaceChildren();
  for (const [field, value] of Object.entries(obj ?? {})) {
    if (field in SUMMARY_FIELDS) continue;
    const dt = document.createElement('dt');
    const dd = document.createElement('dd');
    dt.textContent = field.replaceAll('_', ' ');
    dd.textContent = value !== null && typeof value === 'object' ? JSON.stringify(value) : text(value);
    extra.append(dt, dd);
  }
  extra.hidden = extra.childElementCount === 0;
}

// ---- plot ---------------------------------------------------------------------------------

function svg(tag, attrs, parent) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) el.setAttribute(name, String(value));
  parent?.append(el);
  return el;
}

/** The magnitude a point is drawn at, with its error, or null when it has none to draw. */
function plotValue(p) {
  if (!Number.isFinite(p.mjd)) return null;
  if (p.kind === 'upper_limit') return Number.isFinite(p.limiting_mag) ? { y: p.limiting_mag, err: null } : null;
  if (Number.isFinite(p.mag)) return { y: p.mag, err: Number.isFinite(p.mag_err) ? p.mag_err : null };
  if (p.kind === 'detection' && Number.isFinite(p.flux_njy) && p.flux_njy !== 0) {
    const f = Math.abs(p.flux_njy);
    const err = Number.isFinite(p.flux_err_njy) ? (2.5 / Math.LN10) * (p.flux_err_njy / f) : null;
    return { y: NJY_ZERO_POINT - 2.5 * Math.log10(f), err };
  }
  return null;
}

/** Round tick positions (1, 2 or 5 × 10^n apart) covering [lo, hi]. */
function niceTicks(lo, hi, count) {
  const raw = (hi - lo) / count;
  const pow = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * pow).find((s) => s >= raw);
  const decimals = Math.max(0, -Math.floor(Math.log10(step)));
  const ticks = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + step * 1e-9; t += step) ticks.push(t);
  return { ticks, label: (t) => t.toFixed(decimals) };
}

function padded(values, minSpan, fraction) {
  let lo = Math.min(...values);
  let hi = Math.max(...values);
  if (hi - lo < minSpan) { const mid = (lo + hi) / 2; lo = mid - minSpan / 2; hi = mid + minSpan / 2; }
  const pad = (hi - lo) * fraction;
  return [lo - pad, hi + pad];
}

function renderPlot() {
  const root = $('plot');
  root.replaceChildren();
  const { width, height, left, right, top, bottom } = PLOT;
  const drawn = (watch?.points ?? []).map((p) => ({ p, v: plotValue(p) })).filter((d) => d.v);
  if (drawn.length === 0) {
    let message = 'Nothing to plot yet.';
    if (!watch) message = 'Watch an object to see its light curve.';
    else if (watch.object === null) message = 'Waiting for first alert.';
    else if (watch.loading) message = 'Loading light curve…';
    svg('text', { x: width / 2, y: height / 2, 'text-anchor': 'middle', class: 'empty' }, root).textContent = message;
    return;
  }

  const [x0, x1] = padded(drawn.map((d) => d.p.mjd), 1, 0.03);
  const [y0, y1] = padded(drawn.flatMap((d) => [d.v.y - (d.v.err ?? 0), d.v.y + (d.v.err ?? 0)]), 0.5, 0.06);
  const sx = (mjd) => left + ((mjd - x0) / (x1 - x0)) * (width - left - right);
  const sy = (mag) => top + ((mag - y0) / (y1 - y0)) * (height - top - bottom); // brighter (smaller) up

  const axes = svg('g', {}, root);
  const xt = niceTicks(x0, x1, 7);
  for (const t of xt.ticks) {
    svg('line', { x1: sx(t), x2: sx(t), y1: top, y2: height - bottom, class: 'grid' }, axes);
    svg('line', { x1: sx(t), x2: sx(t), y1: height - bottom, y2: height - bottom + 5, class: 'axis' }, axes);
    svg('text', { x: sx(t), y: height - bottom + 18, 'text-anchor': 'middle', class: 'tick-label' }, axes)
      .textContent = xt.label(t);
  }
  const yt = niceTicks(y0, y1, 6);
  for (const t of yt.ticks) {
    svg('line', { x1: left, x2: width - right, y1: sy(t), y2: sy(t), class: 'grid' }, axes);
    svg('line', { x1: left - 5, x2: left, y1: sy(t), y2: sy(t), class: 'axis' }, axes);
    svg('text', { x: left - 8, y: sy(t) + 4, 'text-anchor': 'end', class: 'tick-label' }, axes)
      .textContent = yt.label(t);
  }
  svg('line', { x1: left, x2: width - right, y1: height - bottom, y2: height - bottom, class: 'axis' }, axes);
  svg('line', { x1: left, x2: left, y1: top, y2: height - bottom, class: 'axis' }, axes);
  const scales = [...new Set(drawn.map((d) => d.p.time_scale).filter(Boolean))].map((s) => s.toUpperCase());
  svg('text', { x: (left + width - right) / 2, y: height - 8, 'text-anchor': 'middle', class: 'axis-label' }, axes)
    .textContent = scales.length ? `MJD (${scales.join(', ')})` : 'MJD';
  svg('text', { x: 16, y: (top + height - bottom) / 2, 'text-anchor': 'middle', class: 'axis-label',
    transform: `rotate(-90 16 ${(top + height - bottom) / 2})` }, axes).textContent = 'magnitude (AB)';

  const points = svg('g', {}, root);
  for (const { p, v } of drawn) drawPoint(points, p, v, sx(p.mjd), sy(v.y), sy);
}

function drawPoint(parent, p, v, x, y, sy) {
  const color = BAND_COLORS[p.band] ?? OTHER_BAND_COLOR;
  if (v.err && p.kind !== 'upper_limit') {
    svg('line', { x1: x, x2: x, y1: sy(v.y - v.err), y2: sy(v.y + v.err), stroke: color,
      class: `errbar${p.kind === 'forced' ? ' forced' : ''}` }, parent);
  }
  const common = { class: `pt pt-${p.kind}`, 'data-band': p.band ?? '', 'data-mjd': p.mjd };
  let el;
  if (p.kind === 'upper_limit') {
    el = svg('polygon', { ...common, points: `${x - 5},${y - 4} ${x + 5},${y - 4} ${x},${y + 5}`,
      fill: 'none', stroke: color, 'stroke-width': 1.4 }, parent);
  } else if (p.kind === 'forced') {
    el = svg('rect', { ...common, x: x - 3, y: y - 3, width: 6, height: 6,
      fill: 'none', stroke: color, 'stroke-width': 1.2 }, parent);
  } else {
    el = svg('circle', { ...common, cx: x, cy: y, r: 4, fill: color, stroke: color }, parent);
  }
  const value = p.kind === 'upper_limit' ? `> ${v.y.toFixed(2)}` : `${v.y.toFixed(2)}${v.err ? ` ± ${v.err.toFixed(2)}` : ''}`;
  const id = p.source_id != null ? `, source ${p.source_id}` : '';
  svg('title', {}, el).textContent =
    `${KIND_LABELS[p.kind] ?? p.kind}, ${p.band} band, MJD ${p.mjd.toFixed(5)}: ${value} mag${id}`;
}

function renderLegend() {
  const legend = $('legend');
  const item = (label, draw) => {
    const span = document.createElement('span');
    const icon = svg('svg', { width: 14, height: 14, viewBox: '0 0 14 14', 'aria-hidden': 'true' });
    draw(icon);
    span.append(icon, label);
    legend.append(span);
  };
  for (const [band, color] of Object.entries(BAND_COLORS)) {
    item(band, (s) => svg('circle', { cx: 7, cy: 7, r: 4.5, fill: color }, s));
  }
  item('detection', (s) => svg('circle', { cx: 7, cy: 7, r: 4, fill: '#555' }, s));
  item('upper limit', (s) => svg('polygon', { points: '2,3 12,3 7,12', fill: 'none', stroke: '#555', 'stroke-width': 1.4 }, s));
  item('forced photometry', (s) => svg('rect', { x: 4, y: 4, width: 6, height: 6, fill: 'none', stroke: '#555', 'stroke-width': 1.2 }, s));
}

// ---- status, messages, event log ----------------------------------------------------------

function setStatus(state) {
  const pill = $('status');
  pill.textContent = state;
  pill.dataset.state = state;
}

function showMessage(message) {
  const el = $('message');
  el.textContent = message;
  el.hidden = !message;
}

function logEvent(event) {
  const li = document.createElement('li');
  li.dataset.type = event.type;
  if (event.version != null) li.dataset.version = event.version;
  const time = document.createElement('time');
  time.textContent = new Date().toLocaleTimeString();
  const type = document.createElement('span');
  type.textContent = event.type;
  const detail = document.createElement('span');
  const parts = [];
  if (event.type === 'status') parts.push(event.state);
  if (event.key) parts.push(event.key);
  if (event.version != null) parts.push(`v${event.version}`);
  if (event.type === 'update') {
    const n = event.new_points?.length ?? 0;
    parts.push(`+${n} point${n === 1 ? '' : 's'}`);
  }
  if (event.type === 'snapshot' && event.object === null) parts.push('(no alert yet)');
  if (event.type === 'error') parts.push(`${event.error?.code}: ${event.error?.message}`);
  detail.textContent = parts.join('  ');
  li.append(time, type, detail);
  const log = $('event-log');
  log.prepend(li);
  while (log.childElementCount > MAX_LOG) log.lastElementChild.remove();
}

// ---- start --------------------------------------------------------------------------------

$('watch-form').addEventListener('submit', (e) => {
  e.preventDefault();
  startWatching($('key-input').value);
});
renderLegend();
renderSummary();
renderPlot();
const initialKey = new URLSearchParams(location.search).get('key');
if (initialKey) startWatching(initialKey);
