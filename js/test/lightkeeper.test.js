// Pure-logic tests of LightkeeperClient's resume rules, with a fake WebSocket and fake timers.
// Run from the repository root: node --test js/test/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LightkeeperClient, LightkeeperError } from '../lightkeeper.js';

/** Records what the client sends; the test plays the server. */
class FakeWebSocket {
  static instances = [];
  constructor(url) {
    this.url = url;
    this.readyState = 0;
    this.sent = [];
    FakeWebSocket.instances.push(this);
  }
  send(text) { this.sent.push(JSON.parse(text)); }
  close() { this.readyState = 3; }
  // server side
  open() { this.readyState = 1; this.onopen?.({}); }
  push(msg) { this.onmessage?.({ data: JSON.stringify(msg) }); }
  drop() { this.readyState = 3; this.onclose?.({ code: 1006 }); }
  static latest() { return FakeWebSocket.instances.at(-1); }
}

const KEY = 'ztf:ZTF21abiuvdk';
const snapshot = (version, sub = 's1') => ({ type: 'snapshot', sub, key: KEY, version, object: version ? { key: KEY, version } : null });
const update = (version, sub = 's1') => ({ type: 'update', sub, key: KEY, version, object: { key: KEY, version }, new_points: [{ mjd: 59400 + version }] });

function setup() {
  FakeWebSocket.instances = [];
  const client = new LightkeeperClient('https://lk.example', { WebSocketImpl: FakeWebSocket, random: () => 1 });
  const events = [];
  const sub = client.subscribe([KEY], (e) => events.push(e));
  const ws = FakeWebSocket.latest();
  ws.open();
  const data = () => events.filter((e) => e.type !== 'status');
  return { client, sub, ws, events, data };
}

test('connects to wss for an https base and subscribes', () => {
  const { ws, sub, events } = setup();
  assert.equal(ws.url, 'wss://lk.example/v1/ws');
  assert.deepEqual(ws.sent, [{ op: 'subscribe', sub, objects: [KEY] }]);
  assert.deepEqual(events[0], { type: 'status', state: 'open' });
});

test('in-order updates pass; duplicates and old versions are dropped', () => {
  const { ws, data } = setup();
  ws.push(snapshot(3));
  ws.push(update(4));
  ws.push(update(4));
  ws.push(update(3));
  ws.push(update(5));
  assert.deepEqual(data().map((e) => `${e.type}:${e.version}`), ['snapshot:3', 'update:4', 'update:5']);
  assert.equal(ws.sent.length, 1, 'no resubscription without a gap');
});

test('a gap resubscribes from the last version, once, and the resumed stream fills it', () => {
  const { ws, sub, data } = setup();
  ws.push(snapshot(0));
  ws.push(update(1));
  ws.push(update(3)); // 2 is missing
  ws.push(update(4)); // still missing 2: no second request
  assert.deepEqual(ws.sent.slice(1), [{ op: 'subscribe', sub, objects: [KEY], from_version: 1 }]);
  ws.push(update(2));
  ws.push(update(3));
  ws.push(update(4));
  assert.deepEqual(data().map((e) => e.version), [0, 1, 2, 3, 4]);
});

test('a snapshot answering a resume resets the version', () => {
  const { ws, data } = setup();
  ws.push(snapshot(2));
  ws.push(update(5));
  ws.push(snapshot(9)); // history no longer available: a fresh snapshot
  ws.push(update(10));
  assert.deepEqual(data().map((e) => `${e.type}:${e.version}`), ['snapshot:2', 'snapshot:9', 'update:10']);
});

