// Lightkeeper dashboard: the views (Live, Object, Find, Cluster, Stats) behind hash routes, one
// client and one WebSocket for all of them. Served by every node at / (this file at
// /dashboard/dashboard.js); plain ES modules, no build step.
//
// Routes: #/live (default), #/object/<key>, #/find[?ra=&dec=&radius=&where=], #/cluster, #/stats.
// `/?key=<key>` opens that object's page. On a node that requires a token for reads, open
// `/?token=<token>` once: the token is kept for the tab's session (sessionStorage) and taken out
// of the address bar.

import { LightkeeperClient } from '/js/lightkeeper.js';
import { $, objectHref } from './util.js';
import { LiveView } from './live.js';
import { ObjectView } from './object.js';
import { FindView } from './find.js';
import { ClusterView } from './cluster.js';
import { StatsView } from './stats.js';

/** The access token for this tab: from `?token=` (then removed from the URL), else the session's. */
function sessionToken() {
  const url = new URL(globalThis.location.href);
  const given = url.searchParams.get('token');
  if (given) {
    sessionStorage.setItem('lightkeeper-token', given);
    url.searchParams.delete('token');
    history.replaceState(null, '', url.pathname + url.search + url.hash);
  }
  return sessionStorage.getItem('lightkeeper-token') || undefined;
}

const client = new LightkeeperClient(undefined, { token: sessionToken() });

function setStatus(state) {
  const pill = $('status');
  pill.textContent = state;
  pill.dataset.state = state;
}

function showMessage(message) {
  const m = $('message');
  m.textContent = message;
  m.hidden = !message;
}

const hooks = { onStatus: setStatus, showMessage };
const views = {
  live: new LiveView(client, hooks),
  object: new ObjectView(client, hooks),
  find: new FindView(client),
  cluster: new ClusterView(client),
  stats: new StatsView(client),
};
let current = null;

function show(name) {
  for (const [id, view] of Object.entries(views)) {
    const section = $(`view-${id}`);
    const active = id === name;
    section.hidden = !active;
    document.querySelector(`#tabs a[data-view="${id}"]`)?.setAttribute('aria-current', active ? 'page' : 'false');
    if (!active && id === current) view.hidden?.();
  }
  const changed = current !== name;
  current = name;
  document.body.dataset.view = name;
  if (changed) views[name].shown();
  if (name !== 'object') document.title = 'Lightkeeper';
}

function route() {
  const [path, query = ''] = location.hash.replace(/^#\/?/, '').split('?');
  const [name, ...rest] = path.split('/');
  const view = name in views ? name : 'live';
  if (view === 'object' && rest.length) {
    const key = decodeURIComponent(rest.join('/'));
    views.object.watch(key);
    $('tab-object').href = objectHref(key);
  }
  show(view);
  if (view === 'find') views.find.route(new URLSearchParams(query));
}

// `/?key=…` (the address the page had before it had views) opens the object page.
const initialKey = new URLSearchParams(location.search).get('key');
if (initialKey && !location.hash) {
  history.replaceState(null, '', `${location.pathname}${objectHref(initialKey)}`);
}
setStatus('connecting');
window.addEventListener('hashchange', route);
route();
views.live.start();
client.cluster().then((v) => { $('node-name').textContent = v.node ? `node ${v.node}` : ''; }).catch(() => {});
