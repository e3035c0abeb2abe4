// Light-curve points → plot traces, in magnitude or in flux. Pure functions (no DOM), so node's
// test runner checks them (js/test/lightcurve.test.js).
//
// The rules a reader of the plot relies on:
// - Magnitudes are AB; flux is in nJy, signed (mag = 31.4 − 2.5·log10(flux)).
// - A negative-flux point (a detection with `is_negative`, or any point with a negative
//   `flux_njy`) is a fading below the template, not a brightening: it is drawn in flux mode only,
//   as a negative flux. In magnitude mode it is left out and counted in a note.
// - An upper limit is a downward triangle at its `limiting_mag` (in flux mode: at that
//   magnitude's flux), with no error bar.
// - Forced photometry is drawn as open squares, detections as filled circles.

import { BAND_COLORS, OTHER_BAND_COLOR, formatMjdDate } from './util.js';

export const NJY_ZERO_POINT = 31.4;
export const BAND_ORDER = ['u', 'g', 'r', 'i', 'z', 'y'];
const KINDS = ['detection', 'forced', 'upper_limit'];
const KIND_LABELS = { detection: 'detection', upper_limit: 'upper limit', forced: 'forced phot.', negative: 'negative flux' };
const LN10_OVER_2_5 = Math.LN10 / 2.5;

/** Flux in nJy of an AB magnitude. */
export function magToFlux(mag) {
  return 10 ** ((NJY_ZERO_POINT - mag) / 2.5);
}

/** AB magnitude of a positive flux in nJy. */
export function fluxToMag(flux) {
  return NJY_ZERO_POINT - 2.5 * Math.log10(flux);
}

/** Whether a point measured less flux than the template (its magnitude is of the absolute value). */
export function isNegative(p) {
  return p.is_negative === true || (Number.isFinite(p.flux_njy) && p.flux_njy < 0);
}

/** The identity the page deduplicates points by: source id, else (time, band, kind). */
export function pointKey(p) {
  return p.source_id != null ? `s:${p.kind}:${p.source_id}` : `t:${p.kind}:${p.mjd}:${p.band}`;
}

/**
 * Where a point goes in `mode` (`'mag'` or `'flux'`): `{y, err, group}` with `group` one of
 * `detection`, `forced`, `upper_limit`, `negative`; or `{skip}` saying why it is not drawn
 * (`negative` in magnitude mode, `no_value` when the point has nothing to draw).
 */
export function placePoint(p, mode) {
  if (!Number.isFinite(p.mjd)) return { skip: 'no_value' };
  const negative = p.kind !== 'upper_limit' && isNegative(p);
  if (mode === 'mag') {
    if (p.kind === 'upper_limit') {
      return Number.isFinite(p.limiting_mag) ? { y: p.limiting_mag, err: null, group: 'upper_limit' } : { skip: 'no_value' };
    }
    if (negative) return { skip: 'negative' };
    if (Number.isFinite(p.mag)) return { y: p.mag, err: finiteOrNull(p.mag_err), group: p.kind };
    if (Number.isFinite(p.flux_njy) && p.flux_njy > 0) {
      const err = Number.isFinite(p.flux_err_njy) ? p.flux_err_njy / p.flux_njy / LN10_OVER_2_5 : null;
      return { y: fluxToMag(p.flux_njy), err, group: p.kind };
    }
    return { skip: 'no_value' };
  }
  if (p.kind === 'upper_limit') {
    return Number.isFinite(p.limiting_mag) ? { y: magToFlux(p.limiting_mag), err: null, group: 'upper_limit' } : { skip: 'no_value' };
  }
  const group = negative ? 'negative' : p.kind;
  if (Number.isFinite(p.flux_njy)) {
    const y = negative ? -Math.abs(p.flux_njy) : p.flux_njy;
    return { y, err: finiteOrNull(p.flux_err_njy), group };
  }
  if (Number.isFinite(p.mag)) {
    const f = magToFlux(p.mag);
    const err = Number.isFinite(p.mag_err) ? f * LN10_OVER_2_5 * p.mag_err : null;
    return { y: negative ? -f : f, err, group };
  }
  return { skip: 'no_value' };
}

function finiteOrNull(v) {
  return Number.isFinite(v) ? v : null;
}

const MARKERS = {
  detection: (color) => ({ symbol: 'circle', size: 8, color, line: { width: 1, color: '#ffffff' } }),
  forced: (color) => ({ symbol: 'square-open', size: 7, color, line: { width: 1.5, color } }),
  upper_limit: (color) => ({ symbol: 'triangle-down', size: 10, color, opacity: 0.45, line: { width: 1, color } }),
  negative: (color) => ({ symbol: 'diamond-open', size: 9, color, line: { width: 2, color } }),
};