test('reconnects with backoff and resumes each object from its last version', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { ws, sub, events, data } = setup();
  ws.push(snapshot(7));
  ws.push(update(8));
  ws.drop();
  assert.deepEqual(events.at(-1), { type: 'status', state: 'reconnecting' });
  assert.equal(FakeWebSocket.instances.length, 1);
  t.mock.timers.tick(249);
  assert.equal(FakeWebSocket.instances.length, 1, 'waits the first backoff step');
  t.mock.timers.tick(1);
  const ws2 = FakeWebSocket.latest();
  assert.notEqual(ws2, ws);
  ws2.drop(); // fails again: the wait doubles
  t.mock.timers.tick(499);
  assert.equal(FakeWebSocket.latest(), ws2);
  t.mock.timers.tick(1);
  const ws3 = FakeWebSocket.latest();
  ws3.open();
  assert.deepEqual(ws3.sent, [{ op: 'subscribe', sub, objects: [KEY], from_version: 8 }]);
  ws.push(update(9)); // a late frame on the dead socket is ignored
  ws3.push(update(8)); // already delivered before the drop
  ws3.push(update(9));
  assert.deepEqual(data().map((e) => e.version), [7, 8, 9]);
  assert.deepEqual(events.filter((e) => e.type === 'status').map((e) => e.state), ['open', 'reconnecting', 'open']);
});

test('backoff is capped at 10 s', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { ws } = setup();
  ws.drop();
  for (let i = 0; i < 8; i++) { t.mock.timers.tick(10_000); FakeWebSocket.latest().drop(); }
  const before = FakeWebSocket.instances.length;
  t.mock.timers.tick(9_999);
  assert.equal(FakeWebSocket.instances.length, before);
  t.mock.timers.tick(1);
  assert.equal(FakeWebSocket.instances.length, before + 1);
});

test('close() does not reconnect; unsubscribe stops events and tells the server', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  const { client, ws, sub, events, data } = setup();
  const otherEvents = [];
  client.subscribe(['ztf:ZTF18abudxnw'], (e) => otherEvents.push(e));
  assert.equal(client.unsubscribe(sub), true);
  assert.equal(client.unsubscribe(sub), false);
  assert.deepEqual(ws.sent.at(-1), { op: 'unsubscribe', sub });
  ws.push(snapshot(1));
  assert.equal(data().length, 0);
  client.close();
  ws.drop();
  t.mock.timers.tick(60_000);
  assert.equal(FakeWebSocket.instances.length, 1);
  assert.equal(client.state, 'closed');
  assert.deepEqual(otherEvents.at(-1), { type: 'status', state: 'closed' });
  assert.notDeepEqual(events.at(-1), { type: 'status', state: 'closed' }, 'an ended subscription hears nothing');
});

test('server errors are passed through', () => {
  const { ws, sub, data } = setup();
  const err = { type: 'error', sub, error: { code: 'slow_consumer', message: 'client fell behind' } };
  ws.push(err);
  assert.deepEqual(data(), [err]);
});

test('REST errors carry the API code and message', async () => {
  const calls = [];
  const fetchImpl = async (url) => {
    calls.push(url);
    return new Response(JSON.stringify({ error: { code: 'object_not_found', message: 'no object ztf:nope' } }), { status: 404 });
  };
  const client = new LightkeeperClient('http://lk.example/', { fetchImpl });
  await assert.rejects(client.getObject('ztf:nope'), (e) => {
    assert.ok(e instanceof LightkeeperError);
    assert.equal(e.code, 'object_not_found');
    assert.equal(e.message, 'no object ztf:nope');
    assert.equal(e.status, 404);
    return true;
  });
  await assert.rejects(client.getLightcurve(KEY, { sinceMjd: 59000, bands: ['g', 'r'], kinds: ['detection'] }));
  assert.deepEqual(calls, [
    'http://lk.example/v1/objects/ztf%3Anope',
    'http://lk.example/v1/objects/ztf%3AZTF21abiuvdk/lightcurve?since_mjd=59000&band=g&band=r&kind=detection',
  ]);
});

test('REST success returns the parsed body', async () => {
  const body = { key: KEY, version: 3, points: [] };
  const client = new LightkeeperClient('http://lk.example', { fetchImpl: async () => new Response(JSON.stringify(body)) });
  assert.deepEqual(await client.getLightcurve(KEY), body);
});


