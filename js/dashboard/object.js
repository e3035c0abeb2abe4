// The object page: summary, light curve (magnitude or flux), the cutout triplet of the selected
// alert, the alert history and the points — growing live from an object subscription.
//
// On a `snapshot` the whole light curve is read over REST; updates arriving meanwhile are held
// and applied after it. An update's `new_points` are added when new by `pointKey` (source id,
// else time, band and kind). A snapshot with `object: null` (version 0) waits for the first alert.

import { $, el, fixed, text, clockTime, formatMjdDate, objectHref, frameBatcher, isShown, canPlot, plotly, PLOT_CONFIG, baseLayout, mjdToDate } from './util.js';
import { lightcurveTraces, pointKey, alertOfPoint, isNegative } from './lightcurve.js';

const MAX_LOG = 20;
const STAMP_KINDS = ['science', 'template', 'difference'];
/** How long after an update the alert and cutout lists are read again (several updates, one read). */
const REFRESH_DELAY_MS = 150;

/** Summary fields shown in their own row: object field → element id and formatter. */
const SUMMARY_FIELDS = {
  key: ['key', text],
  survey: ['survey', text],
  object_id: ['object-id', text],
  ra: ['ra', (v) => fixed(v, 6)],
  dec: ['dec', (v) => fixed(v, 6)],
  first_mjd: ['first-mjd', (v) => fixed(v, 5)],
  last_mjd: ['last-mjd', (v) => fixed(v, 5)],
  n_alerts: ['n-alerts', text],
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
    const mag = Number.isFinite(b?.mag) ? b.mag.toFixed(2) : '—';
    const err = Number.isFinite(b?.mag_err) ? ` ± ${b.mag_err.toFixed(2)}` : '';
    return `${band} ${mag}${err}`;
  });
  return parts.length ? parts.join('; ') : '—';
}

function formatSolarSystem(ss) {
  if (!ss) return 'none';
  if (typeof ss !== 'object') return String(ss);
  const distance = ss.distance_arcsec ?? ss.distance;
  return `${ss.name ?? '?'}${Number.isFinite(distance) ? ` at ${distance.toFixed(1)}″` : ''}`;
}

export class ObjectView {
  #client;
  #onStatus;
  #showMessage;
  /** 'mag' or 'flux', kept across objects. */
  #mode = 'mag';
  /** The object watched, or null. */
  #w = null;
  #plotBound = false;
  #plotStale = false;
  #render = frameBatcher(() => this.#renderAll());

