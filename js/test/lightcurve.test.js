// The dashboard's light-curve rules (js/dashboard/lightcurve.js), without a browser.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { placePoint, lightcurveTraces, magToFlux, fluxToMag, alertOfPoint, pointKey } from '../dashboard/lightcurve.js';

const det = (extra = {}) => ({ mjd: 59400.5, time_scale: 'utc', band: 'g', kind: 'detection', flux_njy: 36307.8, flux_err_njy: 334.4,
  mag: 20.0, mag_err: 0.01, limiting_mag: null, source_id: '100', is_negative: false, reliability: 0.9, alert_id: '100', ...extra });

test('magnitudes and nJy fluxes convert with the AB zero point 31.4', () => {
  assert.ok(Math.abs(magToFlux(31.4) - 1) < 1e-12);
  assert.ok(Math.abs(fluxToMag(magToFlux(18.25)) - 18.25) < 1e-12);
});

test('a negative detection is not a brightening: left out of magnitudes, negative in flux', () => {
  const neg = det({ is_negative: true, flux_njy: -5000, mag: 22.1 });
  assert.deepEqual(placePoint(neg, 'mag'), { skip: 'negative' });
  const flux = placePoint(neg, 'flux');
  assert.equal(flux.group, 'negative');
  assert.equal(flux.y, -5000);
  // ZTF's isdiffpos = 'f' with a positive flux magnitude: still drawn below zero.
  assert.equal(placePoint(det({ is_negative: true, flux_njy: 5000 }), 'flux').y, -5000);
  // A negative flux whose flag is missing is negative all the same.
  assert.deepEqual(placePoint(det({ is_negative: null, flux_njy: -1, mag: null }), 'mag'), { skip: 'negative' });
});

test('upper limits sit at their limiting magnitude (or its flux), with no error bar', () => {
  const ul = { mjd: 59401, band: 'r', kind: 'upper_limit', limiting_mag: 20.5, flux_njy: null, mag: null, alert_id: '7' };
  assert.deepEqual(placePoint(ul, 'mag'), { y: 20.5, err: null, group: 'upper_limit' });
  const f = placePoint(ul, 'flux');
  assert.equal(f.group, 'upper_limit');
  assert.ok(Math.abs(f.y - magToFlux(20.5)) < 1e-9);
  assert.deepEqual(placePoint({ ...ul, limiting_mag: null }, 'mag'), { skip: 'no_value' });
});

test('forced photometry with no magnitude is drawn from its flux, or only in flux mode when negative', () => {
  const forced = { mjd: 59402, band: 'i', kind: 'forced', flux_njy: 1000, flux_err_njy: 100, mag: null, mag_err: null, alert_id: '8' };
  const m = placePoint(forced, 'mag');
  assert.equal(m.group, 'forced');
  assert.ok(Math.abs(m.y - 23.9) < 1e-9);
  assert.ok(Math.abs(m.err - 0.1085736) < 1e-6);
  assert.deepEqual(placePoint({ ...forced, flux_njy: -300 }, 'mag'), { skip: 'negative' });
  assert.deepEqual(placePoint({ ...forced, flux_njy: -300 }, 'flux'), { y: -300, err: 100, group: 'negative' });
});

test('traces are per band and kind, in band order, and count what they draw and skip', () => {
  const points = [
    det({ band: 'r', source_id: '1', alert_id: '1' }),
    det({ band: 'g', source_id: '2', alert_id: '2' }),
    det({ band: 'g', source_id: '3', alert_id: '3', is_negative: true, flux_njy: -10 }),
    { mjd: 59401, band: 'g', kind: 'upper_limit', limiting_mag: 20.5, alert_id: '2' },
  ];
  const mag = lightcurveTraces(points, 'mag', { selectedAlert: '2' });
  assert.deepEqual(mag.traces.map((t) => t.name), ['g detection', 'g upper limit', 'r detection', 'selected alert']);
  assert.equal(mag.plotted, 3);
  assert.deepEqual(mag.skipped, { negative: 1, no_value: 0 });
  assert.deepEqual(mag.traces[0].customdata, [1]);
  assert.deepEqual(mag.traces[0].ids, [pointKey(points[1])]);
  assert.equal(mag.traces.at(-1).x.length, 2, 'the selected alert rings its detection and the limit it carried');
  const flux = lightcurveTraces(points, 'flux');
  assert.deepEqual(flux.traces.map((t) => t.name), ['g detection', 'g negative flux', 'g upper limit', 'r detection']);
  assert.equal(flux.plotted, 4);
});

test('a click selects the alert a detection triggered when it is known, else the alert that carried it', () => {
  const p = det({ source_id: '55', alert_id: '99' });
  assert.equal(alertOfPoint(p, new Set(['55', '99'])), '55');
  assert.equal(alertOfPoint(p, new Set(['99'])), '99');
});
