// cxstream dashboard: polls /api/data and draws each chart with the vendored ECharts.
// Every number drawn is also in the DOM: a table under each chart whose cells carry
// data-col and data-value (the value exactly as the query returned it, JSON text).
'use strict';

(function () {
  const state = { tenant: null, days: 14, refreshS: 5, timer: null, instances: {}, meta: null, seq: 0 };
  const $ = (selector) => document.querySelector(selector);

  function el(tag, attrs, text) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function escapeHTML(text) {
    return String(text).replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]);
  }

  function setStatus(text, isError) {
    const node = $('#status');
    node.textContent = text;
    node.className = isError ? 'error' : '';
  }

  async function getJSON(url) {
    const response = await fetch(url, { credentials: 'same-origin', cache: 'no-store' });
    let body;
    try {
      body = await response.json();
    } catch (e) {
      body = { error: response.statusText };
    }
    if (!response.ok) {
      const error = new Error(body.error || response.statusText);
      error.status = response.status;
      throw error;
    }
    return body;
  }

  // --- formatting ---------------------------------------------------------------
  const PERCENT = /(_rate$|_share$|^conversion_|^csat$|^rate_)/;

  function fmt(col, v) {
    if (v === null || v === undefined) return '–';
    if (typeof v !== 'number') return String(v);
    if (col === 'conversion_gap' || col === 'uplift' || col.startsWith('ci95') || col === 'se') {
      return (v * 100).toFixed(1) + ' pp';
    }
    if (PERCENT.test(col)) return (v * 100).toFixed(1) + ' %';
    if (col.endsWith('_s') || col.includes('_s_')) return v >= 120 ? (v / 60).toFixed(1) + ' min' : v.toFixed(0) + ' s';
    if (col.includes('revenue') || col === 'missed_orders') return v.toLocaleString('en-US', { maximumFractionDigits: 2 });
    if (col === 'nps' || col === 'ces_avg') return v.toFixed(2);
    if (Number.isInteger(v)) return v.toLocaleString('en-US');
    return v.toLocaleString('en-US', { maximumFractionDigits: 3 });
  }

  function rowsAsObjects(chart) {
    return chart.rows.map((row) => Object.fromEntries(chart.columns.map((c, i) => [c, row[i]])));
  }

  // --- cards --------------------------------------------------------------------
  function buildCards(charts) {
    const main = $('#charts');
    main.textContent = '';
    for (const chart of charts) {
      const card = el('section', { class: 'card', id: 'card-' + chart.id, 'data-chart': chart.id, 'data-state': 'loading' });
      card.append(el('h2', {}, chart.title));
      card.append(el('p', { class: 'definition' }, chart.definition));
      card.append(el('div', { class: chart.id === 'support' ? 'tiles' : 'chart', 'data-role': 'plot' }));
      const sql = el('details', { class: 'sql' });
      sql.append(el('summary', {}, 'SQL (run as an analyst query on the views)'));
      sql.append(el('pre', { class: 'sql' }));
      card.append(sql);
      const numbers = el('details', { class: 'numbers' });
      numbers.append(el('summary', {}, 'Numbers'));
      numbers.append(el('div', { class: 'table-wrap' }));
      card.append(numbers);
      main.append(card);
    }
  }

  function fillTable(card, chart) {
    const wrap = card.querySelector('.table-wrap');
    wrap.textContent = '';
    const table = el('table', { 'data-chart': chart.id });
    const head = el('tr');
    for (const c of chart.columns) head.append(el('th', { 'data-col': c }, c));
    const thead = el('thead');
    thead.append(head);
    table.append(thead);
    const body = el('tbody');
    for (const row of chart.rows) {
      const tr = el('tr');
      chart.columns.forEach((c, i) => {
        const v = row[i];
        tr.append(el('td', { 'data-col': c, 'data-value': v === null ? 'null' : String(v) }, fmt(c, v)));
      });
      body.append(tr);
    }
    table.append(body);
    wrap.append(table);
  }

  // --- charts -------------------------------------------------------------------
  const BASE = { animation: false, tooltip: { trigger: 'axis' }, grid: { left: 60, right: 60, top: 40, bottom: 40 } };
  const pct = (v) => (v * 100).toFixed(0) + ' %';

  const OPTIONS = {
    funnel(rows) {
      const first = rows.length ? rows[0].total || 1 : 1;
      return {
        animation: false,
        tooltip: { trigger: 'item', formatter: (p) => `${p.name}: ${p.value.toLocaleString('en-US')}` },
        series: [{
          type: 'funnel', sort: 'none', left: '10%', width: '80%', top: 10, bottom: 10, minSize: '12%', gap: 2,
          label: { position: 'inside', formatter: (p) => `${p.name}  ${p.value.toLocaleString('en-US')}  (${(100 * p.value / first).toFixed(1)} %)` },
          data: rows.map((r) => ({ name: r.stage, value: r.total })),
        }],
      };
    },
    abandonment(rows) {
      return {
        ...BASE,
        legend: { top: 0 },
        xAxis: { type: 'category', data: rows.map((r) => r.day) },
        yAxis: [{ type: 'value', name: 'revenue' }, { type: 'value', name: 'abandonment', min: 0, max: 1, axisLabel: { formatter: pct } }],
        series: [
          { name: 'recovered (treatment)', type: 'bar', stack: 'rev', data: rows.map((r) => r.recovered_revenue_treatment) },
          { name: 'recovered (holdout)', type: 'bar', stack: 'rev', data: rows.map((r) => r.recovered_revenue_holdout) },
          { name: 'cart abandonment rate', type: 'line', yAxisIndex: 1, data: rows.map((r) => r.cart_abandonment_rate) },
        ],
      };
    },
    friction(rows) {
      return {
        ...BASE,
        legend: { top: 0 },
        grid: { left: 10, right: 30, top: 30, bottom: 30, containLabel: true },
        yAxis: { type: 'category', inverse: true, data: rows.map((r) => `${r.signal} · ${r.page}`) },
        xAxis: { type: 'value', min: 0, max: 1, axisLabel: { formatter: pct } },
        series: [
          { name: 'conversion, affected sessions', type: 'bar', data: rows.map((r) => r.conversion_affected) },
          { name: 'conversion, unaffected sessions', type: 'bar', data: rows.map((r) => r.conversion_unaffected) },
        ],
      };
    },
    support_daily(rows) {
      return {
        ...BASE,
        legend: { top: 0 },
        xAxis: { type: 'category', data: rows.map((r) => r.day) },
        yAxis: [{ type: 'value', name: 'first response (s)' }, { type: 'value', name: 'tickets' }],
        series: [
          { name: 'tickets', type: 'bar', yAxisIndex: 1, data: rows.map((r) => r.tickets) },
          { name: 'first response median', type: 'line', data: rows.map((r) => r.first_response_s_median) },
          { name: 'first response p90', type: 'line', data: rows.map((r) => r.first_response_s_p90) },
        ],
      };
    },
    offers(rows) {
      const names = rows.map((r) => `${r.experiment || '(none)'} / ${r.kind}`);
      return {
        ...BASE,
        tooltip: {
          trigger: 'item',
          formatter: (p) => {
            const r = rows[p.dataIndex];
            return `${escapeHTML(names[p.dataIndex])}<br>uplift ${fmt('uplift', r.uplift)}` +
              `<br>95 % interval ${fmt('ci95_low', r.ci95_low)} .. ${fmt('ci95_high', r.ci95_high)}` +
              `<br>triggers ${r.n_treatment} treatment, ${r.n_holdout} holdout`;
          },
        },
        xAxis: { type: 'category', data: names },
        yAxis: { type: 'value', name: 'uplift', axisLabel: { formatter: (v) => (v * 100).toFixed(0) + ' pp' } },
        series: [
          {
            name: '95 % interval', type: 'custom',
            data: rows.map((r, i) => [i, r.ci95_low, r.ci95_high]),
            renderItem(params, api) {
              if (api.value(1) === null || Number.isNaN(api.value(1))) return null;
              const low = api.coord([api.value(0), api.value(1)]);
              const high = api.coord([api.value(0), api.value(2)]);
              const w = 8;
              const style = { stroke: '#2f6fa3', lineWidth: 2 };
              return {
                type: 'group',
                children: [
                  { type: 'line', shape: { x1: low[0], y1: low[1], x2: high[0], y2: high[1] }, style },
                  { type: 'line', shape: { x1: low[0] - w, y1: low[1], x2: low[0] + w, y2: low[1] }, style },
                  { type: 'line', shape: { x1: high[0] - w, y1: high[1], x2: high[0] + w, y2: high[1] }, style },
                ],
              };
            },
          },
          {
            name: 'uplift', type: 'scatter', symbolSize: 12, data: rows.map((r) => r.uplift),
            label: { show: true, position: 'right', formatter: (p) => fmt('uplift', p.value) },
            markLine: { silent: true, symbol: 'none', label: { show: false }, data: [{ yAxis: 0 }], lineStyle: { color: '#7b8794' } },
          },
        ],
      };
    },
    deadletters(rows) {
      const days = [...new Set(rows.map((r) => r.day))];
      const reasons = [...new Set(rows.map((r) => r.reason))];
      return {
        ...BASE,
        legend: { top: 0 },
        xAxis: { type: 'category', data: days },
        yAxis: { type: 'value', name: 'dead letters' },
        series: reasons.map((reason) => ({
          name: reason, type: 'bar', stack: 'dl',
          data: days.map((d) => {
            const hit = rows.find((r) => r.day === d && r.reason === reason);
            return hit ? hit.dead_letters : 0;
          }),
        })),
      };
    },
  };

  function drawTiles(plot, chart) {
    plot.textContent = '';
    const r = rowsAsObjects(chart)[0] || {};
    const tiles = [
      ['tickets', 'tickets', ''],
      ['first_response_s_avg', 'first response (mean)', `${fmt('responded_tickets', r.responded_tickets)} answered`],
      ['fcr_rate', 'first-contact resolution', `of ${fmt('resolved_tickets', r.resolved_tickets)} resolved`],
      ['csat', 'CSAT (4-5 of 5)', `${fmt('csat_answers', r.csat_answers)} answers`],
      ['nps', 'NPS', `${fmt('nps_answers', r.nps_answers)} answers`],
      ['ces_avg', 'CES (mean)', `${fmt('ces_answers', r.ces_answers)} answers`],
      ['negative_sentiment_share', 'negative sentiment', `of ${fmt('customer_messages', r.customer_messages)} messages`],
    ];
    for (const [col, label, note] of tiles) {
      const tile = el('div', { class: 'tile', 'data-col': col });
      tile.append(el('b', {}, fmt(col, r[col])));
      tile.append(el('span', {}, label));
      if (note) tile.append(el('br'), el('small', {}, note));
      plot.append(tile);
    }
  }

  function draw(card, chart) {
    const plot = card.querySelector('[data-role=plot]');
    if (chart.id === 'support') {
      drawTiles(plot, chart);
      return;
    }
    if (!chart.rows.length) {
      if (state.instances[chart.id]) {
        state.instances[chart.id].dispose();
        delete state.instances[chart.id];
      }
      plot.textContent = '';
      plot.append(el('p', { class: 'empty' }, 'no data for these days'));
      return;
    }
    if (!state.instances[chart.id]) {
      plot.textContent = '';
      state.instances[chart.id] = echarts.init(plot, null, { renderer: 'canvas' });
    }
    state.instances[chart.id].setOption(OPTIONS[chart.id](rowsAsObjects(chart)), true);
  }

  function render(data) {
    for (const chart of data.charts) {
      const card = document.getElementById('card-' + chart.id);
      if (!card) continue;
      card.querySelector('pre.sql').textContent = chart.sql;
      card.dataset.ms = chart.ms;
      const old = card.querySelector('p.error');
      if (old) old.remove();
      if (chart.error) {
        card.dataset.state = 'error';
        card.querySelector('p.definition').after(el('p', { class: 'error' }, chart.error));
        continue;
      }
      draw(card, chart);
      fillTable(card, chart);
      card.dataset.state = 'ready';
    }
    document.body.dataset.tenant = data.tenant;
    document.body.dataset.days = String(data.days);
    document.body.dataset.generatedAt = data.generated_at;
    document.body.dataset.state = 'ready';
  }

  // --- polling ------------------------------------------------------------------
  async function refresh() {
    clearTimeout(state.timer);
    const seq = ++state.seq;
    const query = new URLSearchParams({ tenant: state.tenant, days: String(state.days) });
    try {
      const data = await getJSON('/api/data?' + query);
      if (seq !== state.seq) return; // the tenant or the days changed meanwhile
      render(data);
      setStatus(`${data.tenant}, UTC days from ${data.since}; updated ${data.generated_at.replace('T', ' ')}`);
    } catch (error) {
      if (seq !== state.seq) return;
      document.body.dataset.state = 'error';
      setStatus(error.status === 401 ? 'token missing or expired: open the URL cxstream printed' : String(error.message), true);
    }
    state.timer = setTimeout(refresh, state.refreshS * 1000);
  }

  function writeHash() {
    history.replaceState(null, '', '#' + new URLSearchParams({ tenant: state.tenant, days: String(state.days) }));
  }

  async function start() {
    let meta;
    try {
      meta = await getJSON('/api/meta');
    } catch (error) {
      document.body.dataset.state = 'error';
      setStatus(error.status === 401 ? 'token missing or expired: open the URL cxstream printed' : String(error.message), true);
      setTimeout(start, 5000);
      return;
    }
    state.meta = meta;
    state.refreshS = meta.refresh_s;
    const wanted = new URLSearchParams(location.hash.slice(1));
    state.days = Number(wanted.get('days')) || meta.days;
    state.tenant = meta.tenants.includes(wanted.get('tenant')) ? wanted.get('tenant') : meta.tenants[0];
    const picker = $('#tenant');
    picker.textContent = '';
    for (const t of meta.tenants) picker.append(el('option', { value: t }, t));
    picker.value = state.tenant;
    const days = $('#days');
    if (![...days.options].some((o) => o.value === String(state.days))) days.append(el('option', { value: String(state.days) }, String(state.days)));
    days.value = String(state.days);
    picker.onchange = () => { state.tenant = picker.value; writeHash(); refresh(); };
    days.onchange = () => { state.days = Number(days.value); writeHash(); refresh(); };
    buildCards(meta.charts);
    window.addEventListener('resize', () => Object.values(state.instances).forEach((c) => c.resize()));
    if (!state.tenant) {
      setStatus('no tenant yet: no events stored and no write key configured', true);
      return;
    }
    writeHash();
    refresh();
  }

  start();
})();