test('with several nodes, a dropped socket reconnects to the next node and resumes there', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  FakeWebSocket.instances = [];
  const client = new LightkeeperClient(['http://a.example:8080', 'http://b.example:8080/'], { WebSocketImpl: FakeWebSocket, random: () => 1 });
  const events = [];
  const sub = client.subscribe([KEY], (e) => events.push(e));
  const ws = FakeWebSocket.latest();
  assert.equal(ws.url, 'ws://a.example:8080/v1/ws');
  ws.open();
  ws.push(snapshot(4));
  ws.push(update(5));
  ws.drop(); // node a dies
  t.mock.timers.tick(250);
  const ws2 = FakeWebSocket.latest();
  assert.equal(ws2.url, 'ws://b.example:8080/v1/ws');
  ws2.open();
  assert.deepEqual(ws2.sent, [{ op: 'subscribe', sub, objects: [KEY], from_version: 5 }]);
  ws2.push(update(5)); // already delivered by a
  ws2.push(update(6));
  assert.deepEqual(events.filter((e) => e.type !== 'status').map((e) => e.version), [4, 5, 6]);
  client.close();
});

test('with several nodes, a REST read goes to the next node when one is unreachable or answers 503', async () => {
  const calls = [];
  const body = { key: KEY, version: 3 };
  const fetchImpl = async (url) => {
    calls.push(url);
    if (url.startsWith('http://a.')) throw new TypeError('connection refused');
    if (url.startsWith('http://b.')) return new Response(JSON.stringify({ error: { code: 'unavailable', message: 'draining' } }), { status: 503 });
    return new Response(JSON.stringify(body));
  };
  const client = new LightkeeperClient(['http://a.example', 'http://b.example', 'http://c.example'], { fetchImpl });
  assert.deepEqual(await client.getObject(KEY), body);
  assert.deepEqual(calls.map((u) => new URL(u).host), ['a.example', 'b.example', 'c.example']);
  // The node that answered is kept for the next request.
  await client.getObject(KEY);
  assert.equal(new URL(calls.at(-1)).host, 'c.example');
  // When every node fails, the error says so.
  const down = new LightkeeperClient(['http://a.example', 'http://a2.example'], { fetchImpl: async () => { throw new TypeError('refused'); } });
  await assert.rejects(down.getObject(KEY), (e) => e.code === 'network_error' && e.message.includes('a2.example'));
});

test('a filter subscription sends its filter, keeps the last cursor and resumes after it on a reconnect', () => {
  FakeWebSocket.instances = [];
  const client = new LightkeeperClient(['https://a.example', 'https://b.example'], { WebSocketImpl: FakeWebSocket, random: () => 1 });
  const events = [];
  const sub = client.subscribe({ filter: 'mag_g < 18', snapshot: true }, (e) => events.push(e));
  const ws = FakeWebSocket.latest();
  ws.open();
  assert.deepEqual(ws.sent, [{ op: 'subscribe', sub, filter: 'mag_g < 18', snapshot: true }]);
  ws.push({ type: 'subscribed', sub, cursor: '0:10:1,1:4:1' });
  ws.push({ type: 'update', sub, key: KEY, version: 7, object: { key: KEY }, new_points: [], cursor: '0:11:1,1:4:1' });
  ws.push({ type: 'leave', sub, key: KEY, version: 9, cursor: '0:13:1,1:4:1' });
  assert.deepEqual(events.filter((e) => e.type !== 'status').map((e) => e.type), ['subscribed', 'update', 'leave']);
  assert.equal(client.lastCursor(sub), '0:13:1,1:4:1');
  ws.drop();
  return new Promise((resolve) => setTimeout(resolve, 300)).then(() => {
    const next = FakeWebSocket.latest();
    assert.notEqual(next, ws);
    assert.equal(next.url, 'wss://b.example/v1/ws', 'the next node');
    next.open();
    // No snapshot again: the resume is exact from the cursor.
    assert.deepEqual(next.sent, [{ op: 'subscribe', sub, filter: 'mag_g < 18', from: '0:13:1,1:4:1' }]);
    client.close();
  });
});