  /**
   * @param {import('/js/lightkeeper.js').LightkeeperClient} client
   * @param {{onStatus: (state: string) => void, showMessage: (message: string) => void}} hooks
   */
  constructor(client, { onStatus, showMessage }) {
    this.#client = client;
    this.#onStatus = onStatus;
    this.#showMessage = showMessage;
    $('watch-form').addEventListener('submit', (e) => {
      e.preventDefault();
      const key = $('key-input').value.trim();
      if (!key) { this.#showMessage('Enter an object key, such as ztf:ZTF21abiuvdk.'); return; }
      location.hash = objectHref(key);
    });
    for (const mode of ['mag', 'flux']) $(`mode-${mode}`).addEventListener('click', () => this.setMode(mode));
    $('follow-latest').addEventListener('click', () => {
      if (!this.#w) return;
      this.#w.followLatest = true;
      this.#select(this.#w.object?.latest_alert_id ?? null);
    });
    this.#renderAll();
  }

  get key() { return this.#w?.key ?? null; }

  /** The view became visible: draw what changed while it was hidden, at its real size. */
  shown() {
    const gd = $('plot');
    if (this.#plotStale) this.#renderPlot();
    else if (gd.data) plotly().Plots.resize(gd);
  }

  setMode(mode) {
    this.#mode = mode;
    for (const m of ['mag', 'flux']) $(`mode-${m}`).setAttribute('aria-pressed', String(m === mode));
    this.#renderPlot();
  }

  /** Starts watching `key` (nothing changes when it is already watched). */
  watch(rawKey) {
    const key = rawKey.trim();
    if (!key || key === this.#w?.key) return;
    this.#showMessage('');
    if (this.#w?.sub) this.#client.unsubscribe(this.#w.sub);
    clearTimeout(this.#w?.refreshTimer);
    const w = {
      key, sub: null, object: undefined, version: null, points: [], seen: new Set(), loading: false, pending: [],
      generation: 0, alerts: [], cutouts: null, cutoutsError: null, selected: null, followLatest: true,
      refreshTimer: null, log: [],
    };
    this.#w = w;
    $('key-input').value = key;
    document.title = `${key} · Lightkeeper`;
    this.#render();
    w.sub = this.#client.subscribe([key], (event) => { if (w === this.#w) this.#onEvent(w, event); });
  }

  // ---- stream ---------------------------------------------------------------------------

  #onEvent(w, event) {
    this.#logEvent(w, event);
    switch (event.type) {
      case 'status': this.#onStatus(event.state); break;
      case 'snapshot': this.#onSnapshot(w, event); break;
      case 'update': this.#onUpdate(w, event); break;
      case 'error': this.#showMessage(`${event.error?.code ?? 'error'}: ${event.error?.message ?? 'unknown error'}`); break;
      default: break;
    }
    this.#render();
  }

  async #onSnapshot(w, event) {
    w.object = event.object;
    w.version = event.version;
    const generation = ++w.generation;
    if (!event.object) { // no alert yet: the first update carries every point
      Object.assign(w, { points: [], seen: new Set(), loading: false, pending: [], alerts: [], cutouts: null });
      return;
    }
    w.loading = true;
    this.#refreshLists(w);
    try {
      const lc = await this.#client.getLightcurve(w.key);
      if (generation !== w.generation) return;
      w.points = [];
      w.seen = new Set();
      this.#addPoints(w, lc.points);
    } catch (e) {
      if (generation === w.generation) this.#showMessage(`Could not load the light curve: ${e.code ?? 'error'}: ${e.message}`);
    }
    if (generation !== w.generation) return;
    w.loading = false;
    for (const points of w.pending) this.#addPoints(w, points);
    w.pending = [];
    if (w.followLatest) w.selected = w.object?.latest_alert_id ?? w.selected;
    this.#render();
  }

  #onUpdate(w, event) {
    w.object = event.object ?? w.object;
    w.version = event.version;
    const points = event.new_points ?? [];
    if (w.loading) w.pending.push(points);
    else this.#addPoints(w, points);
    if (w.followLatest) w.selected = w.object?.latest_alert_id ?? w.selected;
    clearTimeout(w.refreshTimer);
    w.refreshTimer = setTimeout(() => this.#refreshLists(w), REFRESH_DELAY_MS);
  }

  /** Adds the points not seen yet; keeps them sorted by time. */
  #addPoints(w, points) {
    let added = 0;
    for (const p of points ?? []) {
      const k = pointKey(p);
      if (w.seen.has(k)) continue;
      w.seen.add(k);
      w.points.push(p);
      added += 1;
    }
    if (added) w.points.sort((a, b) => a.mjd - b.mjd);
  }

  /** Reads the alert history and the stamps kept (both grow with each alert). */
  async #refreshLists(w) {
    const [alerts, cutouts] = await Promise.allSettled([
      this.#client.getAlerts(w.key),
      this.#client.getCutouts(w.key),
    ]);
    if (w !== this.#w) return;
    if (alerts.status === 'fulfilled') w.alerts = alerts.value.alerts ?? alerts.value ?? [];
    if (cutouts.status === 'fulfilled') {
      w.cutouts = cutouts.value;
      w.cutoutsError = null;
    } else {
      w.cutouts = null;
      w.cutoutsError = cutouts.reason;
    }
    this.#render();
  }

  #select(alertId) {
    const w = this.#w;
    if (!w) return;
    w.selected = alertId == null ? null : String(alertId);
    this.#render();
  }

  // ---- rendering ------------------------------------------------------------------------

  #renderAll() {
    this.#renderSummary();
    this.#renderPlot();
    this.#renderPoints();
    this.#renderAlerts();
    this.#renderCutouts();
    this.#renderLog();
  }

  #renderSummary() {
    const w = this.#w;
    const obj = w?.object;
    const note = $('summary-note');
    note.classList.toggle('waiting', obj === null);
    if (!w) note.textContent = 'Enter an object key, or pick one from the live feed or a search.';
    else if (obj === undefined) note.textContent = `Connecting to ${w.key}…`;
    else if (obj === null) note.textContent = 'Waiting for first alert.';
    else note.textContent = '';
    note.hidden = note.textContent === '';

    const values = { ...(obj ?? {}), key: obj?.key ?? w?.key, version: w?.version ?? obj?.version };
    if (obj === null) Object.assign(values, { n_alerts: 0, n_detections: 0, n_upper_limits: 0, n_forced: 0 });
    for (const [field, [id, format]] of Object.entries(SUMMARY_FIELDS)) {
      $(id).textContent = values[field] === undefined ? '—' : format(values[field]);
    }
    const near = $('find-nearby');
    near.hidden = !Number.isFinite(obj?.ra);
    if (!near.hidden) near.href = `#/find?ra=${obj.ra}&dec=${obj.dec}&radius=60`;

    // The latest alert's survey attributes, and any field the page has no row for.
    const extra = $('extra');
    extra.replaceChildren();
    const rest = Object.entries(obj ?? {}).filter(([f]) => !(f in SUMMARY_FIELDS) && f !== 'attributes');
    const attributes = Object.entries(obj?.attributes ?? {}).filter(([, v]) => v != null);
    for (const [field, value] of [...attributes, ...rest]) {
      const shown = value !== null && typeof value === 'object' ? JSON.stringify(value)
        : typeof value === 'number' && !Number.isInteger(value) ? String(Number(value.toPrecision(6))) : text(value);
      extra.append(el('dt', {}, field.replaceAll('_', ' ')), el('dd', {}, shown));
    }
    extra.hidden = extra.childElementCount === 0;
  }

  #renderPlot() {
    const gd = $('plot');
    const w = this.#w;
    const mode = this.#mode;
    const { traces, plotted, skipped } = lightcurveTraces(w?.points ?? [], mode, { selectedAlert: w?.selected });
    gd.dataset.mode = mode;
    gd.dataset.plotted = String(plotted);

    const note = $('plot-note');
    note.replaceChildren();
    if (mode === 'mag' && skipped.negative > 0) {
      const n = skipped.negative;
      note.append(
        `${n} negative-flux point${n === 1 ? '' : 's'} (fainter than the template) ${n === 1 ? 'is' : 'are'} not drawn as magnitudes. `,
        el('button', { type: 'button', class: 'linkish', onclick: () => this.setMode('flux') }, 'Show in flux'),
      );
    }
    note.hidden = note.childElementCount === 0 && note.textContent === '';
    note.dataset.negative = String(skipped.negative);

    let empty = '';
    if (!w) empty = 'Watch an object to see its light curve.';
    else if (w.object === null) empty = 'Waiting for first alert.';
    else if (plotted === 0 && (w.loading || w.object === undefined)) empty = 'Loading light curve…';
    else if (plotted === 0) empty = mode === 'mag' && skipped.negative > 0 ? 'Nothing to plot in magnitudes.' : 'Nothing to plot.';
    $('plot-empty').textContent = empty;
    $('plot-empty').hidden = !empty;

    if (!isShown(gd)) { this.#plotStale = true; return; }
    this.#plotStale = false;
    if (!canPlot(gd)) return;
    const Plotly = plotly();
    if (plotted === 0) { // no empty axes: just the message
      if (gd.data) Plotly.purge(gd);
      this.#plotBound = false;
      return;
    }
    const xs = traces.flatMap((t) => t.x);
    const scales = [...new Set((w?.points ?? []).map((p) => p.time_scale).filter(Boolean))].map((s) => s.toUpperCase());
    // An invisible trace on the top axis, which shows calendar dates over the same span.
    const dateAxis = {
      type: 'scatter', mode: 'markers', xaxis: 'x2', hoverinfo: 'skip', showlegend: false, meta: { group: 'date_axis' },
      x: xs.length ? [mjdToDate(Math.min(...xs) - 0.5), mjdToDate(Math.max(...xs) + 0.5)] : [], y: xs.length ? [traces[0].y[0], traces[0].y[0]] : [],
      marker: { opacity: 0 },
    };
    const layout = baseLayout({
      uirevision: `${w?.key}|${mode}`,
      margin: { l: 64, r: 16, t: 44, b: 48 },
      showlegend: true,
      legend: { orientation: 'h', y: -0.18, x: 0 },
      xaxis: { title: { text: `MJD${scales.length ? ` (${scales.join(', ')})` : ''}` }, exponentformat: 'none', separatethousands: false, zeroline: false, gridcolor: '#eceff2' },
      xaxis2: { overlaying: 'x', side: 'top', type: 'date', fixedrange: true, showgrid: false, tickmode: 'auto', nticks: 7, tickfont: { color: '#5f6b76' } },
      yaxis: mode === 'mag'
        ? { title: { text: 'magnitude (AB)' }, autorange: 'reversed', gridcolor: '#eceff2', zeroline: false }
        : { title: { text: 'flux (nJy)' }, autorange: true, gridcolor: '#eceff2', zeroline: true, zerolinecolor: '#8a949e' },
      hovermode: 'closest',
    });
    Plotly.react(gd, [...traces, dateAxis], layout, PLOT_CONFIG).then(() => this.#syncDateAxis(gd));
    if (!this.#plotBound) {
      this.#plotBound = true;
      gd.on('plotly_click', (ev) => this.#onPlotClick(ev));
      gd.on('plotly_relayout', (ev) => {
        if (Object.keys(ev).some((k) => k.startsWith('xaxis.') || k === 'xaxis')) this.#syncDateAxis(gd);
      });
    }
  }

  /** Keeps the top (calendar) axis spanning exactly the bottom (MJD) axis. */
  #syncDateAxis(gd) {
    const range = gd.layout?.xaxis?.range;
    if (!range || !Number.isFinite(Number(range[0]))) return;
    const want = range.map((mjd) => mjdToDate(Number(mjd)).toISOString().replace('T', ' ').replace('Z', ''));
    const have = gd.layout.xaxis2?.range;
    if (have && have[0] === want[0] && have[1] === want[1]) return;
    plotly().relayout(gd, { 'xaxis2.range': want, 'xaxis2.autorange': false });
  }

  #onPlotClick(ev) {
    const pt = ev.points?.[0];
    const w = this.#w;
    if (!pt || !w || !Number.isInteger(pt.customdata)) return;
    const p = w.points[pt.customdata];
    if (!p) return;
    w.followLatest = false;
    this.#select(alertOfPoint(p, new Set(w.alerts.map((a) => String(a.alert_id)))));
  }

  #renderPoints() {
    const w = this.#w;
    const points = w?.points ?? [];
    $('points-count').textContent = String(points.length);
    const rows = points.map((p) => {
      const neg = p.kind !== 'upper_limit' && isNegative(p);
      const mag = Number.isFinite(p.mag) ? `${p.mag.toFixed(3)}${Number.isFinite(p.mag_err) ? ` ± ${p.mag_err.toFixed(3)}` : ''}` : '—';
      const flux = Number.isFinite(p.flux_njy) ? `${p.flux_njy.toFixed(1)}${Number.isFinite(p.flux_err_njy) ? ` ± ${p.flux_err_njy.toFixed(1)}` : ''}` : '—';
      return el('tr', {
        class: `pt pt-${p.kind}${neg ? ' negative' : ''}${w.selected != null && String(p.alert_id) === w.selected ? ' selected' : ''}`,
        dataset: { band: p.band ?? '', mjd: String(p.mjd), sourceId: p.source_id ?? '', alertId: p.alert_id ?? '' },
        onclick: () => { w.followLatest = false; this.#select(alertOfPoint(p, new Set(w.alerts.map((a) => String(a.alert_id))))); },
      },
      el('td', { class: 'num' }, fixed(p.mjd, 5)), el('td', {}, formatMjdDate(p.mjd)),
      el('td', {}, el('span', { class: `band band-${p.band}` }, p.band)), el('td', {}, p.kind.replace('_', ' ') + (neg ? ' (negative)' : '')),
      el('td', { class: 'num' }, mag), el('td', { class: 'num' }, fixed(p.limiting_mag, 2)), el('td', { class: 'num' }, flux),
      el('td', { class: 'num' }, text(p.source_id)), el('td', { class: 'num' }, text(p.alert_id)));
    });
    $('points-table').tBodies[0].replaceChildren(...rows);
  }

  #renderAlerts() {
    const w = this.#w;
    const tbody = $('alert-history').tBodies[0];
    const kept = new Map((w?.cutouts?.alerts ?? []).map((a) => [String(a.alert_id), a.kinds ?? []]));
    const alerts = [...(w?.alerts ?? [])].sort((a, b) => b.mjd - a.mjd || String(b.alert_id).localeCompare(String(a.alert_id)));
    $('alerts-count').textContent = String(alerts.length);
    if (alerts.length === 0) {
      tbody.replaceChildren(el('tr', { class: 'empty' }, el('td', { colspan: 6 }, w ? 'No alerts yet.' : '—')));
      return;
    }
    tbody.replaceChildren(...alerts.map((a) => {
      const id = String(a.alert_id);
      const src = a.source ? `${a.source.topic} [${a.source.partition}] @ ${a.source.offset}` : '—';
      const stamps = w.cutouts ? (kept.get(id)?.join(', ') || 'none') : '?';
      return el('tr', { class: id === w.selected ? 'selected' : null, dataset: { alertId: id }, onclick: () => { w.followLatest = false; this.#select(id); } },
        el('td', { class: 'num' }, id), el('td', { class: 'num' }, fixed(a.mjd, 5)), el('td', {}, formatMjdDate(a.mjd)),
        el('td', {}, text(a.schema_version)), el('td', { class: 'src' }, src), el('td', {}, stamps),
        el('td', {}, el('a', { href: this.#client.packetUrl(w.key, id), download: `${id}.avro`, onclick: (e) => e.stopPropagation() }, 'packet')));
    }));
  }

  #renderCutouts() {
    const w = this.#w;
    const note = $('cutouts-note');
    const id = w?.selected ?? null;
    const alert = (w?.alerts ?? []).find((a) => String(a.alert_id) === id);
    $('cutout-alert').textContent = id ? `alert ${id}${alert ? ` · MJD ${alert.mjd.toFixed(5)} · ${formatMjdDate(alert.mjd)} UTC` : ''}` : '';
    $('follow-latest').hidden = !w || w.followLatest;
    let message = '';
    let entry = null;
    if (!w || !id) message = w?.object ? 'Click a point or an alert to see its stamps.' : 'No alert selected.';
    else if (w.cutoutsError) {
      message = w.cutoutsError.status === 404 && w.cutoutsError.code !== 'object_not_found'
        ? 'This node does not serve cutouts (GET /v1/objects/{key}/cutouts answered 404).'
        : `Could not list the stamps: ${w.cutoutsError.code}: ${w.cutoutsError.message}`;
    } else if (!w.cutouts) message = 'Loading…';
    else {
      entry = (w.cutouts.alerts ?? []).find((a) => String(a.alert_id) === id) ?? null;
      if (!entry) message = `No stamps are kept for alert ${id} (a point from an alert's history has the stamps of the alert that carried it, if any).`;
    }
    note.textContent = message;
    note.hidden = !message;
    $('cutouts').dataset.alertId = entry ? id : '';
    $('cutouts').hidden = !entry;
    for (const kind of STAMP_KINDS) this.#showStamp(kind, entry && (entry.kinds ?? []).includes(kind) ? id : null, entry != null);
  }

  /** Shows one stamp of alert `id` (or hides it), saying why when it cannot be loaded. */
  #showStamp(kind, id, listed) {
    const img = $(`cutout-${kind}`);
    const msg = img.parentElement.querySelector('.stamp-msg');
    const w = this.#w;
    if (!id) {
      img.removeAttribute('src');
      delete img.dataset.url;
      img.dataset.state = 'none';
      img.hidden = true;
      msg.textContent = listed ? 'not kept' : '';
      return;
    }
    const url = this.#client.cutoutUrl(w.key, id, kind);
    if (img.dataset.url === url) return;
    img.dataset.url = url;
    img.dataset.state = 'loading';
    img.hidden = false;
    msg.textContent = 'loading…';
    img.onload = () => { if (img.dataset.url === url) { img.dataset.state = 'ok'; msg.textContent = ''; } };
    img.onerror = async () => {
      if (img.dataset.url !== url) return;
      img.dataset.state = 'error';
      img.hidden = true;
      let status = 0;
      try { status = (await fetch(url, { method: 'HEAD' })).status; } catch { /* unreachable */ }
      if (img.dataset.url !== url) return;
      msg.textContent = status === 410 ? 'expired: no longer kept (410)'
        : status === 404 ? 'not found (404)' : `could not be loaded${status ? ` (${status})` : ''}`;
    };
    img.src = url;
  }

  #logEvent(w, event) {
    const parts = [];
    if (event.type === 'status') parts.push(event.state);
    if (event.version != null) parts.push(`v${event.version}`);
    if (event.type === 'update') {
      const n = event.new_points?.length ?? 0;
      parts.push(`+${n} point${n === 1 ? '' : 's'}`);
    }
    if (event.type === 'snapshot' && event.object === null) parts.push('(no alert yet)');
    if (event.type === 'error') parts.push(`${event.error?.code}: ${event.error?.message}`);
    w.log.unshift({ time: clockTime(), type: event.type, version: event.version, detail: parts.join('  ') });
    w.log.length = Math.min(w.log.length, MAX_LOG);
  }

  #renderLog() {
    const log = this.#w?.log ?? [];
    $('event-log').replaceChildren(...log.map((e) => el('li', { dataset: { type: e.type, version: e.version ?? null } },
      el('time', {}, e.time), el('span', {}, e.type), el('span', {}, e.detail))));
  }
}
