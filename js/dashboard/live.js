// The live view: every alert applied anywhere in the cluster, as it happens, from one filter
// subscription (`n_alerts >= 1` matches every object after each of its alerts), and the objects
// on a sky map.
//
// Display is rate-limited: events are queued and the feed is redrawn at most once per animation
// frame (keeping the last MAX_ROWS rows); the sky map at most every SKY_REDRAW_MS.

import { $, el, fixed, clockTime, objectHref, objectLink, frameBatcher, isShown, canPlot, plotly, PLOT_CONFIG, baseLayout, SURVEY_COLORS } from './util.js';

const FILTER = 'n_alerts >= 1';
const MAX_ROWS = 100;
/** Objects kept on the sky map (the most recently updated win). */
const MAX_SKY_OBJECTS = 5000;
/** Objects read over REST to fill the map before the first live update. */
const INITIAL_SKY_OBJECTS = 1000;
const SKY_REDRAW_MS = 500;
/** Objects updated within this many ms are drawn as "just now". */
const RECENT_MS = 60_000;
const RATE_WINDOW_MS = 60_000;

export class LiveView {
  #client;
  #onStatus;
  #showMessage;
  #pending = [];
  #total = 0;
  #arrivals = [];
  /** key → {ra, dec, survey, seen (ms), n_alerts} in least-recently-updated-first order. */
  #sky = new Map();
  #skyDrawnAt = 0;
  #skyTimer = null;
  #skyBound = false;
  #flush = frameBatcher(() => this.#renderFeed());

  constructor(client, { onStatus, showMessage }) {
    this.#client = client;
    this.#onStatus = onStatus;
    this.#showMessage = showMessage;
  }

  /** Fills the map with the most recently changed objects, then follows every change. */
  start() {
    $('live-filter').textContent = FILTER;
    this.#client.subscribe({ filter: FILTER }, (event) => this.#onEvent(event));
    this.#client.query({ order: 'last_mjd desc', limit: INITIAL_SKY_OBJECTS }).then((page) => {
      for (const o of page.objects ?? []) if (!this.#sky.has(o.key)) this.#remember(o, 0);
      this.#scheduleSky();
    }).catch((e) => this.#showMessage(`Could not read the objects for the sky map: ${e.code}: ${e.message}`));
    setInterval(() => this.#renderRate(), 1000);
  }

  shown() {
    this.#drawSky();
  }

  #onEvent(event) {
    switch (event.type) {
      case 'status': this.#onStatus(event.state); this.#setFeedState(event.state === 'open' ? 'subscribing' : event.state); break;
      case 'subscribed': this.#setFeedState('following'); break;
      case 'snapshot':
      case 'update':
        if (!event.object) break;
        this.#pending.push({ event, at: new Date() });
        if (this.#pending.length > MAX_ROWS) this.#pending.splice(0, this.#pending.length - MAX_ROWS);
        if (event.type === 'update') { this.#total += 1; this.#arrivals.push(Date.now()); }
        this.#remember(event.object, Date.now());
        this.#flush();
        this.#scheduleSky();
        break;
      case 'error': this.#showMessage(`live feed: ${event.error?.code}: ${event.error?.message}`); break;
      default: break;
    }
  }

  #setFeedState(state) {
    const s = $('live-state');
    s.textContent = state;
    s.dataset.state = state;
  }

  #remember(o, seen) {
    if (!Number.isFinite(o.ra) || !Number.isFinite(o.dec)) return;
    this.#sky.delete(o.key);
    this.#sky.set(o.key, { ra: o.ra, dec: o.dec, survey: o.survey, seen, n_alerts: o.n_alerts });
    if (this.#sky.size > MAX_SKY_OBJECTS) this.#sky.delete(this.#sky.keys().next().value);
  }

  // ---- feed -----------------------------------------------------------------------------

  #renderFeed() {
    const batch = this.#pending;
    this.#pending = [];
    if (batch.length === 0) return;
    const tbody = $('live-feed').tBodies[0];
    tbody.querySelector('tr.empty')?.remove();
    const frag = document.createDocumentFragment();
    for (let i = batch.length - 1; i >= 0; i--) frag.append(this.#row(batch[i]));
    tbody.prepend(frag);
    while (tbody.rows.length > MAX_ROWS) tbody.lastElementChild.remove();
    this.#renderRate();
  }

  #row({ event, at }) {
    const o = event.object;
    // The newest detection this change brought, else the object's latest in any band.
    const det = (event.new_points ?? []).filter((p) => p.kind === 'detection').sort((a, b) => b.mjd - a.mjd)[0];
    let band = det?.band;
    let mag = det?.mag;
    if (!det && o.bands) {
      const latest = Object.entries(o.bands).sort(([, a], [, b]) => b.mjd - a.mjd)[0];
      if (latest) [band, mag] = [latest[0], latest[1].mag];
    }
    const negative = det && (det.is_negative === true || det.flux_njy < 0);
    const where = `RA ${fixed(o.ra, 5)}°, Dec ${fixed(o.dec, 5)}°`;
    return el('tr', { dataset: { key: o.key, version: event.version, type: event.type }, class: 'fresh', title: where },
      el('td', { class: 'num' }, clockTime(at)),
      el('td', {}, objectLink(o.key)),
      el('td', {}, el('span', { class: `survey survey-${o.survey}` }, o.survey)),
      el('td', {}, band ? el('span', { class: `band band-${band}` }, band) : '—'),
      el('td', { class: 'num' }, Number.isFinite(mag) ? `${mag.toFixed(2)}${negative ? ' (neg.)' : ''}` : '—'),
      el('td', { class: 'num' }, fixed(o.last_mjd, 5)),
      el('td', { class: 'num' }, String(o.n_alerts ?? '—')),
      el('td', { class: 'num' }, `v${event.version}`));
  }