test('a filter subscription can resume from a cursor given by an earlier client', () => {
  FakeWebSocket.instances = [];
  const client = new LightkeeperClient('https://lk.example', { WebSocketImpl: FakeWebSocket, random: () => 1 });
  const sub = client.subscribe({ filter: 'survey = \'ztf\'', from: '0:5:2' }, () => {});
  FakeWebSocket.latest().open();
  assert.deepEqual(FakeWebSocket.latest().sent, [{ op: 'subscribe', sub, filter: 'survey = \'ztf\'', from: '0:5:2' }]);
  assert.throws(() => client.subscribe({ filter: '' }, () => {}), TypeError);
  client.close();
});

test('cone and query build their URLs and return the answer', async () => {
  const asked = [];
  const fetchImpl = async (url) => {
    asked.push(url);
    return { ok: true, status: 200, text: async () => JSON.stringify({ objects: [], next_cursor: null, missing_partitions: [] }) };
  };
  const client = new LightkeeperClient('https://lk.example', { WebSocketImpl: FakeWebSocket, fetchImpl });
  const cone = await client.cone(150.5, -2.25, 60, { where: 'mag_g < 18', limit: 5 });
  assert.deepEqual(cone.objects, []);
  await client.query({ where: 'n_detections >= 3', order: 'last_mjd desc', limit: 10, cursor: 'abc' });
  assert.deepEqual(asked, [
    'https://lk.example/v1/cone?ra=150.5&dec=-2.25&radius_arcsec=60&where=mag_g+%3C+18&limit=5',
    'https://lk.example/v1/objects?where=n_detections+%3E%3D+3&order=last_mjd+desc&limit=10&cursor=abc',
  ]);
});

test('cutouts, cluster and stats build their URLs; a 404 keeps its code and status', async () => {
  const asked = [];
  const fetchImpl = async (url) => {
    asked.push(url);
    if (url.includes('/v1/stats')) {
      return { ok: false, status: 404, text: async () => JSON.stringify({ error: { code: 'not_found', message: 'no route' } }) };
    }
    return { ok: true, status: 200, text: async () => JSON.stringify({ alerts: [] }) };
  };
  const client = new LightkeeperClient('https://lk.example/', { WebSocketImpl: FakeWebSocket, fetchImpl });
  await client.getCutouts('ztf:ZTF21abiuvdk');
  await client.cluster();
  await assert.rejects(client.stats({ step: 'minute', since: '2026-01-01T00:00:00Z' }),
    (e) => e instanceof LightkeeperError && e.status === 404 && e.code === 'not_found');
  assert.deepEqual(asked, [
    'https://lk.example/v1/objects/ztf%3AZTF21abiuvdk/cutouts',
    'https://lk.example/v1/cluster',
    'https://lk.example/v1/stats?step=minute&since=2026-01-01T00%3A00%3A00Z',
  ]);
  assert.equal(client.cutoutUrl('ztf:ZTF21abiuvdk', '1682423960815015010', 'difference'),
    'https://lk.example/v1/objects/ztf%3AZTF21abiuvdk/cutouts/1682423960815015010/difference?format=png');
  assert.equal(client.cutoutUrl('lsst:1', '2', 'science', { format: 'fits' }),
    'https://lk.example/v1/objects/lsst%3A1/cutouts/2/science?format=fits');
  assert.equal(client.packetUrl('lsst:1', '2'), 'https://lk.example/v1/objects/lsst%3A1/alerts/2/packet');
});

