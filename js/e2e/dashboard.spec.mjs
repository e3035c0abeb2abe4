#!/usr/bin/env node
// The dashboard in a real browser: Playwright drives Debian's Chromium against running nodes.
//
//   LK_URL=http://127.0.0.1:8080 LK_DATA=../shared/data LK_SHOTS=/tmp/shots node js/e2e/dashboard.spec.mjs
//   LK_URLS=http://127.0.0.1:9001,http://127.0.0.1:9002 LK_ADMIN_TOKEN=… node js/e2e/dashboard.spec.mjs
//
// Environment:
//   LK_URL          a fresh node (nothing ingested yet): the object page, live feed, sky map,
//                   find forms, cutouts, stats and a one-node cluster view are checked there; this
//                   script ingests the shared data itself (POST /v1/alerts).
//   LK_URLS         comma-separated nodes of a cluster with a ready standby: the cluster view must
//                   show a promotion (POST /v1/admin/partitions/{p}/promote on the standby) as it happens.
//   LK_ADMIN_TOKEN  the cluster's admin token (with LK_URLS).
//   LK_DATA         the shared alert data (default ../shared/data beside the repository).
//   LK_SHOTS        where screenshots go, one per view (default: none are written).
//   LK_LIVE_DEADLINE_MS  how soon an ingested alert must be on the page (default 1000).
//   CHROMIUM        the browser (default /usr/bin/chromium).
// Every wait is for a condition on the page or the API, never a fixed sleep. Exits non-zero when
// a check fails; the last line is "N passed, N failed, N skipped".

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const URL1 = process.env.LK_URL?.replace(/\/+$/, '') || null;
const URLS = (process.env.LK_URLS ?? '').split(',').map((u) => u.trim().replace(/\/+$/, '')).filter(Boolean);
const TOKEN = process.env.LK_ADMIN_TOKEN ?? '';
const DATA = process.env.LK_DATA ?? path.resolve(HERE, '../../../shared/data');
const SHOTS = process.env.LK_SHOTS || null;
const LIVE_DEADLINE_MS = Number(process.env.LK_LIVE_DEADLINE_MS ?? 1000);
const CHROMIUM = process.env.CHROMIUM ?? '/usr/bin/chromium';
const CHROMIUM_ARGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
  '--disable-component-update', '--disable-sync'];
const WAIT_MS = 20_000;
const ZTF_KEY = 'ztf:ZTF21abiuvdk';

// ---- a tiny runner ---------------------------------------------------------------------------

class Skip extends Error {}
const results = { passed: 0, failed: 0, skipped: 0 };

async function check(name, fn) {
  const started = Date.now();
  try {
    const note = await fn();
    results.passed += 1;
    console.log(`ok   ${name} (${Date.now() - started} ms)${note ? ` — ${note}` : ''}`);
  } catch (e) {
    if (e instanceof Skip) {
      results.skipped += 1;
      console.log(`skip ${name}: ${e.message}`);
      return;
    }
    results.failed += 1;
    console.log(`FAIL ${name}: ${e.stack ?? e}`);
  }
}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

function sameList(got, want, what) {
  assert(JSON.stringify(got) === JSON.stringify(want), `${what}: got ${JSON.stringify(got)}, expected ${JSON.stringify(want)}`);
}

// ---- the API --------------------------------------------------------------------------------

async function api(base, pathAndQuery, init = {}) {
  const res = await fetch(base + pathAndQuery, init);
  const body = await res.text();
  let json = null;
  try { json = body ? JSON.parse(body) : null; } catch { /* not JSON */ }
  return { status: res.status, ok: res.ok, json, body };
}

async function get(base, pathAndQuery) {
  const r = await api(base, pathAndQuery);
  assert(r.ok, `GET ${pathAndQuery} on ${base}: ${r.status} ${r.body.slice(0, 300)}`);
  return r.json;
}

async function ingest(base, file) {
  const r = await api(base, '/v1/alerts', {
    method: 'POST', headers: { 'content-type': 'application/octet-stream' }, body: fs.readFileSync(file),
  });
  assert(r.status === 202, `POST /v1/alerts ${path.basename(file)}: ${r.status} ${r.body.slice(0, 300)}`);
  return r.json; // {key, alert_id, topic, partition, offset}
}

