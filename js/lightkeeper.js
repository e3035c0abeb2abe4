/**
 * Lightkeeper browser client: REST reads of objects and light curves, cone search and
 * attribute queries, and live WebSocket subscriptions — to objects, resuming from the last
 * version seen, and to filters, resuming from the last cursor seen — so an update is never
 * missed or delivered twice across gaps and reconnects.
 *
 * Plain ES module, no dependencies. See js/README.md and the API contract.
 * @module lightkeeper
 */

const BACKOFF_START_MS = 250;
const BACKOFF_MAX_MS = 10_000;
/** How long a gap resubscription may stay unanswered before it is sent again. */
const RESYNC_RETRY_MS = 5_000;
const WS_OPEN = 1;

/**
 * An error answered by the API (`{"error":{"code","message"}}`) or met on the way to it: `code` is
 * the API's snake_case code (or `network_error`, `http_<status>`, `bad_response`), `status` the
 * HTTP status (0 when no response arrived). Access errors are `unauthorized` (401: no token, or a
 * wrong one), `forbidden` (403: the token lacks the scope) and, over the rate limit, 429 with
 * `retryAfter`: the seconds of the answer's `Retry-After` header (`undefined` without one). REST
 * reads are not retried on 401, 403 or 429; wait `retryAfter` seconds before asking again.
 */
export class LightkeeperError extends Error {
  constructor(code, message, status, retryAfter) {
    super(message);
    this.name = 'LightkeeperError';
    this.code = code;
    this.status = status;
    if (retryAfter !== undefined) this.retryAfter = retryAfter;
  }
}

/**
 * The seconds of a `Retry-After` header, or `undefined` when there is none or it is not a number
 * of seconds (the API sends seconds).
 * @param {string|null|undefined} value
 * @returns {number|undefined}
 */
function retryAfterSeconds(value) {
  if (value == null || value.trim() === '') return undefined;
  const seconds = Number(value);
  return Number.isFinite(seconds) && seconds >= 0 ? seconds : undefined;
}

/**
 * @typedef {object} LightcurveQuery
 * @property {number} [sinceMjd] only points at or after this MJD
 * @property {number} [untilMjd] only points at or before this MJD
 * @property {string[]} [bands] e.g. `['g', 'r']`
 * @property {string[]} [kinds] any of `detection`, `upper_limit`, `forced`
 */

/**
 * @typedef {object} FilterSubscription
 * @property {string} filter an expression of the filter language, e.g.
 *   `n_detections >= 3 and mag_g < 18 and solar_system is null` (fields: `GET /v1/fields`)
 * @property {boolean} [snapshot] first send the objects that match now
 * @property {string} [from] resume after this cursor (from an earlier client's last event)
 */

/**
 * Events handed to a subscriber: the server's `snapshot`, `update` and `error` messages as
 * sent — and, for filter subscriptions, `leave` (the object stopped matching) and `subscribed`
 * (every partition is followed) — plus `{type: 'status', state: 'open'|'reconnecting'|'closed'}`.
 * @callback EventHandler
 * @param {{type: string, [field: string]: any}} event
 */

/**
 * One client holds one WebSocket, shared by all of its subscriptions. Given several nodes of a
 * cluster, it sends each REST read to the next node when one cannot be reached or answers 503,
 * and reconnects its WebSocket to the next node when the socket drops — resuming every object
 * from the last version seen, so a node's death costs neither a gap nor a duplicate.
 */
export class LightkeeperClient {
  #bases;
  #token;
  #node = 0;
  #WebSocket;
  #fetch;
  #random;
  #ws = null;
  #state = 'closed';
  #closed = false;
  #attempt = 0;
  #timer = null;
  #nextSub = 1;
  /** @type {Map<string, {id: string, objects: string[], filter?: string, snapshot?: boolean,
   *   cursor?: string, onEvent: EventHandler, versions: Map<string, number>,
   *   resync: Map<string, number>}>} */
  #subs = new Map();

