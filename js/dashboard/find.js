// Finding objects: a cone search (nearest first) and a filter query (pages in an order), each
// with a result table whose rows link to the object pages; and the filter language's fields.

import { $, el, fixed, text, objectLink, formatBandMags, fillTable } from './util.js';

export class FindView {
  #client;
  #query = null;
  #fieldsLoaded = false;

  constructor(client) {
    this.#client = client;
    $('cone-form').addEventListener('submit', (e) => { e.preventDefault(); this.#cone(); });
    $('query-form').addEventListener('submit', (e) => { e.preventDefault(); this.#runQuery(); });
    $('query-more').addEventListener('click', () => this.#more());
    $('fields-help').addEventListener('toggle', () => this.#loadFields());
  }

  /** `#/find?ra=…&dec=…&radius=…[&where=…]` fills the cone form and runs it. */
  route(params) {
    if (!params.has('ra') || !params.has('dec')) return;
    $('cone-ra').value = params.get('ra');
    $('cone-dec').value = params.get('dec');
    if (params.has('radius')) $('cone-radius').value = params.get('radius');
    $('cone-where').value = params.get('where') ?? '';
    this.#cone();
  }

  shown() {}

  async #cone() {
    const ra = Number($('cone-ra').value);
    const dec = Number($('cone-dec').value);
    const radius = Number($('cone-radius').value);
    const where = $('cone-where').value.trim();
    const status = $('cone-status');
    const table = $('cone-results');
    table.dataset.state = 'loading';
    status.className = 'form-status';
    status.textContent = 'Searching…';
    try {
      const res = await this.#client.cone(ra, dec, radius, { where: where || undefined });
      const objects = res.objects ?? [];
      fillTable(table.tBodies[0], objects, (o) => resultRow(o, [
        el('td', { class: 'num' }, fixed(o.distance_arcsec, 2)),
      ]), 'No object in that cone.');
      status.textContent = `${objects.length} object${objects.length === 1 ? '' : 's'} within ${radius}″ of (${ra}, ${dec})${missing(res)}`;
      table.dataset.state = 'done';
      table.dataset.count = String(objects.length);
    } catch (e) {
      this.#fail(table, status, e);
    }
  }

  async #runQuery() {
    const where = $('query-where').value.trim();
    const order = $('query-order').value.trim();
    const limit = Number($('query-limit').value) || 100;
    this.#query = { where: where || undefined, order: order || undefined, limit, cursor: null, shown: 0 };
    $('query-results').tBodies[0].replaceChildren();
    await this.#page(true);
  }

  async #more() {
    if (this.#query?.cursor) await this.#page(false);
  }

  async #page(first) {
    const q = this.#query;
    const status = $('query-status');
    const table = $('query-results');
    table.dataset.state = 'loading';
    status.className = 'form-status';
    status.textContent = 'Querying…';
    try {
      const res = await this.#client.query({ where: q.where, order: q.order, limit: q.limit, cursor: first ? undefined : q.cursor });
      if (q !== this.#query) return;
      const objects = res.objects ?? [];
      const tbody = table.tBodies[0];
      if (first) fillTable(tbody, objects, (o) => resultRow(o, []), 'No object matches.');
      else tbody.append(...objects.map((o) => resultRow(o, [])));
      q.cursor = res.next_cursor ?? null;
      q.shown += objects.length;
      $('query-more').hidden = !q.cursor;
      status.textContent = `${q.shown} object${q.shown === 1 ? '' : 's'}${q.cursor ? ', more available' : ''}${missing(res)}`;
      table.dataset.state = 'done';
      table.dataset.count = String(q.shown);
    } catch (e) {
      if (q === this.#query) this.#fail(table, status, e);
    }
  }

  #fail(table, status, e) {
    status.className = 'form-status error';
    status.textContent = `${e.code ?? 'error'}: ${e.message}`;
    table.dataset.state = 'error';
    table.tBodies[0].replaceChildren();
  }

  async #loadFields() {
    if (this.#fieldsLoaded || !$('fields-help').open) return;
    this.#fieldsLoaded = true;
    const list = $('fields-list');
    try {
      const res = await this.#client.fields();
      const fields = Array.isArray(res) ? res : res.fields ?? Object.entries(res).map(([name, v]) => ({ name, ...(typeof v === 'object' ? v : { type: v }) }));
      list.replaceChildren(...fields.map((f) => el('tr', {},
        el('td', {}, el('code', {}, f.name)), el('td', {}, text(f.type)), el('td', {}, text(f.description ?? f.doc)))));
    } catch (e) {
      this.#fieldsLoaded = false;
      list.replaceChildren(el('tr', {}, el('td', { colspan: 3 }, `Could not read the fields: ${e.message}`)));
    }
  }
}

function missing(res) {
  const m = res.missing_partitions ?? [];
  return m.length ? ` — partitions ${m.join(', ')} did not answer` : '';
}

/** A result row: key (a link to the object page), survey, position, counts, latest magnitudes. */
function resultRow(o, extra) {
  return el('tr', { dataset: { key: o.key } },
    el('td', {}, objectLink(o.key)),
    ...extra,
    el('td', {}, el('span', { class: `survey survey-${o.survey}` }, o.survey)),
    el('td', { class: 'num' }, fixed(o.ra, 5)),
    el('td', { class: 'num' }, fixed(o.dec, 5)),
    el('td', { class: 'num' }, text(o.n_alerts)),
    el('td', { class: 'num' }, text(o.n_detections)),
    el('td', { class: 'num' }, fixed(o.last_mjd, 5)),
    el('td', {}, formatBandMags(o.bands)));
}
