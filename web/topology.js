// The topology page: the StackPack views as tabs over one cytoscape graph, search, and a details pane.
// Data comes from the JSON block that `aws-topology view` writes into the page; nothing is fetched.
(function () {
  'use strict';
  const started = performance.now();
  const DATA = JSON.parse(document.getElementById('topology-data').textContent);
  const parsedMs = performance.now() - started;
  const nodes = DATA.nodes, rels = DATA.relations, views = DATA.views, layers = DATA.layers;
  const BIG = nodes.length > 1500;
  const CELL_W = 150, CELL_H = 66, BAND_GAP = 24, BAND_HEAD = 28;
  const REL_COLORS = {
    'uses-service': '#3b7dd8', 'has-resource': '#7a8a99', 'has_cluster_node': '#9c4dcc',
    'uses-ec2-host': '#d9822b', 'flowlog': '#2f9e62',
  };
  const LAYER_COLORS = ['#fde9d9', '#e3f0fb', '#e6f4ea', '#f3e8fd', '#fff4cf', '#e0f2f1', '#fbe4ec', '#eceff1', '#f1f8e9', '#ede7f6'];

  const $ = (id) => document.getElementById(id);
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' }[c]));
  function hashHue(text) {
    let h = 0;
    for (let i = 0; i < text.length; i++) h = (h * 31 + text.charCodeAt(i)) >>> 0;
    return h % 360;
  }
  const typeColors = new Map();
  const typeColor = (type) => typeColors.get(type) ?? typeColors.set(type, `hsl(${hashHue(type)}, 55%, 52%)`).get(type);
  const relColor = (type) => REL_COLORS[type] || `hsl(${hashHue(type)}, 45%, 45%)`;
  const TRACED = ' (traces)'; // a relation seen only in OpenTelemetry traces: its legend entry and dashed style
  const TRACED_COLOR = '#c2255c';

  // Relations per node (indices into rels); an end outside the snapshot is its external id (a string).
  const outgoing = nodes.map(() => []), incoming = nodes.map(() => []);
  rels.forEach((r, k) => {
    if (typeof r.s === 'number') outgoing[r.s].push(k);
    if (typeof r.t === 'number') incoming[r.t].push(k);
  });

  // Each component's data comes after this script (the first frame does not wait for it), one JSON text per
  // component, parsed on its first use (details, search); {} until the whole page is parsed.
  let texts = null;
  function dataOf(i) {
    const n = nodes[i];
    if (n.data) return n.data;
    if (!texts && document.readyState !== 'loading') {
      texts = JSON.parse(document.getElementById('topology-details').content.textContent);
    }
    return texts ? (n.data = JSON.parse(texts[i])) : {};
  }

  // What search looks at: name, external id, type, identifiers, labels (AWS tags as key:value), tag values;
  // lowercased, one string per node: made on its first search, or in idle time once the views are built.
  const haystacks = new Array(nodes.length);
  const haystackOf = (i) => haystacks[i] ?? haystack(i);
  function haystack(i) {
    const n = nodes[i], d = dataOf(i);
    const tags = d.Tags && typeof d.Tags === 'object' ? Object.entries(d.Tags).map(([k, v]) => `${k}:${v} ${v}`) : [];
    const text = [n.name, n.id, n.type, where(d).region, ...(d.identifiers || []), ...(d.URN || []),
      ...(d.labels || []), ...(d.tags || []), ...tags].join('\n').toLowerCase();
    if (texts) haystacks[i] = text;
    return text;
  }
  const where = (d) => ({ account: d.Location?.AwsAccount ?? '', region: d.Location?.AwsRegion ?? '' });

  // One cytoscape instance per view, built on its first visit (the others in idle time after the first
  // draw), stacked in #cy: a tab switch shows an instance that is ready instead of re-adding elements.
  const LABELLED = BIG ? '.labelled' : '';
  const OPTIONS = {
    minZoom: 0.005,
    maxZoom: 4,
    boxSelectionEnabled: false,
    autoungrabify: BIG,
    textureOnViewport: BIG,
    hideEdgesOnViewport: BIG,
    motionBlur: false,
    pixelRatio: BIG ? 1 : 'auto',
    // Few properties per element (cytoscape re-checks an element's bounds and edges for each one it applies):
    // defaults where they do, bands below everything by depth instead of a z-index on every element, and on a
    // big graph labels only on the elements in sight (`labelled`, see labelInSight).
    style: [
      { selector: 'node.component', style: { 'background-color': 'data(color)' } }, // the default size, 30
      { selector: `node.component${LABELLED}`, style: {
        label: 'data(name)', 'font-size': 12, 'text-valign': 'bottom', 'text-margin-y': 2, 'text-max-width': 140,
        'text-wrap': 'ellipsis', 'min-zoomed-font-size': 5, color: '#1d2733',
      } },
      { selector: 'node.component:selected', style: { 'border-width': 5, 'border-color': '#ec7211' } },
      { selector: 'node.band', style: {
        'z-compound-depth': 'bottom', shape: 'round-rectangle', width: 'data(w)', height: 'data(h)',
        'background-color': 'data(color)', 'background-opacity': 0.8, 'border-width': 1, 'border-color': '#c6d0da',
        label: 'data(label)', 'font-size': 'data(font)', 'font-weight': 600, color: '#4a5868',
        'text-valign': 'top', 'text-halign': 'center', 'text-margin-y': -4, events: 'no',
      } },
      { selector: 'edge', style: {
        width: 1.2, 'line-color': 'data(color)', opacity: 0.65, 'curve-style': BIG ? 'haystack' : 'straight',
      } },
      { selector: `edge${LABELLED}`, style: {
        label: 'data(type)', 'font-size': 8, 'min-zoomed-font-size': 9, 'text-rotation': 'autorotate', color: '#4a5868',
      } },
      ...(BIG ? [] : [{ selector: 'edge', style: {
        'target-arrow-shape': 'triangle', 'target-arrow-color': 'data(color)', 'arrow-scale': 0.8,
        'text-background-color': '#fafbfc', 'text-background-opacity': 0.8,
      } }]),
      { selector: 'edge.traced', style: { 'line-style': 'dashed', width: 2 } },
      { selector: '.dim', style: { opacity: 0.12 } },
      { selector: 'edge.dim', style: { opacity: 0.04 } },
      { selector: 'node.match', style: { 'border-width': 4, 'border-color': '#1f6feb', opacity: 1 } },
      { selector: 'edge.near', style: { width: 3, opacity: 1 } },
    ],
  };
  const graphs = []; // per view: { cy, box, searched (the query its classes show), edges (types drawn), done }
  let cy = null; // the current view's instance

  // Grouped by layer: one band per layer, top to bottom, its components on a grid in the view's order (the
  // page data lists each view's members by type, then name).
  // Returns the elements, the box the bands and their titles fill (to fit the view without measuring) and the
  // members in that order (the order search lists them in).
  function layout(members) {
    const byLayer = layers.map(() => []);
    for (const i of members) byLayer[nodes[i].layer].push(i);
    const cols = Math.max(6, Math.ceil(Math.sqrt(members.length * 0.9)));
    const width = cols * CELL_W;
    const elements = [], order = [];
    let y = 0, top = null, bottom = 0;
    byLayer.forEach((group, l) => {
      if (!group.length) return;
      const rows = Math.ceil(group.length / cols);
      const height = BAND_HEAD + rows * CELL_H;
      const font = Math.max(20, Math.round(width / 50));
      elements.push({ group: 'nodes', classes: 'band', selectable: false, grabbable: false,
        data: { id: `layer-${l}`, label: `${layers[l]} (${group.length})`, w: width + 40, h: height,
          color: LAYER_COLORS[l % LAYER_COLORS.length], font },
        position: { x: width / 2 - CELL_W / 2, y: y + height / 2 - 20 } });
      group.forEach((i, k) => {
        const n = nodes[i];
        order.push(i);
        elements.push({ group: 'nodes', classes: 'component',
          data: { id: `n${i}`, idx: i, name: n.name, color: typeColor(n.type) },
          position: { x: (k % cols) * CELL_W, y: y + BAND_HEAD + Math.floor(k / cols) * CELL_H } });
      });
      if (top === null) top = -24 - font * 1.3;
      bottom = y + height - 20;
      y += height + BAND_GAP + font * 1.5;
    });
    const box = top === null ? null : { x1: -CELL_W / 2 - 21, x2: width - CELL_W / 2 + 21, y1: top, y2: bottom + 1 };
    return { elements, box, order };
  }

  // The viewport that shows `box` whole with `padding` pixels around it, as cy.fit would.
  function fitted(box, width, height, padding) {
    const zoom = Math.min(OPTIONS.maxZoom, Math.max(OPTIONS.minZoom,
      Math.min((width - 2 * padding) / (box.x2 - box.x1), (height - 2 * padding) / (box.y2 - box.y1))));
    return { zoom, pan: { x: (width - zoom * (box.x1 + box.x2)) / 2, y: (height - zoom * (box.y1 + box.y2)) / 2 } };
  }

  // On a big graph only the components (and, closer, the relations) in sight carry labels: cytoscape measures
  // every label an element has, drawn or not. They get them once zoomed in enough to read them.
  const NODE_LABEL_ZOOM = 5 / 12, EDGE_LABEL_ZOOM = 9 / 8; // min-zoomed-font-size / font-size
  function labelInSight(g) {
    const c = g.cy, zoom = c.zoom(), e = c.extent();
    const inSight = zoom < NODE_LABEL_ZOOM ? c.collection() : c.nodes('.component').filter((n) => {
      const p = n.position();
      return p.x > e.x1 - CELL_W && p.x < e.x2 + CELL_W && p.y > e.y1 - CELL_H && p.y < e.y2 + CELL_H;
    });
    const next = zoom < EDGE_LABEL_ZOOM ? inSight : inSight.union(inSight.connectedEdges());
    c.batch(() => {
      g.labelled.difference(next).removeClass('labelled');
      next.difference(g.labelled).addClass('labelled');
    });
    g.labelled = next;
    page.timings.labelledAt = performance.now();
  }

  let current = 0, selected = null;
  let inView = new Set();

  // The view's instance: its nodes drawn first; on a big graph its edges are added after that first frame.
  function build(v) {
    const t0 = performance.now();
    const members = views[v].nodes;
    const inside = new Set(members);
    const { elements: nodeElements, box: bounds, order } = layout(members);
    const edgeElements = [], types = new Set();
    rels.forEach((r, k) => {
      if (typeof r.s === 'number' && typeof r.t === 'number' && r.s !== r.t && inside.has(r.s) && inside.has(r.t)) {
        const type = r.traced ? r.type + TRACED : r.type;
        types.add(type);
        edgeElements.push({ group: 'edges', classes: r.traced ? 'traced' : '',
          data: { id: `e${k}`, source: `n${r.s}`, target: `n${r.t}`, type, color: r.traced ? TRACED_COLOR : relColor(r.type) } });
      }
    });
    const t1 = performance.now();
    const box = document.createElement('div');
    box.className = 'view';
    $('cy').appendChild(box);
    const g = { v, box, inside, types, members: order, searched: '', done: false };
    // No fit: it would measure every element (and so style it) before the first frame.
    const viewport = bounds ? fitted(bounds, box.clientWidth, box.clientHeight, 30) : {};
    g.cy = cytoscape({ container: box, ...OPTIONS, ...viewport }); // elements added after: no layout runs
    g.cy.add(BIG ? nodeElements : nodeElements.concat(edgeElements));
    const t2 = performance.now();
    g.cy.on('tap', 'node.component', (e) => select(e.target.data('idx'), false));
    if (BIG) {
      g.labelled = g.cy.collection();
      g.cy.on('viewport', () => { clearTimeout(g.labelTimer); g.labelTimer = setTimeout(() => labelInSight(g), 120); });
    }
    // Per view: layout, instance with its nodes, then from the build to its first frame and to its edges drawn.
    const times = page.timings[`view${v}`] = { layoutMs: t1 - t0, addMs: t2 - t1 };
    g.cy.one('render', () => { times.drawnMs = performance.now() - t0; });
    const finish = () => {
      if (BIG) { g.cy.add(edgeElements); labelInSight(g); }
      g.done = true;
      if (g.searched) search(g.searched, g);
      if (selected !== null && g.inside.has(selected)) highlight(g, selected);
      g.cy.one('render', () => { times.completeMs = performance.now() - t0; });
    };
    if (BIG) g.cy.one('render', () => setTimeout(finish)); else finish();
    return g;
  }

  function show(v) {
    const t0 = performance.now();
    const fresh = !graphs[v]; // nothing selected in it yet: no query over its elements
    const g = graphs[v] || (graphs[v] = build(v));
    if (graphs[current] && current !== v) {
      graphs[current].box.classList.remove('shown');
      pause(graphs[current], graphs[current].done);
    }
    pause(g, false);
    g.box.classList.add('shown');
    current = v;
    cy = g.cy;
    inView = g.inside;
    document.querySelectorAll('#tabs button').forEach((b) => b.setAttribute('aria-selected', String(Number(b.dataset.view) === v)));
    $('query').textContent = views[v].query;
    $('query').title = views[v].description;
    legend(g);
    if (g.searched !== $('search').value.trim().toLowerCase()) search($('search').value);
    if (!fresh) {
      cy.$(':selected').unselect();
      cy.edges('.near').removeClass('near');
    }
    if (selected !== null && inView.has(selected)) highlight(g, selected);
    page.timings.lastShowMs = performance.now() - t0;
  }

  // The view left, once complete, does no work while hidden: cytoscape neither draws nor builds its texture
  // caches while it batches (at 50,000 components that background work made a search on another tab 5x slower).
  function pause(g, paused) {
    if (paused === Boolean(g.paused)) return;
    g.paused = paused;
    if (paused) g.cy.startBatch(); else g.cy.endBatch();
  }

  // Build the views not visited yet, one per idle moment, so a tab switch finds them ready; then the search
  // strings, 2,000 per idle moment.
  const idle = window.requestIdleCallback || ((f) => setTimeout(f, 50));
  function prebuild() {
    const next = views.findIndex((_, v) => !graphs[v]);
    if (next >= 0) idle(() => { if (!graphs[next]) graphs[next] = build(next); setTimeout(prebuild, 0); });
    else index(0);
  }
  function index(from) {
    if (from >= nodes.length) return;
    idle(() => {
      for (let i = from; i < Math.min(from + 2000, nodes.length); i++) haystackOf(i);
      index(from + 2000);
    });
  }

  function legend(g) {
    const types = g.types;
    const color = (t) => (t.endsWith(TRACED) ? TRACED_COLOR : relColor(t));
    $('legend').innerHTML = [...types].sort().map((t) => `<span><i style="background:${color(t)}"></i>${esc(t)}</span>`).join('')
      || '<span>no relations in this view</span>';
  }

  // Dim what does not match in the view `g` (default: the current one); its edges once they are added.
  function search(text, g = graphs[current]) {
    const q = (text || '').trim().toLowerCase();
    const matches = [];
    if (q) {
      for (const i of g.members) if (haystackOf(i).includes(q)) matches.push(i);
    }
    if (q || g.searched) {
      g.cy.batch(() => {
        if (g.searched) g.cy.elements('.dim, .match').removeClass('dim match');
        if (!q) return;
        const hit = new Set(matches), hits = [], misses = [];
        g.cy.nodes('.component').forEach((node) => (hit.has(node.data('idx')) ? hits : misses).push(node));
        g.cy.collection(hits).addClass('match');
        g.cy.collection(misses).addClass('dim');
        g.cy.edges().addClass('dim');
      });
    }
    g.searched = q;
    if (g !== graphs[current]) return matches;
    $('search-count').textContent = q ? `${matches.length} match${matches.length === 1 ? '' : 'es'}` : '';
    page.matches = matches;
    if (q && selected === null) results(matches);
    return matches;
  }

  function results(matches) {
    const shown = matches.slice(0, 200);
    $('details').innerHTML = `<h3>${matches.length} match${matches.length === 1 ? '' : 'es'} in this view</h3><ul>`
      + shown.map((i) => `<li><a data-go="${i}">${esc(nodes[i].name)}</a> <span class="rel">${esc(nodes[i].type)}</span></li>`).join('')
      + (matches.length > shown.length ? `<li class="hint">… ${matches.length - shown.length} more</li>` : '') + '</ul>';
  }

  function highlight(g, i) {
    const node = g.cy.$id(`n${i}`);
    node.select();
    node.connectedEdges().addClass('near');
    return node;
  }

  function select(i, center) {
    selected = i;
    cy.$(':selected').unselect();
    cy.edges('.near').removeClass('near');
    if (inView.has(i)) {
      const node = highlight(graphs[current], i);
      if (center) cy.animate({ center: { eles: node }, zoom: Math.max(cy.zoom(), 1.2) }, { duration: 250 });
    }
    details(i);
  }

  function end(value) {
    return typeof value === 'number'
      ? `<a data-go="${value}">${esc(nodes[value].name)}</a> <span class="rel">${esc(nodes[value].type)}</span>`
      : `<span class="id">${esc(value)}</span> <span class="rel">(not in the snapshot)</span>`;
  }

  function details(i) {
    const n = nodes[i], d = dataOf(i), { account, region } = where(d);
    const chips = (list) => (list && list.length ? list.map((x) => `<span class="chip">${esc(x)}</span>`).join('') : '<span class="hint">none</span>');
    const relList = [
      ...outgoing[i].map((k) => `<li><span class="rel">→ ${esc(rels[k].type)}</span> ${end(rels[k].t)}</li>`),
      ...incoming[i].map((k) => `<li><span class="rel">← ${esc(rels[k].type)}</span> ${end(rels[k].s)}</li>`),
    ];
    $('details').innerHTML = `
      <h2 id="detail-name">${esc(n.name)}</h2>
      <div class="type">${esc(n.type)}</div>
      <div class="id" id="detail-id">${esc(n.id)}</div>
      ${d.ConsoleUrl ? `<a class="action" id="console-link" href="${esc(d.ConsoleUrl)}" target="_blank" rel="noopener noreferrer">${esc(n.action)}</a>`
        : '<p class="hint">No console link for this type.</p>'}
      <h3>Component</h3>
      <ul><li>layer: ${esc(layers[n.layer])} · domain: ${esc(d.domain || '')}</li>
        <li>account ${esc(account)} · region ${esc(region)}${inView.has(i) ? '' : ' · <span class="hint">not in this view</span>'}</li>
        ${(d.environments || []).length ? `<li>environments: ${d.environments.map(esc).join(', ')}</li>` : ''}</ul>
      <h3>Labels</h3><div id="detail-labels">${chips(d.labels)}</div>
      <h3>Identifiers</h3><div>${chips([...(d.identifiers || [])])}</div>
      <h3>Relations (${relList.length})</h3><ul>${relList.join('') || '<li class="hint">none</li>'}</ul>
      <h3>Data</h3><pre>${esc(JSON.stringify(d, null, 2))}</pre>`;
  }

  // Tabs, header, events.
  $('tabs').innerHTML = views.map((v, i) => `<button role="tab" data-view="${i}" title="${esc(v.description)}">`
    + `${esc(v.name)}<span class="count">${v.nodes.length}</span></button>`).join('');
  $('tabs').addEventListener('click', (e) => {
    const button = e.target.closest('button');
    if (button) show(Number(button.dataset.view));
  });
  $('meta').textContent = `${nodes.length} components · ${rels.length} relations · ${DATA.source} · `
    + Object.entries(DATA.taken).map(([a, t]) => `${a} scanned ${t}`).join(', ');
  if (DATA.notes.length) {
    $('notes').textContent = `⚠ ${DATA.notes.length} note${DATA.notes.length === 1 ? '' : 's'}`;
    $('notes').title = DATA.notes.join('\n');
  }
  let timer = null;
  $('search').addEventListener('input', (e) => {
    clearTimeout(timer);
    timer = setTimeout(() => { selected = null; search(e.target.value); }, BIG ? 200 : 60);
  });
  $('search').addEventListener('keydown', (e) => {
    if (e.key === 'Enter') { const m = search(e.target.value); if (m.length) select(m[0], true); }
  });
  $('details').addEventListener('click', (e) => {
    const link = e.target.closest('a[data-go]');
    if (link) select(Number(link.dataset.go), true);
  });

  const page = { data: DATA, show, search, select, ready: false, timings: { scriptMs: started, parsedMs }, matches: [],
    get cy() { return cy; }, current: () => current,
    built: () => graphs.filter(Boolean).length,
    rendered: (i) => { const n = cy.$id(`n${i}`); return n.nonempty() ? n.renderedPosition() : null; } };
  window.topologyPage = page;
  show(0);
  // firstDrawMs: navigation start to the end of the first frame with every node of the first view; ready: its
  // edges are drawn too (completeMs), then the other views are built in idle time.
  cy.one('render', () => { page.timings.firstDrawMs = performance.now(); });
  const first = graphs[0];
  (function whenDone() {
    if (!first.done || document.readyState === 'loading') { setTimeout(whenDone, 10); return; }
    requestAnimationFrame(() => requestAnimationFrame(() => {
      page.timings.readyMs = performance.now() - started;
      page.timings.completeMs = performance.now();
      page.ready = true;
      prebuild();
    }));
  })();
})();