  /**
   * @param {string|string[]} [baseUrl] where the gateway is, e.g. `http://localhost:8080`, or every
   *   node of a cluster (any node answers any request); the page's origin by default
   * @param {{token?: string, WebSocketImpl?: typeof WebSocket, fetchImpl?: typeof fetch, random?: () => number}} [options]
   *   `token`: an access token, for nodes that require one — sent with every REST request as
   *   `Authorization: Bearer <token>`, and as the `access_token` query parameter of the WebSocket
   *   URL (browsers cannot set headers on a WebSocket); none by default (anonymous reads).
   *   The others are stand-ins for the WebSocket constructor, fetch and the jitter source (tests
   *   inject fakes).
   */
  constructor(baseUrl = globalThis.location?.origin, options = {}) {
    const bases = [].concat(baseUrl ?? []).filter(Boolean).map((u) => String(u).replace(/\/+$/, ''));
    if (bases.length === 0) throw new TypeError('LightkeeperClient needs a base URL when not in a browser page');
    this.#bases = bases;
    this.#token = options.token || undefined;
    this.#WebSocket = options.WebSocketImpl ?? globalThis.WebSocket;
    this.#fetch = options.fetchImpl ?? ((...args) => globalThis.fetch(...args));
    this.#random = options.random ?? Math.random;
  }

