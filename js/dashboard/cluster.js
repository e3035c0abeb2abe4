// The cluster view: `GET /v1/cluster` of the node serving the page, read every POLL_MS while the
// view is shown — the coordinator (Raft leader, term, members), the nodes, and per partition its
// master, standbys, epoch, and this node's replica (role, applied offset, lag). A change of master
// or epoch between two reads is flashed and logged, so a failover or a promotion shows as it
// happens.

import { $, el, text, clockTime, fillTable } from './util.js';

const POLL_MS = 1000;
const MAX_CHANGES = 30;

export class ClusterView {
  #client;
  #timer = null;
  #active = false;
  /** partition → {master, epoch} of the previous read. */
  #last = new Map();
  #changes = [];

  constructor(client) {
    this.#client = client;
  }

  shown() {
    this.#active = true;
    if (this.#timer === null) this.#poll();
  }

  hidden() {
    this.#active = false;
    clearTimeout(this.#timer);
    this.#timer = null;
  }

  async #poll() {
    this.#timer = null;
    try {
      const view = await this.#client.cluster();
      this.#render(view);
      $('cluster-error').hidden = true;
    } catch (e) {
      const err = $('cluster-error');
      err.textContent = `Could not read /v1/cluster: ${e.code ?? 'error'}: ${e.message}`;
      err.hidden = false;
    }
    if (this.#active) this.#timer = setTimeout(() => this.#poll(), POLL_MS);
  }

  #render(view) {
    const coord = view.coordinator ?? null;
    const table = coord?.replicated ?? { nodes: {}, partitions: {} };
    $('cluster-node').textContent = view.node ?? '—';
    $('cluster-draining').textContent = view.draining ? 'yes: handing its masters off' : 'no';
    $('cluster-watched').textContent = text(view.watched_objects);
    $('cluster-raft-state').textContent = coord ? coord.state : 'no coordinator';
    $('cluster-leader').textContent = coord?.leader ?? '— (no leader)';
    $('cluster-leader').dataset.leader = coord?.leader ?? '';
    $('cluster-term').textContent = text(coord?.term);
    $('cluster-voters').textContent = coord?.voters?.length ? coord.voters.join(', ') : '—';
    $('cluster-learners').textContent = coord?.learners?.length ? coord.learners.join(', ') : '—';
    $('cluster-applied').textContent = text(coord?.last_applied);
    $('cluster-updated').textContent = `read ${clockTime()} from ${view.node ?? 'this node'}`;

    // Nodes: the coordinator's table, with the URLs the node knows.
    const ids = [...new Set([...Object.keys(table.nodes ?? {}), ...Object.keys(view.nodes ?? {}), view.node].filter(Boolean))].sort();
    fillTable($('cluster-nodes').tBodies[0], ids, (id) => {
      const info = table.nodes?.[id];
      const url = view.nodes?.[id] ?? info?.url;
      const badges = [];
      if (id === view.node) badges.push(el('span', { class: 'badge self' }, 'this node'));
      if (id === coord?.leader) badges.push(el('span', { class: 'badge leader' }, 'raft leader'));
      const masters = Object.entries(table.partitions ?? {}).filter(([, p]) => p.master === id).map(([p]) => p);
      const alive = info ? (info.alive ? 'alive' : 'dead') : '—';
      return el('tr', { dataset: { node: id, alive: info?.alive ?? '' } },
        el('td', {}, el('b', {}, id), ' ', ...badges),
        el('td', {}, url ? el('a', { href: `${url}/#/cluster` }, url) : '—'),
        el('td', {}, el('span', { class: `health ${alive}` }, alive), info?.leaving ? ' (leaving)' : ''),
        el('td', {}, masters.length ? masters.join(', ') : '—'));
    }, 'No nodes known.');

    // Partitions: master and epoch from the coordinator's table when it has them, else as the
    // epoch markers applied here say; offsets and lag are this node's replica's.
    const now = clockTime();
    const rows = (view.partitions ?? []).map((local) => {
      const entry = table.partitions?.[local.partition] ?? table.partitions?.[String(local.partition)];
      const master = entry?.master || local.master || '';
      const epoch = Math.max(entry?.epoch ?? 0, local.epoch ?? 0);
      const replicas = entry?.replicas?.length ? entry.replicas : local.replicas ?? [];
      const before = this.#last.get(local.partition);
      const changed = before && (before.master !== master || before.epoch !== epoch);
      if (changed) {
        this.#changes.unshift(`${now}  partition ${local.partition}: master ${before.master || '—'} → ${master || '—'}, epoch ${before.epoch} → ${epoch}`);
        this.#changes.length = Math.min(this.#changes.length, MAX_CHANGES);
      }
      this.#last.set(local.partition, { master, epoch });
      return { local, master, epoch, replicas, changed };
    });
    fillTable($('cluster-partitions').tBodies[0], rows, ({ local, master, epoch, replicas, changed }) => {
      const standbys = replicas.filter((r) => r !== master);
      return el('tr', {
        class: changed ? 'changed' : null,
        dataset: { partition: local.partition, master, epoch, role: local.role, ready: local.ready },
      },
      el('td', { class: 'num' }, String(local.partition)),
      el('td', {}, master ? el('b', {}, master) : '—'),
      el('td', {}, standbys.length ? standbys.join(', ') : '—'),
      el('td', { class: 'num' }, String(epoch)),
      el('td', {}, el('span', { class: `role role-${local.role}` }, local.role.replace('_', ' ')), local.ready ? '' : ' (not ready)'),
      el('td', { class: 'num' }, `${local.applied_changelog_offset} / ${local.changelog_end}`),
      el('td', { class: `num${local.changelog_lag > 0 ? ' lagging' : ''}` }, String(local.changelog_lag)),
      el('td', { class: 'num' }, `${local.input_next} / ${local.input_end}`),
      el('td', { class: `num${local.input_lag > 0 ? ' lagging' : ''}` }, String(local.input_lag)));
    }, 'This node reports no partitions.');

    $('cluster-changes').replaceChildren(...(this.#changes.length
      ? this.#changes.map((c) => el('li', {}, c))
      : [el('li', { class: 'muted' }, 'No change of master or epoch seen since the page opened.')]));
  }
}
