// Stream statistics: `GET /v1/stats?step=…` — alerts, new objects, detections and dead letters
// per time step, survey and band — as a stacked bar plot and totals, read every REFRESH_MS while
// the view is shown. A node without the route (404) gets a note instead of the panel.

import { $, el, clockTime, fillTable, isShown, canPlot, plotly, PLOT_CONFIG, baseLayout, BAND_COLORS, OTHER_BAND_COLOR } from './util.js';

const REFRESH_MS = 5000;
const SURVEY_OPACITY = { ztf: 1, lsst: 0.6 };

export class StatsView {
  #client;
  #timer = null;
  #active = false;
  #last = null;

  constructor(client) {
    this.#client = client;
    $('stats-step').addEventListener('change', () => { if (this.#active) { clearTimeout(this.#timer); this.#refresh(); } });
  }

  shown() {
    this.#active = true;
    if (this.#timer === null) this.#refresh();
    else if (this.#last) this.#draw(this.#last);
  }

  hidden() {
    this.#active = false;
    clearTimeout(this.#timer);
    this.#timer = null;
  }

  async #refresh() {
    this.#timer = null;
    const note = $('stats-note');
    const panel = $('stats-panel');
    try {
      const stats = await this.#client.stats({ step: $('stats-step').value });
      this.#last = stats;
      panel.hidden = false;
      panel.dataset.state = 'ok';
      note.hidden = true;
      this.#draw(stats);
    } catch (e) {
      if (e.status === 404) {
        panel.hidden = true;
        panel.dataset.state = 'unavailable';
        note.textContent = 'This node does not serve stream statistics (GET /v1/stats answered 404); a newer version does.';
        note.hidden = false;
        return; // no point asking again until the view is shown again
      }
      note.textContent = `Could not read the statistics: ${e.code ?? 'error'}: ${e.message}`;
      note.hidden = false;
    }
    if (this.#active) this.#timer = setTimeout(() => this.#refresh(), REFRESH_MS);
  }

  #draw(stats) {
    const rows = stats.rows ?? [];
    $('stats-range').textContent = `${stats.step ?? ''} steps${stats.since ? ` from ${stats.since}` : ''}${stats.until ? ` to ${stats.until}` : ''} · read ${clockTime()}`;

    // Totals per survey and band.
    const totals = new Map();
    const sum = { alerts: 0, new_objects: 0, detections: 0, dead_letters: 0 };
    for (const r of rows) {
      const id = `${r.survey ?? '—'}|${r.band ?? '—'}`;
      if (!totals.has(id)) totals.set(id, { survey: r.survey ?? '—', band: r.band ?? '—', alerts: 0, new_objects: 0, detections: 0, dead_letters: 0 });
      const t = totals.get(id);
      for (const f of Object.keys(sum)) { t[f] += r[f] ?? 0; sum[f] += r[f] ?? 0; }
    }
    const list = [...totals.values()].sort((a, b) => a.survey.localeCompare(b.survey) || a.band.localeCompare(b.band));
    fillTable($('stats-totals').tBodies[0], list, (t) => el('tr', { dataset: { survey: t.survey, band: t.band } },
      el('td', {}, t.survey), el('td', {}, t.band), el('td', { class: 'num' }, String(t.alerts)),
      el('td', { class: 'num' }, String(t.new_objects)), el('td', { class: 'num' }, String(t.detections)),
      el('td', { class: 'num' }, String(t.dead_letters))), 'No alerts in this period.');
    $('stats-total-alerts').textContent = String(sum.alerts);
    $('stats-total-new').textContent = String(sum.new_objects);
    $('stats-total-detections').textContent = String(sum.detections);
    $('stats-total-dead').textContent = String(sum.dead_letters);

    const gd = $('stats-plot');
    if (!isShown(gd) || !canPlot(gd)) return;
    const bars = new Map();
    const byStart = new Map();
    for (const r of rows) {
      const id = `${r.survey ?? '—'} ${r.band ?? '—'}`;
      if (!bars.has(id)) bars.set(id, { survey: r.survey, band: r.band, x: [], y: [] });
      bars.get(id).x.push(r.start);
      bars.get(id).y.push(r.alerts ?? 0);
      const s = byStart.get(r.start) ?? { new_objects: 0, dead_letters: 0 };
      s.new_objects += r.new_objects ?? 0;
      s.dead_letters += r.dead_letters ?? 0;
      byStart.set(r.start, s);
    }
    const starts = [...byStart.keys()].sort();
    const traces = [...bars.entries()].sort(([a], [b]) => a.localeCompare(b)).map(([name, b]) => ({
      type: 'bar', name: `${name} alerts`, x: b.x, y: b.y,
      marker: { color: BAND_COLORS[b.band] ?? OTHER_BAND_COLOR, opacity: SURVEY_OPACITY[b.survey] ?? 0.8 },
      hovertemplate: `%{x}<br>${name}: %{y} alerts<extra></extra>`,
    }));
    traces.push(
      { type: 'scatter', mode: 'lines+markers', name: 'new objects', x: starts, y: starts.map((s) => byStart.get(s).new_objects), line: { color: '#1f5fa8', width: 2 } },
      { type: 'scatter', mode: 'lines+markers', name: 'dead letters', x: starts, y: starts.map((s) => byStart.get(s).dead_letters), line: { color: '#b02a37', width: 2, dash: 'dot' } },
    );
    const layout = baseLayout({
      uirevision: stats.step,
      barmode: 'stack',
      margin: { l: 56, r: 16, t: 12, b: 44 },
      xaxis: { type: 'date', title: { text: `time (UTC), per ${stats.step ?? 'step'}` }, gridcolor: '#eceff2' },
      yaxis: { title: { text: 'count' }, rangemode: 'tozero', gridcolor: '#eceff2' },
      legend: { orientation: 'h', y: -0.25, x: 0 },
    });
    plotly().react(gd, traces, layout, PLOT_CONFIG);
  }
}
