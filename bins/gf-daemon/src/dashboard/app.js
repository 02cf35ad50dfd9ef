// Gal-Friday dashboard. Plain JavaScript, no dependencies, nothing loaded from elsewhere.
//
// Data: WS /ws/dashboard (a frame every second) and WS /ws/halt-status (a frame on every
// halt event), both with ?token=; POSTs carry the token as a bearer. The page keeps its
// own history (equity, latency percentiles, CPU) to draw the charts, and reconnects with
// backoff when the daemon goes away. Text from the daemon is only ever set with
// textContent, never parsed as HTML.
'use strict';

(() => {
  const TOKEN_KEY = 'gf-dashboard-token';
  const HISTORY_LIMIT = 3600; // one hour at one frame per second
  const GAP_MS = 5000; // a longer silence breaks the lines of the charts
  const MAX_BACKOFF_MS = 10000;
  const STATE_LABELS = {
    running: 'Running',
    halting: 'Halting',
    halted: 'Halted',
    recovering: 'Recovering',
  };

  const $ = (id) => document.getElementById(id);
  const SVG_NS = $('equity-chart').namespaceURI;

  const state = {
    token: sessionStorage.getItem(TOKEN_KEY),
    identity: null,
    status: null,
    checklist: null,
    snapshot: null,
    portfolio: null,
    gateway: null,
    fleet: null,
    frames: 0,
    equity: [],
    latency: new Map(),
    cpu: [],
    busy: false,
  };
  // Read-only view for the browser console and the end-to-end test.
  window.gfDashboard = {
    get frames() { return state.frames; },
    get state() { return state.status ? state.status.state : null; },
    get connected() { return dashboardSocket.connected; },
    get historyLength() { return state.equity.length; },
    get fleet() { return state.fleet; },
    // Renders a FleetStatus into the fleet card and the top bar as a frame would (the
    // next frame replaces it): lets the end-to-end test check a fleet halt without NATS.
    previewFleet(fleet) {
      state.fleet = fleet;
      renderFleet();
    },
    get maxDrawdownPct() {
      return state.equity.reduce((m, p) => Math.max(m, p.peak > 0 ? ((p.peak - p.equity) / p.peak) * 100 : 0), 0);
    },
  };

  // ---------------------------------------------------------------- helpers

  function el(tag, props, children) {
    const node = document.createElement(tag);
    if (props) {
      for (const [k, v] of Object.entries(props)) {
        if (k === 'text') node.textContent = v;
        else if (k === 'cls') node.className = v;
        else node.setAttribute(k, v);
      }
    }
    for (const c of children || []) node.append(c);
    return node;
  }

  function svgEl(tag, attrs) {
    const node = document.createElementNS(SVG_NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    return node;
  }

  // Money and percentages arrive as decimal strings; numbers are for display only.
  function num(v) {
    if (v === null || v === undefined || v === '') return NaN;
    return typeof v === 'number' ? v : Number(v);
  }

  function fmt(v, digits = 2) {
    const n = num(v);
    if (!Number.isFinite(n)) return '–';
    return n.toLocaleString(undefined, {
      minimumFractionDigits: digits,
      maximumFractionDigits: digits,
    });
  }

  function signCls(v) {
    const n = num(v);
    if (!Number.isFinite(n) || n === 0) return '';
    return n < 0 ? 'neg' : 'pos';
  }

  function fmtMicros(us) {
    const n = num(us);
    if (!Number.isFinite(n)) return '–';
    if (n >= 1e6) return `${(n / 1e6).toFixed(2)} s`;
    if (n >= 1e3) return `${(n / 1e3).toFixed(2)} ms`;
    return `${Math.round(n)} µs`;
  }

  function fmtBytes(b) {
    const n = num(b);
    if (!Number.isFinite(n)) return '–';
    const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
    let i = 0;
    let v = n;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i += 1;
    }
    return `${v.toFixed(i === 0 ? 0 : 1)} ${units[i]}`;
  }

  function fmtAgo(iso) {
    const t = Date.parse(iso);
    if (!Number.isFinite(t)) return '';
    let s = Math.max(0, Math.round((Date.now() - t) / 1000));
    const h = Math.floor(s / 3600);
    s -= h * 3600;
    const m = Math.floor(s / 60);
    s -= m * 60;
    if (h > 0) return `${h}h ${m}m ago`;
    if (m > 0) return `${m}m ${s}s ago`;
    return `${s}s ago`;
  }

  function fmtTime(iso) {
    const t = new Date(iso);
    return Number.isNaN(t.getTime()) ? '–' : t.toLocaleString();
  }

  function fmtClock(iso) {
    const t = new Date(iso);
    return iso && !Number.isNaN(t.getTime()) ? t.toLocaleTimeString() : '–';
  }

  // A decimal figure exactly as the daemon wrote it (quantities, prices): never through a
  // float, so "2.10" stays "2.10".
  function asText(v) {
    return v === null || v === undefined || v === '' ? '–' : String(v);
  }

  function shorten(s, max) {
    return s.length > max ? `${s.slice(0, max - 1)}…` : s;
  }

  function fmtSpan(ms) {
    const s = Math.round(ms / 1000);
    if (s < 120) return `${s} s`;
    if (s < 7200) return `${Math.round(s / 60)} min`;
    return `${(s / 3600).toFixed(1)} h`;
  }

  function setList(parent, nodes, emptyText) {
    parent.replaceChildren(...(nodes.length ? nodes : [el('li', { cls: 'muted', text: emptyText })]));
  }

  function pushBounded(arr, item) {
    arr.push(item);
    if (arr.length > HISTORY_LIMIT) arr.splice(0, arr.length - HISTORY_LIMIT);
  }

  function isOperator() {
    return !!state.identity && (state.identity.role === 'operator' || state.identity.role === 'admin');
  }

  // ---------------------------------------------------------------- API calls

  class ApiFailure extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(method, path, body) {
    const headers = { Authorization: `Bearer ${state.token}` };
    const init = { method, headers, cache: 'no-store' };
    if (body !== undefined) {
      headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (_) {
      throw new ApiFailure(0, 'unreachable', 'the daemon is unreachable');
    }
    let json = null;
    try {
      json = await res.json();
    } catch (_) {
      json = null;
    }
    if (!res.ok) {
      const err = json && json.error;
      if (res.status === 401) forgetToken('the daemon rejected this token');
      throw new ApiFailure(res.status, err ? err.code : `http_${res.status}`, err ? err.message : res.statusText);
    }
    return json;
  }

  // ---------------------------------------------------------------- sockets

  class LiveSocket {
    constructor(path, onFrame) {
      this.path = path;
      this.onFrame = onFrame;
      this.ws = null;
      this.connected = false;
      this.everConnected = false;
      this.attempt = 0;
      this.nextAt = 0;
      this.timer = 0;
      this.stopped = true;
    }

    start() {
      this.stopped = false;
      this.attempt = 0;
      this.open();
    }

    stop() {
      this.stopped = true;
      clearTimeout(this.timer);
      if (this.ws) {
        this.ws.onclose = null;
        this.ws.close();
      }
      this.ws = null;
      this.connected = false;
    }

    open() {
      if (this.stopped || !state.token) return;
      const scheme = location.protocol === 'https:' ? 'wss:' : 'ws:';
      const url = `${scheme}//${location.host}${this.path}?token=${encodeURIComponent(state.token)}`;
      const ws = new WebSocket(url);
      this.ws = ws;
      ws.onopen = () => {
        this.connected = true;
        this.everConnected = true;
        this.attempt = 0;
        connectionChanged();
      };
      ws.onmessage = (ev) => {
        let frame;
        try {
          frame = JSON.parse(ev.data);
        } catch (_) {
          return;
        }
        this.onFrame(frame);
      };
      ws.onerror = () => {
        // A close event always follows; reconnection is handled there.
      };
      ws.onclose = () => {
        const hadOpened = this.connected;
        this.connected = false;
        this.ws = null;
        if (this.stopped) return;
        this.schedule();
        connectionChanged();
        if (!hadOpened) verifyToken();
      };
    }

    schedule() {
      this.attempt += 1;
      const ceiling = Math.min(MAX_BACKOFF_MS, 500 * 2 ** Math.min(this.attempt - 1, 6));
      const delay = Math.round(ceiling / 2 + (Math.random() * ceiling) / 2);
      this.nextAt = Date.now() + delay;
      clearTimeout(this.timer);
      this.timer = setTimeout(() => this.open(), delay);
    }
  }

  const dashboardSocket = new LiveSocket('/ws/dashboard', onDashboardFrame);
  const statusSocket = new LiveSocket('/ws/halt-status', onStatusFrame);

  let verifying = false;
  // A socket that closes before opening may mean a revoked token rather than a daemon
  // that is down: ask once, and go back to the token form on 401.
  async function verifyToken() {
    if (verifying || !state.token) return;
    verifying = true;
    try {
      state.identity = await api('GET', '/api/v1/whoami');
      renderIdentity();
    } catch (_) {
      // Unreachable: keep reconnecting. Rejected: api() already went back to the form.
    } finally {
      verifying = false;
    }
  }

  function connectionChanged() {
    const up = dashboardSocket.connected;
    if (up && !state.identity) verifyToken();
    const conn = $('conn');
    conn.textContent = up ? 'live' : 'offline';
    conn.className = `conn ${up ? 'conn-up' : 'conn-down'}`;
    $('disconnected').hidden = up || !state.token || dashboardSocket.stopped || (!dashboardSocket.everConnected && dashboardSocket.attempt === 0);
    renderDisconnected();
    renderState();
    renderChecklist();
  }

  function renderDisconnected() {
    if ($('disconnected').hidden) return;
    const wait = Math.max(0, Math.ceil((dashboardSocket.nextAt - Date.now()) / 1000));
    $('disconnected-text').textContent = wait > 0
      ? `Reconnecting in ${wait} s (attempt ${dashboardSocket.attempt})…`
      : `Reconnecting (attempt ${dashboardSocket.attempt})…`;
  }

  // ---------------------------------------------------------------- frames

  function onDashboardFrame(frame) {
    if (frame.type !== 'dashboard') return;
    state.frames += 1;
    state.snapshot = frame.snapshot || null;
    state.status = frame.status || state.status;
    state.checklist = frame.checklist === undefined ? state.checklist : frame.checklist;
    state.portfolio = frame.portfolio || null;
    state.gateway = frame.gateway || null;
    state.fleet = frame.fleet || null;
    record(frame);
    renderAll();
  }

  function onStatusFrame(frame) {
    if (frame.type !== 'status') return;
    state.status = frame.status || state.status;
    state.checklist = frame.checklist === undefined ? state.checklist : frame.checklist;
    renderState();
    renderChecklist();
  }

  function record(frame) {
    const snap = frame.snapshot || {};
    const t = Date.parse(snap.ts) || Date.now();
    const p = frame.portfolio;
    if (p) {
      const equity = num(p.equity);
      const dd = num(p.total_drawdown_pct);
      if (Number.isFinite(equity)) {
        // The daemon's drawdown is measured from its persisted peak, which may predate
        // this page; derive the peak from it rather than from the page's own history.
        const peak = Number.isFinite(dd) && dd > 0 && dd < 100 ? equity / (1 - dd / 100) : equity;
        pushBounded(state.equity, { t, equity, peak: Math.max(peak, equity) });
      }
    }
    for (const [stage, pct] of Object.entries(snap.latency || {})) {
      if (!state.latency.has(stage)) state.latency.set(stage, []);
      pushBounded(state.latency.get(stage), {
        t,
        p50: num(pct.p50),
        p90: num(pct.p90),
        p99: num(pct.p99),
        samples: num(pct.samples),
      });
    }
    if (snap.system) pushBounded(state.cpu, { t, v: num(snap.system.cpu_percent) });
  }

  // ---------------------------------------------------------------- rendering

  function renderAll() {
    renderState();
    renderChecklist();
    renderConditions();
    renderPortfolio();
    renderGateway();
    renderFleet();
    renderEquity();
    renderLatency();
    renderSystem();
    renderHealth();
    renderAlerts();
  }

  function renderIdentity() {
    const who = state.identity;
    $('who').textContent = who ? `${who.name} (${who.role})` : '';
    $('forget-token').hidden = !state.token;
  }

  function renderState() {
    const st = state.status;
    const s = st ? st.state : null;
    const banner = $('state-banner');
    banner.className = `banner state-${s || 'unknown'}`;
    $('state-text').textContent = s ? (STATE_LABELS[s] || s) : 'Connecting…';
    const gate = st ? (st.gate_open ? 'order gate open' : 'order gate closed') : '';
    // Kraken's own trading mode (live only): anything but `online` limits what passes.
    const venue = st && st.exchange_status ? st.exchange_status : null;
    // How fills arrive (live only): pushed by the executions socket, or polled over REST
    // while it is down (slower: seconds, not milliseconds).
    const fills = st && st.fills === 'polled' ? ' · fills polled (executions socket down)' : '';
    $('gate').textContent = (venue && venue !== 'online' ? `${gate} · kraken ${venue}` : gate) + fills;
    const halt = st ? st.halt : null;
    let reason = '–';
    let source = '–';
    let since = '–';
    if (halt && s && s !== 'running') {
      reason = halt.reason;
      source = halt.source;
      since = `${fmtTime(halt.triggered_at)} (${fmtAgo(halt.triggered_at)})`;
    } else if (halt) {
      reason = `last halt: ${halt.reason}`;
      source = st.resumed_by ? `${halt.source}; resumed by ${st.resumed_by}` : halt.source;
    }
    $('state-reason').textContent = reason;
    $('state-source').textContent = source;
    $('state-since').textContent = since;
    const button = $('halt-button');
    const haltable = s === 'running' || s === 'recovering';
    const live = dashboardSocket.connected;
    button.disabled = !haltable || !isOperator() || state.busy || !live;
    if (!isOperator()) button.title = 'halting needs an operator token';
    else if (!live) button.title = 'not connected to the daemon';
    else button.title = '';
    const problem = st ? st.journal_problem : null;
    $('journal-problem').hidden = !problem;
    $('journal-problem').textContent = problem ? `Journal problem: ${problem}` : '';
  }

  let lastChecklistSignature = '';
  function renderChecklist() {
    const st = state.status;
    const s = st ? st.state : null;
    const list = state.checklist;
    const show = (s === 'halted' || s === 'recovering' || s === 'halting') && !!list;
    $('checklist-card').hidden = !show;
    if (!show) {
      lastChecklistSignature = '';
      return;
    }
    const missing = new Set(st.checklist_missing || []);
    const items = list.items || [];
    // Rebuild only on change, so that a button is not replaced under the pointer.
    const signature = JSON.stringify([s, items, [...missing], isOperator(), state.busy, dashboardSocket.connected]);
    if (signature === lastChecklistSignature) return;
    lastChecklistSignature = signature;
    const next = items.find((i) => !i.completed_by);
    const nodes = items.map((item) => {
      const done = !!item.completed_by;
      const li = el('li', { cls: done ? 'done' : '', 'data-item': item.id }, [
        el('span', { cls: 'mark', text: done ? '✓' : '○' }),
        el('span', { cls: 'title', text: item.title }),
      ]);
      if (item.added_for) li.append(el('span', { cls: 'by', text: `added for: ${item.added_for}` }));
      if (done) {
        li.append(el('span', { cls: 'by', text: `${item.completed_by}, ${fmtTime(item.completed_at)}` }));
      } else if (item === next) {
        const b = el('button', { type: 'button', cls: 'complete', text: 'Mark done' });
        b.disabled = !isOperator() || state.busy || s === 'halting' || !dashboardSocket.connected;
        b.addEventListener('click', () => completeItem(item.id));
        li.append(b);
      }
      return li;
    });
    setList($('checklist'), nodes, 'no items');
    const remaining = items.filter((i) => missing.has(i.id) || !i.completed_by).length;
    $('checklist-missing').textContent = remaining ? `${remaining} item(s) left` : 'all items done';
    $('resume-button').disabled = remaining > 0 || !isOperator() || state.busy || s === 'halting';
  }

  function renderConditions() {
    const conds = (state.snapshot && state.snapshot.conditions) || [];
    const st = state.status;
    // While halted, point at the condition(s) the halt was for.
    const causes = new Set(st && st.state !== 'running' && st.halt ? st.halt.conditions || [] : []);
    const nodes = conds.map((c) => {
      const value = num(c.value);
      const threshold = num(c.threshold);
      const ratio = threshold > 0 && Number.isFinite(value) ? Math.min(1, Math.abs(value) / threshold) : 0;
      const bar = el('div', { cls: `bar${c.triggered ? ' triggered' : ratio >= 0.75 ? ' warn' : ''}` }, [el('div')]);
      bar.firstChild.style.width = `${(ratio * 100).toFixed(1)}%`;
      let label = c.id;
      if (c.triggered) label += ' — triggered';
      if (causes.has(c.id)) label += ' — caused the halt';
      const cls = [c.triggered ? 'triggered' : '', causes.has(c.id) ? 'cause' : ''].join(' ').trim();
      return el('li', { cls, 'data-condition': c.id }, [
        el('div', { cls: 'bar-label' }, [
          el('span', { text: label }),
          el('span', { text: `${fmt(c.value, 2)} / ${fmt(c.threshold, 2)}` }),
        ]),
        bar,
      ]);
    });
    setList($('conditions'), nodes, 'no conditions reported yet');
  }

  function figure(label, value, cls) {
    return [el('dt', { text: label }), el('dd', { text: value, cls: cls || '' })];
  }

  function renderPortfolio() {
    const p = state.portfolio;
    const figures = $('portfolio-figures');
    if (!p) {
      figures.replaceChildren(...figure('Equity', '–'));
      return;
    }
    const daily = state.snapshot && state.snapshot.portfolio ? state.snapshot.portfolio.daily_pnl : null;
    figures.replaceChildren(
      ...figure('Equity', fmt(p.equity)),
      ...figure('Realised P&L', fmt(p.realised_pnl), signCls(p.realised_pnl)),
      ...figure('Unrealised P&L', fmt(p.unrealised_pnl), signCls(p.unrealised_pnl)),
      ...figure('Daily P&L', fmt(daily), signCls(daily)),
      ...figure('Drawdown (total)', `${fmt(p.total_drawdown_pct)} %`),
      ...figure('Drawdown (today)', `${fmt(p.daily_drawdown_pct)} %`),
    );
    const open = (p.positions || []).filter((pos) => num(pos.qty) !== 0);
    const rows = open.map((pos) => el('tr', {}, [
      el('td', { text: pos.pair }),
      el('td', { text: String(pos.qty), cls: signCls(pos.qty) }),
      el('td', { text: fmt(pos.avg_entry, 5) }),
      el('td', { text: pos.mark === null || pos.mark === undefined ? '–' : fmt(pos.mark, 5) }),
      el('td', { text: fmt(pos.unrealised_pnl), cls: signCls(pos.unrealised_pnl) }),
    ]));
    $('positions').replaceChildren(
      ...(rows.length ? rows : [el('tr', {}, [el('td', { colspan: '5', cls: 'muted', text: 'no open positions' })])]),
    );
  }

  const REASON_CHARS = 40;

  // The order gateway: each external trader's counts and the newest orders of all of them.
  function renderGateway() {
    const g = state.gateway;
    $('gateway-badge').hidden = !g || g.enabled !== false;
    const traders = (g && g.traders) || [];
    const traderRows = traders.map((t) => el('tr', { 'data-trader': t.name }, [
      el('td', { text: t.name }),
      el('td', { text: asText(t.open) }),
      el('td', { text: asText(t.accepted) }),
      el('td', { text: asText(t.refused), cls: num(t.refused) > 0 ? 'neg' : '' }),
    ]));
    $('gateway-traders').replaceChildren(
      ...(traderRows.length
        ? traderRows
        : [el('tr', {}, [el('td', { colspan: '4', cls: 'muted', text: g ? 'no trader has placed an order' : 'no data from the gateway' })])]),
    );
    const orders = (g && g.recent) || [];
    const orderRows = orders.map((o) => {
      const reason = o.reason ? String(o.reason) : '';
      const reasonProps = { cls: 'reason', text: reason ? shorten(reason, REASON_CHARS) : '–' };
      if (reason) reasonProps.title = reason;
      const typeProps = { text: asText(o.type), title: `time in force ${asText(o.time_in_force)}${o.post_only ? ', post-only' : ''}` };
      return el('tr', { 'data-order': `${o.trader}/${o.client_order_id}` }, [
        el('td', { text: fmtClock(o.created_at), title: o.created_at ? fmtTime(o.created_at) : '' }),
        el('td', { text: asText(o.trader) }),
        el('td', { text: asText(o.client_order_id) }),
        el('td', { text: asText(o.pair) }),
        el('td', { text: asText(o.side), cls: `side-${o.side}` }),
        el('td', typeProps),
        el('td', { cls: 'num', text: asText(o.qty) }),
        el('td', { cls: 'num', text: asText(o.limit_price) }),
        el('td', {}, [el('span', { cls: `st st-${o.status}`, text: asText(o.status) })]),
        el('td', { cls: 'num', text: asText(o.filled_qty) }),
        el('td', reasonProps),
      ]);
    });
    $('gateway-orders').replaceChildren(
      ...(orderRows.length ? orderRows : [el('tr', {}, [el('td', { colspan: '11', cls: 'muted', text: 'no orders yet' })])]),
    );
  }

  // A figure as the daemon wrote it with its unit, or a bare dash when there is none.
  function withUnit(v, unit) {
    return asText(v) === '–' ? '–' : `${asText(v)}${unit}`;
  }

  // Milliseconds, short: "350 ms", "12.3 s", "1m 15s".
  function fmtAgeMs(ms) {
    const n = num(ms);
    if (!Number.isFinite(n)) return '–';
    if (n < 1000) return `${Math.round(n)} ms`;
    if (n < 60000) return `${(Math.floor(n / 100) / 10).toFixed(1)} s`;
    const s = Math.floor(n / 1000);
    return `${Math.floor(s / 60)}m ${String(s % 60).padStart(2, '0')}s`;
  }

  // The fleet (`[fleet]`, NATS JetStream): a pill in the top bar and, when enabled, a card
  // with the fleet halt (red while active) and every node's newest heartbeat.
  function renderFleet() {
    const f = state.fleet;
    const pill = $('fleet-pill');
    const card = $('fleet-card');
    if (!f) {
      pill.hidden = true;
      card.hidden = true;
      return;
    }
    pill.hidden = false;
    if (!f.enabled) {
      pill.textContent = 'fleet: off';
      pill.className = 'pill';
      card.hidden = true;
      return;
    }
    card.hidden = false;
    const halt = f.halt && f.halt.active ? f.halt : null;
    const nodes = f.nodes || [];
    const stale = nodes.filter((n) => n.stale).length;
    if (halt) {
      pill.textContent = `fleet ${f.fleet}: HALTED`;
      pill.className = 'pill fleet-alarm';
    } else if (!f.connected) {
      pill.textContent = `fleet ${f.fleet}: NATS unreachable`;
      pill.className = 'pill fleet-alarm';
    } else {
      pill.textContent = `fleet ${f.fleet}: ${nodes.length} node${nodes.length === 1 ? '' : 's'}${stale ? `, ${stale} stale` : ''}`;
      pill.className = 'pill fleet-ok';
    }
    $('fleet-name').textContent = `${f.fleet} · this node ${f.node}`;
    const box = $('fleet-halt');
    const approvals = (r) => (r.approvals && r.approvals.length ? `; clear approvals: ${r.approvals.join(', ')}` : '');
    if (halt) {
      box.className = 'fleet-halt fleet-halt-active';
      $('fleet-halt-title').textContent = 'Fleet halt';
      $('fleet-halt-detail').textContent =
        `${halt.reason} — by ${halt.by} on ${halt.node}, ${fmtTime(halt.at)} (${fmtAgo(halt.at)}); revision ${halt.revision}${approvals(halt)}`;
    } else if (f.halt && f.halt.cleared_by) {
      box.className = 'fleet-halt fleet-halt-none';
      $('fleet-halt-title').textContent = 'No fleet halt';
      $('fleet-halt-detail').textContent =
        `last: ${f.halt.reason} (by ${f.halt.by}); cleared by ${f.halt.cleared_by} ${fmtAgo(f.halt.cleared_at)}`;
    } else {
      box.className = 'fleet-halt fleet-halt-none';
      $('fleet-halt-title').textContent = 'No fleet halt';
      $('fleet-halt-detail').textContent = '';
    }
    const contact = f.last_contact_ms === null || f.last_contact_ms === undefined
      ? 'never' : `${fmtAgeMs(f.last_contact_ms)} ago`;
    $('fleet-figures').replaceChildren(...[
      ['NATS', f.connected ? 'connected' : 'unreachable', f.connected ? '' : 'neg'],
      ['Last contact', contact, ''],
      ['Partition halt after', withUnit(f.partition_halt_secs, ' s'), ''],
      ['Total equity', asText(f.total_equity), ''],
      ['Total drawdown', withUnit(f.total_drawdown_pct, ' %'), ''],
      ['Total exposure', asText(f.total_exposure), ''],
    ].map(([k, v, cls]) => el('div', {}, [el('dt', { text: k }), el('dd', { text: v, cls })])));
    const rows = nodes.map((n) => {
      const quote = n.quote ? ` ${n.quote}` : '';
      const age = { cls: 'age', text: `${fmtAgeMs(n.age_ms)}${n.stale ? ' (stale)' : ''}` };
      if (n.at) age.title = fmtTime(n.at);
      const stateCell = { cls: `st st-${n.state}`, text: asText(n.state) };
      if (n.halt_reason) stateCell.title = n.halt_reason;
      return el('tr', { 'data-node': n.node, cls: n.stale ? 'stale' : '' }, [
        el('td', { text: n.node === f.node ? `${n.node} (this node)` : asText(n.node) }),
        el('td', {}, [el('span', stateCell)]),
        el('td', age),
        el('td', { text: withUnit(n.equity, quote) }),
        el('td', { text: withUnit(n.drawdown_pct, ' %') }),
        el('td', { text: withUnit(n.exposure, quote) }),
        el('td', { text: n.breached && n.breached.length ? n.breached.join(', ') : '–', cls: n.breached && n.breached.length ? 'neg' : '' }),
      ]);
    });
    $('fleet-nodes').replaceChildren(
      ...(rows.length ? rows : [el('tr', {}, [el('td', { colspan: '7', cls: 'muted', text: 'no node heartbeats yet' })])]),
    );
  }

  // Scales over the points of a chart: x from time, y from value, into a viewBox.
  function scales(points, keys, box, floorZero) {
    const t0 = points[0].t;
    const t1 = Math.max(points[points.length - 1].t, t0 + 1000);
    let lo = Infinity;
    let hi = -Infinity;
    for (const p of points) {
      for (const k of keys) {
        const v = p[k];
        if (Number.isFinite(v)) {
          lo = Math.min(lo, v);
          hi = Math.max(hi, v);
        }
      }
    }
    if (!Number.isFinite(lo)) {
      lo = 0;
      hi = 1;
    }
    if (floorZero) {
      lo = Math.min(0, lo);
      hi += (hi - lo) * 0.1; // headroom, so the top line clears the label
    }
    if (hi - lo < 1e-9) {
      const pad = Math.abs(hi) * 0.001 || 1;
      lo -= pad;
      hi += pad;
    }
    const m = { l: 4, r: 4, t: 8, b: 8 };
    return {
      t0,
      t1,
      lo,
      hi,
      x: (t) => m.l + ((t - t0) / (t1 - t0)) * (box.w - m.l - m.r),
      y: (v) => box.h - m.b - ((v - lo) / (hi - lo)) * (box.h - m.t - m.b),
    };
  }

  // Splits a series where the page heard nothing for a while (daemon restart, sleep).
  function segments(points) {
    const out = [];
    let cur = [];
    for (const p of points) {
      if (cur.length && p.t - cur[cur.length - 1].t > GAP_MS) {
        out.push(cur);
        cur = [];
      }
      cur.push(p);
    }
    if (cur.length) out.push(cur);
    return out;
  }

  function linePath(points, sc, key) {
    let d = '';
    for (const seg of segments(points)) {
      const pts = seg.filter((p) => Number.isFinite(p[key]));
      pts.forEach((p, i) => {
        d += `${i === 0 ? 'M' : 'L'}${sc.x(p.t).toFixed(1)},${sc.y(p[key]).toFixed(1)}`;
      });
      if (pts.length === 1) d += 'h3'; // a lone sample still shows as a tick
    }
    return d;
  }

  // The area between two series (upper above lower), one polygon per segment.
  function bandPath(points, sc, upper, lower) {
    let d = '';
    for (const seg of segments(points)) {
      if (seg.length < 2) continue;
      const top = seg.map((p) => `${sc.x(p.t).toFixed(1)},${sc.y(p[upper]).toFixed(1)}`);
      const bottom = seg.slice().reverse().map((p) => `${sc.x(p.t).toFixed(1)},${sc.y(p[lower]).toFixed(1)}`);
      d += `M${top.join('L')}L${bottom.join('L')}Z`;
    }
    return d;
  }

  function gridLines(svg, box) {
    for (let i = 1; i < 4; i += 1) {
      const y = (box.h * i) / 4;
      svg.append(svgEl('line', { x1: 0, x2: box.w, y1: y, y2: y, class: 'grid-line' }));
    }
  }

  function renderEquity() {
    const svg = $('equity-chart');
    const points = state.equity;
    const box = { w: 600, h: 200 };
    svg.replaceChildren();
    gridLines(svg, box);
    if (points.length === 0) return;
    const sc = scales(points, ['equity', 'peak'], box, false);
    svg.append(svgEl('path', { d: bandPath(points, sc, 'peak', 'equity'), class: 'drawdown' }));
    svg.append(svgEl('path', { d: linePath(points, sc, 'peak'), class: 'peak' }));
    svg.append(svgEl('path', { d: linePath(points, sc, 'equity'), class: 'equity' }));
    $('equity-hi').textContent = fmt(sc.hi);
    $('equity-lo').textContent = fmt(sc.lo);
    const last = points[points.length - 1];
    const dd = last.peak > 0 ? ((last.peak - last.equity) / last.peak) * 100 : 0;
    $('equity-caption').textContent =
      `now ${fmt(last.equity)} · peak ${fmt(last.peak)} · drawdown ${fmt(dd)} % · ` +
      `${points.length} points over ${fmtSpan(last.t - points[0].t)}`;
  }

  function renderLatency() {
    const container = $('latency');
    const stages = [...state.latency.keys()].sort();
    if (stages.length === 0) return;
    const box = { w: 600, h: 160 };
    const blocks = stages.map((stage) => {
      const points = state.latency.get(stage);
      const last = points[points.length - 1];
      const svg = svgEl('svg', {
        viewBox: `0 0 ${box.w} ${box.h}`,
        preserveAspectRatio: 'none',
        class: 'chart',
        role: 'img',
        'aria-label': `${stage} latency`,
      });
      gridLines(svg, box);
      const sc = scales(points, ['p50', 'p90', 'p99'], box, true);
      for (const key of ['p99', 'p90', 'p50']) svg.append(svgEl('path', { d: linePath(points, sc, key), class: key }));
      return el('div', { 'data-stage': stage }, [
        el('h3', { text: stage }),
        el('div', { cls: 'chart-box' }, [svg, el('span', { cls: 'y-label y-hi', text: fmtMicros(sc.hi) })]),
        el('p', { cls: 'caption' }, [
          el('span', { cls: 'legend-p50', text: `p50 ${fmtMicros(last.p50)}` }),
          ' · ',
          el('span', { cls: 'legend-p90', text: `p90 ${fmtMicros(last.p90)}` }),
          ' · ',
          el('span', { cls: 'legend-p99', text: `p99 ${fmtMicros(last.p99)}` }),
          el('span', { cls: 'muted', text: ` · ${Number.isFinite(last.samples) ? last.samples : 0} samples` }),
        ]),
      ]);
    });
    container.replaceChildren(...blocks);
  }

  function renderSystem() {
    const sys = state.snapshot && state.snapshot.system;
    const dl = $('system');
    if (!sys) {
      dl.replaceChildren(...figure('CPU', '–'));
    } else {
      dl.replaceChildren(
        ...figure('CPU', `${fmt(sys.cpu_percent, 1)} %`),
        ...figure('Memory (RSS)', fmtBytes(sys.resident_bytes)),
        ...figure('Threads', String(sys.threads)),
        ...figure('Open files', String(sys.open_fds)),
        ...figure('Disk free', sys.disk_free_bytes === null || sys.disk_free_bytes === undefined ? '–' : fmtBytes(sys.disk_free_bytes)),
      );
    }
    const svg = $('cpu-chart');
    const box = { w: 600, h: 120 };
    svg.replaceChildren();
    gridLines(svg, box);
    const points = state.cpu;
    if (points.length < 2) return;
    const sc = scales(points, ['v'], box, true);
    for (const seg of segments(points)) {
      if (seg.length < 2) continue;
      const line = seg.map((p) => `${sc.x(p.t).toFixed(1)},${sc.y(p.v).toFixed(1)}`).join('L');
      const base = sc.y(sc.lo).toFixed(1);
      const d = `M${sc.x(seg[0].t).toFixed(1)},${base}L${line}L${sc.x(seg[seg.length - 1].t).toFixed(1)},${base}Z`;
      svg.append(svgEl('path', { d, class: 'cpu' }));
    }
    $('cpu-hi').textContent = `${fmt(sc.hi, 0)} %`;
  }

  function renderHealth() {
    const health = state.snapshot && state.snapshot.health;
    const checks = (health && health.checks) || [];
    const nodes = checks.map((c) => el('li', { 'data-check': c.name }, [
      el('span', { cls: `sev sev-${String(c.status).toLowerCase()}`, text: String(c.status) }),
      el('strong', { text: c.name }),
      el('span', { cls: 'muted', text: ` ${c.message} (${fmtMicros(c.latency_micros)})` }),
    ]));
    setList($('health'), nodes, 'no checks have run yet');
  }

  function renderAlerts() {
    const alerts = (state.snapshot && state.snapshot.alerts) || [];
    const nodes = alerts.map((a) => el('li', { 'data-alert': a.key }, [
      el('span', { cls: `sev sev-${String(a.severity).toLowerCase()}`, text: String(a.severity) }),
      el('strong', { text: a.rule }),
      el('span', { text: ` ${a.summary} ` }),
      el('span', { cls: 'muted', text: `since ${fmtTime(a.started_at)}` }),
    ]));
    setList($('alerts'), nodes, 'none firing');
  }

  // ---------------------------------------------------------------- actions

  async function completeItem(id) {
    $('checklist-error').textContent = '';
    state.busy = true;
    renderChecklist();
    try {
      const res = await api('POST', `/api/v1/recovery/checklist/${encodeURIComponent(id)}/complete`, {});
      if (state.checklist && res && res.item) {
        state.checklist.items = state.checklist.items.map((i) => (i.id === res.item.id ? res.item : i));
      }
      if (state.status && res) state.status.checklist_missing = res.missing || [];
    } catch (e) {
      $('checklist-error').textContent = `Could not complete ${id}: ${e.message}`;
    } finally {
      state.busy = false;
      renderState();
      renderChecklist();
    }
  }

  async function resume() {
    $('checklist-error').textContent = '';
    state.busy = true;
    renderChecklist();
    try {
      const res = await api('POST', '/api/v1/resume');
      if (res && res.status) state.status = res.status;
    } catch (e) {
      $('checklist-error').textContent = `Resume refused: ${e.message}`;
    } finally {
      state.busy = false;
      renderState();
      renderChecklist();
    }
  }

  function openHaltDialog() {
    $('halt-reason').value = '';
    $('halt-error').textContent = '';
    $('halt-confirm').disabled = true;
    $('halt-dialog').showModal();
    $('halt-reason').focus();
  }

  async function confirmHalt(ev) {
    ev.preventDefault();
    const reason = $('halt-reason').value.trim();
    if (!reason) return;
    $('halt-confirm').disabled = true;
    $('halt-error').textContent = '';
    try {
      const res = await api('POST', '/api/v1/halt', { reason });
      if (res && res.status) state.status = res.status;
      $('halt-dialog').close();
      renderState();
      renderChecklist();
    } catch (e) {
      $('halt-error').textContent = `Halt failed: ${e.message}`;
      $('halt-confirm').disabled = false;
    }
  }

  // ---------------------------------------------------------------- token

  function showLogin(message) {
    $('login').hidden = false;
    $('app').hidden = true;
    $('token-error').textContent = message || '';
    $('token-input').value = '';
    $('token-input').focus();
    connectionChanged();
  }

  function forgetToken(message) {
    sessionStorage.removeItem(TOKEN_KEY);
    state.token = null;
    state.identity = null;
    dashboardSocket.stop();
    statusSocket.stop();
    renderIdentity();
    showLogin(message);
  }

  function connect() {
    $('login').hidden = true;
    $('app').hidden = false;
    renderIdentity();
    dashboardSocket.start();
    statusSocket.start();
    connectionChanged();
  }

  async function submitToken(ev) {
    ev.preventDefault();
    const token = $('token-input').value.trim();
    if (!token) return;
    $('token-submit').disabled = true;
    $('token-error').textContent = '';
    state.token = token;
    try {
      state.identity = await api('GET', '/api/v1/whoami');
      sessionStorage.setItem(TOKEN_KEY, token);
      connect();
    } catch (e) {
      if (e.status !== 401) {
        state.token = null;
        $('token-error').textContent = `Could not check the token: ${e.message}`;
      }
    } finally {
      $('token-submit').disabled = false;
    }
  }

  async function boot() {
    $('token-form').addEventListener('submit', submitToken);
    $('forget-token').addEventListener('click', () => forgetToken(''));
    $('halt-button').addEventListener('click', openHaltDialog);
    $('halt-form').addEventListener('submit', confirmHalt);
    $('halt-cancel').addEventListener('click', () => $('halt-dialog').close());
    $('halt-reason').addEventListener('input', () => {
      $('halt-confirm').disabled = $('halt-reason').value.trim() === '';
    });
    $('resume-button').addEventListener('click', resume);
    // Relative times and the reconnect countdown move even without frames.
    setInterval(() => {
      renderDisconnected();
      if (state.status && state.status.state !== 'running') renderState();
    }, 1000);

    if (!state.token) {
      showLogin('');
      return;
    }
    try {
      state.identity = await api('GET', '/api/v1/whoami');
    } catch (e) {
      if (e.status === 401) return; // api() already showed the form
      // The daemon is down: show the page and keep trying.
    }
    connect();
  }

  boot();
})();