test('a token goes with every REST request as a bearer header and in the WebSocket URL as access_token', (t) => {
  t.mock.timers.enable({ apis: ['setTimeout'] });
  FakeWebSocket.instances = [];
  const inits = [];
  const fetchImpl = async (url, init) => {
    inits.push(init);
    return new Response(JSON.stringify({ key: KEY, version: 1 }));
  };
  const token = 'lk_a b/c+d=?&é';
  const client = new LightkeeperClient(['https://a.example', 'https://b.example'], { token, WebSocketImpl: FakeWebSocket, fetchImpl, random: () => 1 });
  const sub = client.subscribe([KEY], () => {});
  const ws = FakeWebSocket.latest();
  assert.equal(ws.url, `wss://a.example/v1/ws?access_token=${encodeURIComponent(token)}`);
  assert.equal(ws.url, 'wss://a.example/v1/ws?access_token=lk_a%20b%2Fc%2Bd%3D%3F%26%C3%A9');
  ws.open();
  assert.deepEqual(ws.sent, [{ op: 'subscribe', sub, objects: [KEY] }], 'the token is not repeated in the messages');
  ws.drop();
  t.mock.timers.tick(250);
  assert.equal(FakeWebSocket.latest().url, `wss://b.example/v1/ws?access_token=${encodeURIComponent(token)}`, 'and on a reconnect to the next node');
  client.close();
  return Promise.all([client.getObject(KEY), client.cone(1, 2, 3), client.stats()]).then(() => {
    assert.equal(inits.length, 3);
    for (const init of inits) assert.deepEqual(init.headers, { accept: 'application/json', authorization: `Bearer ${token}` });
  });
});

test('without a token there is no authorization header and no access_token', async () => {
  FakeWebSocket.instances = [];
  const inits = [];
  const fetchImpl = async (url, init) => { inits.push(init); return new Response('{}'); };
  for (const options of [{}, { token: '' }, { token: undefined }]) {
    const client = new LightkeeperClient('http://lk.example', { ...options, WebSocketImpl: FakeWebSocket, fetchImpl });
    client.subscribe([KEY], () => {});
    assert.equal(FakeWebSocket.latest().url, 'ws://lk.example/v1/ws');
    await client.fields();
    assert.deepEqual(inits.at(-1).headers, { accept: 'application/json' });
    client.close();
  }
});

test('401 and 403 keep the API code and message and are not sent to another node; 429 carries Retry-After', async () => {
  const answers = {
    '/v1/objects/ztf%3Aa': [401, { error: { code: 'unauthorized', message: 'missing or unknown token' } }, {}],
    '/v1/objects/ztf%3Ab': [403, { error: { code: 'forbidden', message: "token 'ci' lacks the scope read" } }, {}],
    '/v1/objects/ztf%3Ac': [429, { error: { code: 'rate_limited', message: 'over 10 requests per second' } }, { 'retry-after': '3' }],
    '/v1/objects/ztf%3Ad': [429, { error: { code: 'rate_limited', message: 'slow down' } }, {}],
  };
  const calls = [];
  const fetchImpl = async (url) => {
    calls.push(url);
    const [status, body, headers] = answers[new URL(url).pathname];
    return new Response(JSON.stringify(body), { status, headers });
  };
  const client = new LightkeeperClient(['http://a.example', 'http://b.example'], { token: 'wrong', fetchImpl });
  const expect = (code, status, message, retryAfter) => (e) => {
    assert.ok(e instanceof LightkeeperError);
    assert.equal(e.code, code);
    assert.equal(e.status, status);
    assert.equal(e.message, message);
    assert.equal(e.retryAfter, retryAfter);
    return true;
  };
  await assert.rejects(client.getObject('ztf:a'), expect('unauthorized', 401, 'missing or unknown token', undefined));
  await assert.rejects(client.getObject('ztf:b'), expect('forbidden', 403, "token 'ci' lacks the scope read", undefined));
  await assert.rejects(client.getObject('ztf:c'), expect('rate_limited', 429, 'over 10 requests per second', 3));
  await assert.rejects(client.getObject('ztf:d'), expect('rate_limited', 429, 'slow down', undefined));
  assert.deepEqual(calls.map((u) => new URL(u).host), ['a.example', 'a.example', 'a.example', 'a.example'], 'one node asked once each');
});