  #renderRate() {
    const now = Date.now();
    while (this.#arrivals.length && now - this.#arrivals[0] > RATE_WINDOW_MS) this.#arrivals.shift();
    $('live-rate').textContent = `${this.#arrivals.length} in the last minute · ${this.#total} since the page opened`;
  }

  // ---- sky map --------------------------------------------------------------------------

  #scheduleSky() {
    if (this.#skyTimer !== null) return;
    const wait = Math.max(0, this.#skyDrawnAt + SKY_REDRAW_MS - Date.now());
    this.#skyTimer = setTimeout(() => { this.#skyTimer = null; this.#drawSky(); }, wait);
  }

  #drawSky() {
    const gd = $('sky-map');
    $('sky-count').textContent = String(this.#sky.size);
    if (!isShown(gd) || !canPlot(gd)) return; // drawn when the view is shown
    this.#skyDrawnAt = Date.now();
    const now = Date.now();
    const groups = new Map();
    for (const [key, o] of this.#sky) {
      const recent = now - o.seen < RECENT_MS;
      const id = `${o.survey}|${recent}`;
      if (!groups.has(id)) groups.set(id, { survey: o.survey, recent, x: [], y: [], keys: [], text: [] });
      const g = groups.get(id);
      g.x.push(o.ra);
      g.y.push(o.dec);
      g.keys.push(key);
      g.text.push(`<b>${key}</b><br>RA ${o.ra.toFixed(5)}°  Dec ${o.dec.toFixed(5)}°<br>${o.n_alerts ?? '?'} alerts`);
    }
    const traces = [...groups.values()].sort((a, b) => Number(a.recent) - Number(b.recent) || a.survey.localeCompare(b.survey)).map((g) => ({
      type: 'scatter', mode: 'markers', cliponaxis: false, name: `${g.survey.toUpperCase()}${g.recent ? ', last minute' : ''}`,
      x: g.x, y: g.y, customdata: g.keys, ids: g.keys, text: g.text, hovertemplate: '%{text}<extra></extra>',
      marker: g.recent
        ? { size: 11, color: SURVEY_COLORS[g.survey] ?? '#444', line: { width: 2, color: '#ffd43b' } }
        : { size: 6, color: SURVEY_COLORS[g.survey] ?? '#444', opacity: 0.55 },
    }));
    const layout = baseLayout({
      uirevision: 'sky',
      margin: { l: 56, r: 16, t: 12, b: 44 },
      xaxis: { title: { text: 'RA (deg), increasing to the left' }, range: [360, 0], dtick: 30, gridcolor: '#e3e8ee', zeroline: false },
      yaxis: { title: { text: 'Dec (deg)' }, range: [-90, 90], dtick: 30, gridcolor: '#e3e8ee', zeroline: true, zerolinecolor: '#c5ccd3' },
      legend: { orientation: 'h', y: -0.22, x: 0 },
      hovermode: 'closest',
    });
    plotly().react(gd, traces, layout, PLOT_CONFIG);
    gd.dataset.objects = String(this.#sky.size);
    if (!this.#skyBound) {
      this.#skyBound = true;
      gd.on('plotly_click', (ev) => {
        const key = ev.points?.[0]?.customdata;
        if (typeof key === 'string') location.hash = objectHref(key);
      });
    }
  }
}