  /** Connection state: `open`, `reconnecting` or `closed`. */
  get state() { return this.#state; }

  /**
   * The object summary (`GET /v1/objects/{key}`).
   * @param {string} key survey-qualified key, e.g. `ztf:ZTF21abiuvdk`
   * @returns {Promise<object>}
   * @throws {LightkeeperError} `object_not_found` when unknown, and any other API error
   */
  getObject(key) {
    return this.#get(`/v1/objects/${encodeURIComponent(key)}`);
  }

  /**
   * The light curve `{key, version, points}`, sorted by time.
   * @param {string} key
   * @param {LightcurveQuery} [query]
   * @returns {Promise<{key: string, version: number, points: object[]}>}
   */
  getLightcurve(key, { sinceMjd, untilMjd, bands = [], kinds = [] } = {}) {
    const q = new URLSearchParams();
    if (sinceMjd != null) q.set('since_mjd', String(sinceMjd));
    if (untilMjd != null) q.set('until_mjd', String(untilMjd));
    for (const band of [].concat(bands)) q.append('band', band);
    for (const kind of [].concat(kinds)) q.append('kind', kind);
    const qs = q.toString();
    return this.#get(`/v1/objects/${encodeURIComponent(key)}/lightcurve${qs ? `?${qs}` : ''}`);
  }

  /**
   * The alerts that built an object, with where each was read from.
   * @param {string} key
   * @returns {Promise<object>}
   */
  getAlerts(key) {
    return this.#get(`/v1/objects/${encodeURIComponent(key)}/alerts`);
  }

  /**
   * Objects within `radiusArcsec` of (`ra`, `dec`) from every partition, nearest first, each
   * with its `distance_arcsec` (`GET /v1/cone`).
   * @param {number} ra degrees, 0 to 360
   * @param {number} dec degrees, -90 to 90
   * @param {number} radiusArcsec above 0, at most 3600
   * @param {{where?: string, limit?: number, partial?: boolean}} [options]
   * @returns {Promise<{objects: object[], missing_partitions: number[]}>}
   */
  cone(ra, dec, radiusArcsec, { where, limit, partial } = {}) {
    const q = new URLSearchParams({ ra: String(ra), dec: String(dec), radius_arcsec: String(radiusArcsec) });
    if (where != null) q.set('where', where);
    if (limit != null) q.set('limit', String(limit));
    if (partial) q.set('partial', 'true');
    return this.#get(`/v1/cone?${q}`);
  }

  /**
   * One page of the objects matching a filter, in order (`GET /v1/objects`); pass the page's
   * `next_cursor` as `cursor` for the next (it is null on the last page).
   * @param {{where?: string, order?: string, limit?: number, cursor?: string, partial?: boolean}} [query]
   *   `order`: a field, optionally followed by `desc` (e.g. `last_mjd desc`); key order by default
   * @returns {Promise<{objects: object[], next_cursor: string|null, missing_partitions: number[]}>}
   */
  query({ where, order, limit, cursor, partial } = {}) {
    const q = new URLSearchParams();
    if (where != null) q.set('where', where);
    if (order != null) q.set('order', order);
    if (limit != null) q.set('limit', String(limit));
    if (cursor != null) q.set('cursor', cursor);
    if (partial) q.set('partial', 'true');
    const qs = q.toString();
    return this.#get(`/v1/objects${qs ? `?${qs}` : ''}`);
  }

  /** Every field of the filter language with its type and meaning (`GET /v1/fields`). */
  fields() {
    return this.#get('/v1/fields');
  }

  /**
   * The stamps kept for an object (`GET /v1/objects/{key}/cutouts`): per alert, the kinds
   * available.
   * @param {string} key
   * @returns {Promise<{key: string, version: number, alerts: {alert_id: string, mjd: number, kinds: string[]}[]}>}
   */
  getCutouts(key) {
    return this.#get(`/v1/objects/${encodeURIComponent(key)}/cutouts`);
  }

  /**
   * The address of one stamp, for an `<img src>` (`format: 'png'`, the default) or a download
   * (`'fits'`), on the node currently used. It carries no token: where reads need one, fetch it
   * with the `Authorization` header instead.
   * @param {string} key
   * @param {string} alertId
   * @param {'science'|'template'|'difference'} kind
   * @param {{format?: 'png'|'fits'}} [options]
   * @returns {string}
   */
  cutoutUrl(key, alertId, kind, { format = 'png' } = {}) {
    const path = `/v1/objects/${encodeURIComponent(key)}/cutouts/${encodeURIComponent(alertId)}/${encodeURIComponent(kind)}`;
    return `${this.#base}${path}?format=${encodeURIComponent(format)}`;
  }

  /**
   * The address of an alert's original packet (Avro container or Confluent wire format); like
   * {@link LightkeeperClient#cutoutUrl}, without the token.
   * @param {string} key
   * @param {string} alertId
   * @returns {string}
   */
  packetUrl(key, alertId) {
    return `${this.#base}/v1/objects/${encodeURIComponent(key)}/alerts/${encodeURIComponent(alertId)}/packet`;
  }

  /**
   * The cluster as the node answering sees it (`GET /v1/cluster`): `node`, `nodes` (id → URL),
   * `partitions` (this node's replica of each: role, master, epoch, offsets, lag), `draining`,
   * and `coordinator` (the Raft leader, term, voters and the replicated node and partition tables).
   * @returns {Promise<object>}
   */
  cluster() {
    return this.#get('/v1/cluster');
  }

  /**
   * Stream statistics per time step (`GET /v1/stats`): `{step, since, until, rows: [{start,
   * survey, band, alerts, new_objects, detections, dead_letters}]}`.
   * @param {{step?: 'minute'|'hour'|'day', since?: string, until?: string}} [query]
   *   `since`/`until`: ISO 8601 times
   * @returns {Promise<object>}
   */
  stats({ step, since, until } = {}) {
    const q = new URLSearchParams();
    if (step != null) q.set('step', step);
    if (since != null) q.set('since', since);
    if (until != null) q.set('until', until);
    const qs = q.toString();
    return this.#get(`/v1/stats${qs ? `?${qs}` : ''}`);
  }

  /**
   * Subscribes to live objects, or to a filter, over the shared WebSocket, opening it if needed.
   * Each object's updates arrive in version order, each once; a gap is refilled by resubscribing
   * from the last version seen, and so is everything after a reconnect. A filter subscription
   * remembers the `cursor` of the last message and resumes after it on a reconnect, so it too
   * misses nothing and repeats nothing (`lastCursor` gives it, to resume in another client).
   * @param {string[]|string|FilterSubscription} keys object keys, or a filter subscription
   * @param {EventHandler} onEvent
   * @returns {string} the subscription id, for {@link LightkeeperClient#unsubscribe}
   */
  subscribe(keys, onEvent) {
    const spec = keys && typeof keys === 'object' && !Array.isArray(keys) ? keys : undefined;
    if (spec && (typeof spec.filter !== 'string' || spec.filter.trim() === '')) {
      throw new TypeError('a filter subscription needs {filter: "<expression>"}');
    }
    const filter = spec?.filter;
    const objects = filter ? [] : [...new Set([].concat(keys))];
    if (!filter && objects.length === 0) throw new TypeError('subscribe needs at least one object key');
    const sub = {
      id: `s${this.#nextSub++}`, objects, filter, snapshot: Boolean(spec?.snapshot), cursor: spec?.from,
      onEvent, versions: new Map(), resync: new Map(),
    };
    this.#subs.set(sub.id, sub);
    this.#closed = false;
    if (this.#ws?.readyState === WS_OPEN) this.#sendSubscribe(sub);
    else if (!this.#ws && this.#timer === null) this.#connect();
    if (this.#state !== 'closed') {
      const state = this.#state;
      queueMicrotask(() => this.#emit(sub, { type: 'status', state }));
    }
    return sub.id;
  }

  /**
   * Ends a subscription; its events stop at once, even those already in flight.
   * @param {string} sub the id returned by {@link LightkeeperClient#subscribe}
   * @returns {boolean} whether the subscription existed
   */
  unsubscribe(sub) {
    if (!this.#subs.delete(sub)) return false;
    this.#send({ op: 'unsubscribe', sub });
    return true;
  }

  /**
   * The cursor of the last message a filter subscription received (`undefined` before the
   * first): `subscribe({filter, from: cursor})` resumes right after it.
   * @param {string} sub
   * @returns {string|undefined}
   */
  lastCursor(sub) {
    return this.#subs.get(sub)?.cursor;
  }

  /** Closes the socket for good and ends every subscription; each is told `closed`. */
  close() {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = null;
    const ws = this.#ws;
    this.#ws = null;
    ws?.close(1000, 'client closed');
    this.#setState('closed');
    this.#subs.clear();
  }

  /** The node currently used. */
  get #base() { return this.#bases[this.#node]; }

  /** Moves to the next node (after a failure on the current one). */
  #nextNode() { this.#node = (this.#node + 1) % this.#bases.length; }

  async #get(path) {
    let res;
    for (let tried = 1; ; tried++) {
      const base = this.#base;
      try {
        res = await this.#fetch(base + path, { headers: this.#headers() });
        // 503: this node is draining, restoring or cannot reach the master; another may serve.
        if (res.status !== 503 || tried >= this.#bases.length) break;
      } catch (e) {
        if (tried >= this.#bases.length) {
          throw new LightkeeperError('network_error', `could not reach ${this.#bases.join(', ')}: ${e.message}`, 0);
        }
      }
      this.#nextNode();
    }
    const text = await res.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch { /* reported below */ }
    if (!res.ok) {
      const err = body?.error;
      const retryAfter = res.status === 429 ? retryAfterSeconds(res.headers?.get?.('retry-after')) : undefined;
      throw new LightkeeperError(err?.code ?? `http_${res.status}`, err?.message ?? (text || res.statusText), res.status, retryAfter);
    }
    if (body === null) throw new LightkeeperError('bad_response', `expected JSON from ${path}`, res.status);
    return body;
  }

  /** The headers of every REST request: JSON, and the token when there is one. */
  #headers() {
    const headers = { accept: 'application/json' };
    if (this.#token) headers.authorization = `Bearer ${this.#token}`;
    return headers;
  }

  #connect() {
    this.#timer = null;
    let ws;
    try {
      // The token goes in the query: a browser's WebSocket cannot send an Authorization header.
      const query = this.#token ? `?access_token=${encodeURIComponent(this.#token)}` : '';
      ws = new this.#WebSocket(`${this.#base.replace(/^http/, 'ws')}/v1/ws${query}`);
    } catch {
      this.#scheduleReconnect();
      return;
    }
    this.#ws = ws;
    ws.onopen = () => {
      if (ws !== this.#ws) return;
      this.#attempt = 0;
      this.#setState('open');
      for (const sub of this.#subs.values()) this.#sendSubscribe(sub);
    };
    ws.onmessage = (e) => { if (ws === this.#ws) this.#onMessage(e.data); };
    ws.onerror = () => {}; // a close event follows every error
    ws.onclose = () => {
      if (ws !== this.#ws) return;
      this.#ws = null;
      this.#nextNode(); // the node may be gone: try the next one (the same one if it is alone)
      if (!this.#closed) this.#scheduleReconnect();
    };
  }

  #scheduleReconnect() {
    if (this.#subs.size === 0) { this.#setState('closed'); return; } // the next subscribe reconnects
    this.#setState('reconnecting');
    const cap = Math.min(BACKOFF_MAX_MS, BACKOFF_START_MS * 2 ** this.#attempt++);
    this.#timer = setTimeout(() => this.#connect(), cap / 2 + (this.#random() * cap) / 2);
  }

  /** Subscribes afresh, or resumes each object from the last version seen. */
  #sendSubscribe(sub) {
    sub.resync.clear();
    if (sub.filter) {
      const op = { op: 'subscribe', sub: sub.id, filter: sub.filter };
      if (sub.cursor) op.from = sub.cursor; // resume: everything after the last message seen
      else if (sub.snapshot) op.snapshot = true;
      this.#send(op);
      return;
    }
    const fresh = [];
    for (const key of sub.objects) {
      const last = sub.versions.get(key);
      if (last === undefined) fresh.push(key);
      else this.#send({ op: 'subscribe', sub: sub.id, objects: [key], from_version: last });
    }
    if (fresh.length) this.#send({ op: 'subscribe', sub: sub.id, objects: fresh });
  }

  #send(msg) {
    if (this.#ws?.readyState !== WS_OPEN) return false;
    this.#ws.send(JSON.stringify(msg));
    return true;
  }

  #onMessage(data) {
    let msg;
    try { msg = JSON.parse(data); } catch {
      msg = { type: 'error', error: { code: 'bad_message', message: 'the server sent a frame that is not JSON' } };
    }
    const sub = this.#subs.get(msg.sub);
    if (!sub) {
      // An error about no subscription in particular concerns them all; anything else is for a
      // subscription already ended.
      if (msg.type === 'error' && msg.sub == null) for (const s of this.#subs.values()) this.#emit(s, msg);
      return;
    }
    if (sub.filter) {
      // The server orders a filter subscription's messages and its cursor makes a resume exact.
      if (typeof msg.cursor === 'string') sub.cursor = msg.cursor;
      this.#emit(sub, msg);
      return;
    }
    if (msg.type === 'snapshot') {
      sub.versions.set(msg.key, msg.version);
      sub.resync.delete(msg.key);
    } else if (msg.type === 'update' && !this.#acceptUpdate(sub, msg)) {
      return;
    }
    this.#emit(sub, msg);
  }

  /** Whether an update is the next one for its object; asks for the missing ones on a gap. */
  #acceptUpdate(sub, msg) {
    const last = sub.versions.get(msg.key);
    if (last === undefined || msg.version === last + 1) {
      sub.versions.set(msg.key, msg.version);
      sub.resync.delete(msg.key);
      return true;
    }
    if (msg.version <= last) return false; // a duplicate, or older than what was delivered
    const askedAt = sub.resync.get(msg.key);
    const now = Date.now();
    if (askedAt === undefined || now - askedAt > RESYNC_RETRY_MS) {
      sub.resync.set(msg.key, now);
      this.#send({ op: 'subscribe', sub: sub.id, objects: [msg.key], from_version: last });
    }
    return false; // the resumed stream sends it again, in order
  }

  #setState(state) {
    if (state === this.#state) return;
    this.#state = state;
    for (const sub of this.#subs.values()) this.#emit(sub, { type: 'status', state });
  }

  #emit(sub, event) {
    try {
      sub.onEvent(event);
    } catch (e) {
      queueMicrotask(() => { throw e; }); // reported as uncaught, without breaking the stream
    }
  }
}