function hoverText(p, place, mode) {
  const lines = [`<b>${p.band} ${KIND_LABELS[place.group]}</b>`,
    `MJD ${p.mjd.toFixed(5)} ${(p.time_scale ?? '').toUpperCase()}`, `${formatMjdDate(p.mjd)} UTC`];
  const err = place.err != null ? ` ± ${place.err.toFixed(mode === 'mag' ? 3 : 1)}` : '';
  if (place.group === 'upper_limit') lines.push(`fainter than ${p.limiting_mag.toFixed(2)} mag (5σ)`);
  else if (mode === 'mag') lines.push(`${place.y.toFixed(3)}${err} mag`);
  else lines.push(`${place.y.toFixed(1)}${err} nJy`);
  if (place.group === 'negative' && Number.isFinite(p.mag)) lines.push(`(|flux| is ${p.mag.toFixed(2)} mag)`);
  if (p.source_id != null) lines.push(`source ${p.source_id}`);
  lines.push(`alert ${p.alert_id ?? '—'}`);
  return lines.join('<br>');
}

/**
 * Plot traces for `points` in `mode`: one per band and group, in band order, each point carrying
 * its index in `points` as `customdata` (clicks select its alert) and its `pointKey` as `ids`.
 * With `selectedAlert`, the points of that alert are ringed.
 * @returns {{traces: object[], plotted: number, skipped: {negative: number, no_value: number}}}
 */
export function lightcurveTraces(points, mode, { selectedAlert = null } = {}) {
  const groups = new Map();
  const skipped = { negative: 0, no_value: 0 };
  const ring = { x: [], y: [] };
  points.forEach((p, index) => {
    const place = placePoint(p, mode);
    if (place.skip) { skipped[place.skip] += 1; return; }
    const id = `${p.band}|${place.group}`;
    if (!groups.has(id)) groups.set(id, { band: p.band, group: place.group, x: [], y: [], err: [], customdata: [], ids: [], text: [] });
    const g = groups.get(id);
    g.x.push(p.mjd);
    g.y.push(place.y);
    g.err.push(place.err ?? 0);
    g.customdata.push(index);
    g.ids.push(pointKey(p));
    g.text.push(hoverText(p, place, mode));
    if (selectedAlert != null && (String(p.alert_id) === selectedAlert || String(p.source_id) === selectedAlert)) {
      ring.x.push(p.mjd);
      ring.y.push(place.y);
    }
  });
  const bandRank = (b) => (BAND_ORDER.includes(b) ? BAND_ORDER.indexOf(b) : BAND_ORDER.length);
  const groupRank = (g) => (g === 'negative' ? 1.5 : KINDS.indexOf(g));
  const ordered = [...groups.values()].sort((a, b) => bandRank(a.band) - bandRank(b.band) || groupRank(a.group) - groupRank(b.group));
  let plotted = 0;
  const traces = ordered.map((g) => {
    plotted += g.x.length;
    const color = BAND_COLORS[g.band] ?? OTHER_BAND_COLOR;
    const withErrors = g.group !== 'upper_limit';
    return {
      type: 'scatter',
      mode: 'markers',
      name: `${g.band} ${KIND_LABELS[g.group]}`,
      legendgroup: g.band,
      meta: { band: g.band, group: g.group },
      x: g.x,
      y: g.y,
      ids: g.ids,
      customdata: g.customdata,
      text: g.text,
      hovertemplate: '%{text}<extra></extra>',
      marker: MARKERS[g.group](color),
      error_y: withErrors
        ? { type: 'data', array: g.err, visible: true, thickness: 1.2, width: 0, color: g.group === 'detection' ? color : `${color}99` }
        : { visible: false },
    };
  });
  if (ring.x.length) {
    traces.push({
      type: 'scatter', mode: 'markers', name: 'selected alert', showlegend: false, hoverinfo: 'skip',
      meta: { group: 'selected' }, x: ring.x, y: ring.y,
      marker: { symbol: 'circle-open', size: 17, color: '#111111', line: { width: 2 } },
    });
  }
  return { traces, plotted, skipped };
}

/** The alert a click on point `p` selects: the alert it triggered when there is one, else its carrier. */
export function alertOfPoint(p, alertIds) {
  if (p.source_id != null && alertIds.has(String(p.source_id))) return String(p.source_id);
  return p.alert_id != null ? String(p.alert_id) : null;
}