/** Polls `probe` (an API read) until it returns a truthy value. */
async function until(what, probe, timeoutMs = WAIT_MS) {
  const deadline = Date.now() + timeoutMs;
  let last;
  for (;;) {
    try { last = await probe(); } catch (e) { last = e; }
    if (last && !(last instanceof Error)) return last;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${last instanceof Error ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

function avroFiles(dir) {
  return fs.readdirSync(dir).filter((f) => f.endsWith('.avro')).sort().map((f) => path.join(dir, f));
}

// ---- the page -------------------------------------------------------------------------------

/** Waits for `fn(arg)` to be truthy in the page; the error names `what`. */
async function waitPage(page, what, fn, arg, timeout = WAIT_MS) {
  try {
    return await page.waitForFunction(fn, arg, { timeout, polling: 'raf' });
  } catch (e) {
    throw new Error(`page: timed out after ${timeout} ms waiting for ${what}`);
  }
}

async function shot(page, name) {
  if (!SHOTS) return;
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.evaluate(() => { document.activeElement?.blur?.(); window.scrollTo(0, 0); });
  await page.mouse.move(0, 0); // no hover label left over
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

async function openPage(browser, url) {
  const context = await browser.newContext({ viewport: { width: 1440, height: 960 }, deviceScaleFactor: 1 });
  const page = await context.newPage();
  page.errors = [];
  page.on('pageerror', (e) => page.errors.push(`uncaught: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error' && !/Failed to load resource/.test(m.text())) page.errors.push(`console: ${m.text()}`); });
  await page.goto(url);
  return page;
}

/** What the light-curve plot holds: per trace group, its points' ids and y values. */
function plotState() {
  const gd = document.getElementById('plot');
  const traces = (gd.data ?? []).filter((t) => t.meta?.group && !['date_axis', 'selected'].includes(t.meta.group));
  return {
    mode: gd.dataset.mode,
    plotted: Number(gd.dataset.plotted),
    drawn: gd.querySelectorAll('.scatterlayer .trace .points path.point').length,
    traces: traces.map((t) => ({ group: t.meta.group, band: t.meta.band, ids: t.ids, y: t.y, symbol: t.marker?.symbol })),
  };
}

// ---- single node ----------------------------------------------------------------------------

async function singleNode(browser) {
  const base = URL1;
  const paths = Object.keys((await get(base, '/openapi.json')).paths ?? {});
  const hasCutouts = paths.some((p) => p.endsWith('/cutouts'));
  const hasStats = paths.includes('/v1/stats');
  console.log(`# ${base}: ${paths.length} routes; cutout list ${hasCutouts ? 'served' : 'absent'}, stats ${hasStats ? 'served' : 'absent'}`);
  const existing = await api(base, `/v1/objects/${encodeURIComponent(ZTF_KEY)}`);
  assert(existing.status === 404, `LK_URL must be a fresh node: ${ZTF_KEY} is already there (${existing.status})`);

  // Everything but the last alert of ZTF21abiuvdk, the Rubin alerts, and a night of ZTF alerts
  // (all but one, kept for the live view).
  const lightcurve = avroFiles(path.join(DATA, 'ztf/alerts/pitt-google-broker/lightcurve_ZTF21abiuvdk'));
  const night = avroFiles(path.join(DATA, 'ztf/alerts/pitt-google-broker/alerts-for-testing_20210901'));
  const rubin = avroFiles(path.join(DATA, 'lsst/alerts/boom'));
  assert(lightcurve.length === 22 && night.length > 2 && rubin.length > 0, `shared data not found under ${DATA}`);
  const heldBack = lightcurve.at(-1);
  const heldBackLive = night.slice(-6);
  const accepted = [];
  for (const f of [...lightcurve.slice(0, -1), ...rubin, ...night.slice(0, -6)]) accepted.push(await ingest(base, f));
  const versions = new Map();
  for (const a of accepted) versions.set(a.key, (versions.get(a.key) ?? 0) + 1);
  await until(`${accepted.length} alerts applied`, async () => {
    for (const [key, n] of versions) {
      const r = await api(base, `/v1/objects/${encodeURIComponent(key)}`);
      if (!r.ok || r.json.n_alerts < n) return false;
    }
    return true;
  }, 60_000);
  console.log(`# ingested ${accepted.length} alerts of ${versions.size} objects`);

  const page = await openPage(browser, `${base}/?key=${ZTF_KEY}`);

  await check('the object page loads the light curve and connects (/?key=…)', async () => {
    await waitPage(page, 'version 21, the socket open, the live feed following, points drawn', () =>
      document.getElementById('version').textContent === '21'
      && document.getElementById('status').dataset.state === 'open'
      && document.getElementById('live-state').dataset.state === 'following'
      && Number(document.getElementById('plot').dataset.plotted) > 0
      && document.querySelectorAll('#plot .scatterlayer path.point').length > 0);
    const hash = await page.evaluate(() => location.hash);
    assert(hash === `#/object/${ZTF_KEY}`, `the route became ${hash}`);
  });

  await check('the magnitude plot matches the REST light curve (detections, upper limits at limiting_mag)', async () => {
    const lc = await get(base, `/v1/objects/${encodeURIComponent(ZTF_KEY)}/lightcurve`);
    const s = await page.evaluate(plotState);
    const inGroup = (g) => s.traces.filter((t) => t.group === g);
    const positive = lc.points.filter((p) => p.kind === 'detection' && !(p.is_negative || p.flux_njy < 0));
    const limits = lc.points.filter((p) => p.kind === 'upper_limit' && Number.isFinite(p.limiting_mag));
    const count = (g) => inGroup(g).reduce((n, t) => n + t.ids.length, 0);
    assert(count('detection') === positive.length, `detections drawn ${count('detection')}, REST has ${positive.length}`);
    assert(count('upper_limit') === limits.length, `upper limits drawn ${count('upper_limit')}, REST has ${limits.length}`);
    const ys = inGroup('upper_limit').flatMap((t) => t.y).sort();
    sameList(ys, limits.map((p) => p.limiting_mag).sort(), 'upper limits at their limiting magnitudes');
    assert(inGroup('upper_limit').every((t) => t.symbol === 'triangle-down'), 'upper limits are downward triangles');
    assert(s.drawn >= s.plotted, `only ${s.drawn} markers rendered for ${s.plotted} points`);
    const bands = new Set(s.traces.map((t) => t.band));
    assert(bands.has('g') && bands.has('r'), `bands drawn: ${[...bands]}`);
    const rows = await page.locator('#points-table tbody tr.pt').count();
    assert(rows === lc.points.length, `${rows} point rows, REST has ${lc.points.length}`);
    return `${s.plotted} points plotted`;
  });

  await check(`an alert ingested after page load is on the plot and in the live feed within ${LIVE_DEADLINE_MS} ms`, async () => {
    const t0 = Date.now();
    const a = await ingest(base, heldBack);
    const id = `s:detection:${a.alert_id}`;
    await waitPage(page, `point ${a.alert_id} plotted, version 22, and a feed row for it`, ({ id, key }) => {
      const gd = document.getElementById('plot');
      return document.getElementById('version').textContent === '22'
        && (gd.data ?? []).some((t) => t.ids?.includes(id))
        && document.querySelector(`#points-table tr.pt[data-source-id="${id.split(':').pop()}"]`) !== null
        && document.querySelector(`#live-feed tr[data-key="${key}"][data-version="22"]`) !== null;
    }, { id, key: ZTF_KEY }, Math.max(1, LIVE_DEADLINE_MS - (Date.now() - t0)));
    const took = Date.now() - t0;
    const s = await page.evaluate(plotState);
    assert(s.drawn >= s.plotted, `only ${s.drawn} markers rendered for ${s.plotted} points`);
    return `${took} ms from POST to the page`;
  });

  await check('clicking a plotted point selects its alert (alert history and cutout title follow)', async () => {
    const before = await page.evaluate(() => document.querySelector('#alert-history tr.selected')?.dataset.alertId ?? null);
    // The earliest detection: a different alert from the latest one, selected by default.
    const box = await page.evaluate(() => {
      const gd = document.getElementById('plot');
      const i = (gd.data ?? []).findIndex((t) => t.meta?.group === 'detection');
      const trace = gd.querySelectorAll('.scatterlayer .trace')[i];
      const pts = [...trace.querySelectorAll('path.point')];
      const r = pts.map((p) => p.getBoundingClientRect()).sort((a, b) => a.x - b.x)[0];
      return { x: r.x + r.width / 2, y: r.y + r.height / 2 };
    });
    await page.mouse.move(box.x, box.y);
    await page.mouse.click(box.x, box.y);
    await waitPage(page, 'another alert selected', (before) => {
      const sel = document.querySelector('#alert-history tr.selected')?.dataset.alertId ?? null;
      return sel !== null && sel !== before && document.getElementById('cutout-alert').textContent.includes(sel);
    }, before);
    return `selected ${await page.evaluate(() => document.querySelector('#alert-history tr.selected').dataset.alertId)} (was ${before})`;
  });

  await check('the cutout triplet of the selected alert renders', async () => {
    const list = await api(base, `/v1/objects/${encodeURIComponent(ZTF_KEY)}/cutouts`);
    if (list.status === 404 && list.json?.error?.code !== 'object_not_found') {
      const note = await page.locator('#cutouts-note').textContent();
      assert(/does not serve cutouts/.test(note), `the page should say the node has no cutouts: ${note}`);
      throw new Skip(`GET /v1/objects/{key}/cutouts answered 404 (${list.json?.error?.code ?? list.body.slice(0, 80)}): this binary has no cutout route; the page says so`);
    }
    assert(list.ok, `GET cutouts: ${list.status} ${list.body.slice(0, 200)}`);
    const kept = list.json.alerts.find((x) => x.kinds?.length === 3);
    assert(kept, `no alert with three stamps in ${JSON.stringify(list.json).slice(0, 300)}`);
    await page.locator(`#alert-history tr[data-alert-id="${kept.alert_id}"]`).click();
    await waitPage(page, `three stamps of alert ${kept.alert_id} loaded`, (id) => document.getElementById('cutouts').dataset.alertId === id
      && ['science', 'template', 'difference'].every((k) => {
        const img = document.getElementById(`cutout-${k}`);
        return img.complete && img.naturalWidth > 0 && img.dataset.state === 'ok';
      }), String(kept.alert_id));
    const sizes = await page.evaluate(() => ['science', 'template', 'difference'].map((k) => document.getElementById(`cutout-${k}`).naturalWidth));
    return `alert ${kept.alert_id}: widths ${sizes.join(', ')}`;
  });
  await shot(page, 'object');

  await check('a negative flux is never a brightening: left out of magnitudes with a note, negative in flux mode', async () => {
    let found = null;
    for (const key of new Set(accepted.filter((a) => a.key.startsWith('lsst:')).map((a) => a.key))) {
      const lc = await get(base, `/v1/objects/${encodeURIComponent(key)}/lightcurve`);
      const neg = lc.points.find((p) => p.kind !== 'upper_limit' && (p.is_negative === true || p.flux_njy < 0));
      if (neg) { found = { key, neg }; break; }
    }
    if (!found) throw new Skip('no Rubin point with a negative flux in the data ingested');
    await page.evaluate((key) => { location.hash = `#/object/${key}`; }, found.key);
    await page.locator('#mode-mag').click();
    await waitPage(page, `${found.key} drawn in magnitudes with a negative-flux note`, (key) =>
      document.getElementById('key').textContent === key && document.getElementById('plot').dataset.mode === 'mag'
      && Number(document.getElementById('plot-note').dataset.negative) > 0 && !document.getElementById('plot-note').hidden
      && document.querySelectorAll('#points-table tr.pt.negative').length > 0, found.key);
    const mag = await page.evaluate(plotState);
    assert(!mag.traces.some((t) => t.group === 'negative'), 'no negative trace in magnitude mode');
    await page.locator('#mode-flux').click();
    await waitPage(page, 'the negative point drawn below zero in flux mode', () => {
      const gd = document.getElementById('plot');
      return gd.dataset.mode === 'flux' && (gd.data ?? []).some((t) => t.meta?.group === 'negative' && t.y.every((y) => y < 0));
    });
    const flux = await page.evaluate(plotState);
    const negY = flux.traces.filter((t) => t.group === 'negative').flatMap((t) => t.y);
    await shot(page, 'object-flux');
    await page.locator('#mode-mag').click();
    return `${found.key}: ${negY.map((y) => y.toFixed(0)).join(', ')} nJy`;
  });

  await check(`the live view: a new alert lands in the feed within ${LIVE_DEADLINE_MS} ms, and on the sky map`, async () => {
    await page.evaluate(() => { location.hash = '#/live'; });
    const objects = (await get(base, '/v1/objects?limit=1000')).objects.filter((o) => Number.isFinite(o.ra));
    await waitPage(page, `${objects.length} objects on the sky map`, (n) =>
      Number(document.getElementById('sky-map').dataset.objects) >= n
      && document.querySelectorAll('#sky-map .scatterlayer path.point').length >= n, objects.length);
    const inFeedAndOnMap = (keys) => {
      const gd = document.getElementById('sky-map');
      return keys.every((key) => document.querySelector(`#live-feed tr[data-key="${key}"]`) !== null
        && (gd.data ?? []).some((t) => t.name.includes('last minute') && t.ids.includes(key)));
    };
    const t0 = Date.now();
    const first = await ingest(base, heldBackLive[0]);
    await waitPage(page, `${first.key} in the feed`, (key) => document.querySelector(`#live-feed tr[data-key="${key}"]`) !== null,
      first.key, Math.max(1, LIVE_DEADLINE_MS - (Date.now() - t0)));
    const took = Date.now() - t0;
    await waitPage(page, `${first.key} ringed on the sky map`, inFeedAndOnMap, [first.key]); // redrawn at most every 500 ms
    // A burst: each one gets its row, newest first.
    const burst = [];
    for (const f of heldBackLive.slice(1)) burst.push((await ingest(base, f)).key);
    await waitPage(page, `${burst.length} more alerts in the feed and on the map`, inFeedAndOnMap, burst);
    const order = await page.$$eval('#live-feed tbody tr[data-key]', (rows) => rows.map((r) => r.dataset.key));
    // Newest first: the burst's rows are above every older one. (Among themselves they follow
    // the order their partitions materialized them in, which the workers do in parallel.)
    const fresh = new Set(burst);
    const top = new Set(order.slice(0, fresh.size));
    assert([...fresh].every((k) => top.has(k)), `the burst's ${fresh.size} rows first: ${order.slice(0, fresh.size + 2)}`);
    const ra = await page.evaluate(() => document.getElementById('sky-map').layout.xaxis.range);
    assert(ra[0] > ra[1], `RA must increase to the left: x range ${ra}`);
    return `${took} ms from POST to the page; ${order.length} rows`;
  });
  await shot(page, 'live');

  await check('the cone search form returns what GET /v1/cone does, rows linking to objects', async () => {
    const centre = await get(base, `/v1/objects/${encodeURIComponent(ZTF_KEY)}`);
    const cone = async (where) => (await get(base, `/v1/cone?${new URLSearchParams({
      ra: centre.ra, dec: centre.dec, radius_arcsec: 3600, ...(where ? { where } : {}) })}`)).objects.map((o) => o.key);
    const runForm = async (where) => {
      await page.fill('#cone-ra', String(centre.ra));
      await page.fill('#cone-dec', String(centre.dec));
      await page.fill('#cone-radius', '3600');
      await page.fill('#cone-where', where);
      await page.click('#cone-btn');
      await waitPage(page, 'cone results', () => document.getElementById('cone-results').dataset.state === 'done');
      return page.$$eval('#cone-results tbody tr[data-key]', (rows) => rows.map((r) => r.dataset.key));
    };
    await page.evaluate(() => { location.hash = '#/find'; });
    const expected = await cone('');
    assert(expected[0] === ZTF_KEY, `the nearest object is the centre: ${expected}`);
    sameList(await runForm(''), expected, 'cone rows');
    const href = await page.getAttribute('#cone-results tbody tr[data-key] a', 'href');
    assert(href === `#/object/${ZTF_KEY}`, `row link ${href}`);
    const where = 'n_detections >= 1000';
    const none = await cone(where);
    sameList(await runForm(where), none, `cone rows where ${where}`);
    const empty = await page.locator('#cone-results tbody tr.empty').count();
    assert(none.length > 0 || empty === 1, 'an empty cone says so');
    await runForm('');
    return `${expected.length} row(s) within 1° of ${ZTF_KEY}, ${none.length} with ${where}`;
  });

  await check('the filter query form returns what GET /v1/objects does, in order; a bad filter says where', async () => {
    const where = "survey = 'ztf' and n_detections >= 2";
    const expected = (await get(base, `/v1/objects?${new URLSearchParams({ where, order: 'last_mjd desc', limit: '10' })}`)).objects.map((o) => o.key);
    assert(expected.length > 1, `the query should match several objects: ${expected}`);
    await page.evaluate(() => { location.hash = '#/find'; });
    await page.fill('#query-where', where);
    await page.fill('#query-order', 'last_mjd desc');
    await page.fill('#query-limit', '10');
    await page.click('#query-btn');
    await waitPage(page, 'query results', () => document.getElementById('query-results').dataset.state === 'done');
    const got = await page.$$eval('#query-results tbody tr[data-key]', (rows) => rows.map((r) => r.dataset.key));
    sameList(got, expected, 'query rows');
    await shot(page, 'find');

    await page.fill('#query-where', 'n_alerts >>> 1');
    await page.click('#query-btn');
    await waitPage(page, 'the error', () => document.getElementById('query-results').dataset.state === 'error');
    const status = await page.locator('#query-status').textContent();
    assert(/bad_filter/.test(status), `the error shown: ${status}`);

    // A result row opens the object page.
    await page.fill('#query-where', where);
    await page.click('#query-btn');
    await waitPage(page, 'query results again', () => document.getElementById('query-results').dataset.state === 'done');
    await page.click(`#query-results tr[data-key="${expected[1]}"] a`);
    await waitPage(page, `the object page of ${expected[1]}`, (key) => document.body.dataset.view === 'object'
      && document.getElementById('key').textContent === key && Number(document.getElementById('plot').dataset.plotted) > 0, expected[1]);
    return `${got.length} rows; the error said: ${status}`;
  });

  await check('the stream statistics panel', async () => {
    const r = await api(base, '/v1/stats?step=minute');
    await page.evaluate(() => { location.hash = '#/stats'; });
    if (r.status === 404) {
      await waitPage(page, 'the panel hidden with a note', () => document.getElementById('stats-panel').dataset.state === 'unavailable'
        && !document.getElementById('stats-note').hidden);
      await shot(page, 'stats');
      throw new Skip('GET /v1/stats answered 404 on this binary; the page hides the panel with a note');
    }
    assert(r.ok, `GET /v1/stats: ${r.status} ${r.body.slice(0, 200)}`);
    // Counts settle once everything is applied: wait until the page shows what the API says.
    let total = null;
    await until('the page and the API to agree on the alerts counted', async () => {
      const stats = await get(base, '/v1/stats?step=minute');
      total = stats.rows.reduce((n, row) => n + (row.alerts ?? 0), 0);
      const shown = await page.evaluate(() => document.getElementById('stats-total-alerts').textContent);
      const drawn = await page.evaluate(() => document.querySelectorAll('#stats-plot .barlayer .point').length);
      return total > 0 && shown === String(total) && drawn > 0;
    }, 30_000);
    await shot(page, 'stats');
    return `${total} alerts counted`;
  });

  await check('the cluster view of a single node', async () => {
    const view = await get(base, '/v1/cluster');
    await page.evaluate(() => { location.hash = '#/cluster'; });
    await waitPage(page, 'the partition table', (n) => document.querySelectorAll('#cluster-partitions tr[data-partition]').length === n
      && document.getElementById('cluster-node').textContent !== '—', view.partitions.length);
    const leader = await page.locator('#cluster-leader').textContent();
    if (view.coordinator?.leader) assert(leader === view.coordinator.leader, `leader shown ${leader}, API says ${view.coordinator.leader}`);
    await shot(page, 'cluster');
    return `${view.partitions.length} partitions, node ${view.node}, leader ${leader}`;
  });

  assert(page.errors.length === 0, `errors in the page: ${page.errors.join('; ')}`);
  await page.context().close();
}

// ---- a cluster ------------------------------------------------------------------------------

async function cluster(browser) {
  assert(TOKEN, 'LK_URLS needs LK_ADMIN_TOKEN');
  // Each node's id, and a partition with a ready standby on another node.
  const views = await until('every node to answer /v1/cluster', async () => Promise.all(URLS.map((u) => get(u, '/v1/cluster'))), 60_000);
  const urlOf = new Map(views.map((v, i) => [v.node, URLS[i]]));
  // Some data, so that offsets move; the promotion then needs the standby to have caught up.
  const lightcurve = avroFiles(path.join(DATA, 'ztf/alerts/pitt-google-broker/lightcurve_ZTF21abiuvdk'));
  for (const f of lightcurve) await ingest(URLS[0], f);
  await until(`${lightcurve.length} alerts applied, every standby caught up`, async () => {
    const o = await api(URLS[0], `/v1/objects/${encodeURIComponent(ZTF_KEY)}`);
    if (!o.ok || o.json.n_alerts < lightcurve.length) return false;
    const vs = await Promise.all(URLS.map((u) => get(u, '/v1/cluster')));
    return vs.every((v) => v.partitions.every((p) => p.role !== 'standby' || (p.ready && p.changelog_lag === 0)));
  }, 60_000);
  const target = await until('a partition with a ready master and a ready standby', async () => {
    const vs = await Promise.all(URLS.map((u) => get(u, '/v1/cluster')));
    for (const v of vs) {
      for (const p of v.partitions) {
        if (p.role !== 'standby' || !p.ready) continue;
        const masterView = vs.find((m) => m.node === p.master);
        const mp = masterView?.partitions.find((x) => x.partition === p.partition);
        if (mp?.role === 'master' && mp.ready) return { partition: p.partition, from: p.master, to: v.node, epoch: p.epoch };
      }
    }
    return null;
  }, 60_000);
  console.log(`# cluster ${[...urlOf].map(([n, u]) => `${n}=${u}`).join(' ')}: promote partition ${target.partition} from ${target.from} to ${target.to} (epoch ${target.epoch})`);

  const page = await openPage(browser, `${URLS[0]}/#/cluster`);
  await check('the cluster view shows every partition with its master, epoch and the Raft leader', async () => {
    await waitPage(page, `partition ${target.partition} mastered by ${target.from} in epoch ${target.epoch}`, (t) => {
      const row = document.querySelector(`#cluster-partitions tr[data-partition="${t.partition}"]`);
      return row?.dataset.master === t.from && row.dataset.epoch === String(t.epoch)
        && document.getElementById('cluster-leader').dataset.leader !== '';
    }, target);
    const nodes = await page.$$eval('#cluster-nodes tr[data-node]', (rows) => rows.map((r) => r.dataset.node));
    assert(URLS.length <= nodes.length, `nodes listed: ${nodes}`);
    return `nodes ${nodes.join(', ')}`;
  });

  await check('a promotion shows in the cluster view as it happens', async () => {
    const r = await api(urlOf.get(target.to), `/v1/admin/partitions/${target.partition}/promote`, {
      method: 'POST', headers: { authorization: `Bearer ${TOKEN}` },
    });
    assert(r.ok, `POST promote on ${target.to}: ${r.status} ${r.body.slice(0, 300)}`);
    const t0 = Date.now();
    await waitPage(page, `partition ${target.partition} mastered by ${target.to} in a later epoch, and the change logged`, (t) => {
      const row = document.querySelector(`#cluster-partitions tr[data-partition="${t.partition}"]`);
      const logged = [...document.querySelectorAll('#cluster-changes li')].some((li) => li.textContent.includes(`partition ${t.partition}:`));
      return row?.dataset.master === t.to && Number(row.dataset.epoch) > t.epoch && logged;
    }, target);
    const epoch = await page.getAttribute(`#cluster-partitions tr[data-partition="${target.partition}"]`, 'data-epoch');
    await shot(page, 'cluster-promotion');
    return `${target.from} → ${target.to}, epoch ${target.epoch} → ${epoch}, shown ${Date.now() - t0} ms after the promote answered`;
  });
  assert(page.errors.length === 0, `errors in the page: ${page.errors.join('; ')}`);
  await page.context().close();
}

// ---- main -----------------------------------------------------------------------------------

if (!URL1 && URLS.length === 0) {
  console.error('set LK_URL (a fresh node) and/or LK_URLS (a cluster) — see the top of this file');
  process.exit(2);
}
const browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, headless: true });
try {
  if (URL1) await check('single node', () => singleNode(browser));
  if (URLS.length) await check('cluster', () => cluster(browser));
} finally {
  await browser.close();
}
if (SHOTS) console.log(`# screenshots in ${SHOTS}: ${fs.existsSync(SHOTS) ? fs.readdirSync(SHOTS).sort().join(', ') : 'none'}`);
console.log(`${results.passed} passed, ${results.failed} failed, ${results.skipped} skipped`);
process.exit(results.failed ? 1 : 0);
