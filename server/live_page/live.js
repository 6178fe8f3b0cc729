// mpigate's live page: asks /api/status for the pool once a second and redraws the page the
// server rendered from the same figures (server/live_page/live_page.cc lays it out; keep the two
// in step). Hand-written, no library, nothing fetched but /api/status. Every string that comes
// from the pool (client names, function names, messages) goes into the page as text
// (textContent), never as markup.
'use strict';

(function () {
  const SVG = 'http://www.w3.org/2000/svg';
  const token = new URLSearchParams(window.location.search).get('token') || '';
  const byId = (id) => document.getElementById(id);
  // Protobuf's JSON has 64-bit integers as strings.
  const num = (value) => Number(value || 0);

  // As common/pool_figures.cc: "850 µs", "12.5 ms", "3.20 s", "2m05s", "1h02m".
  function formatMicros(micros) {
    if (micros < 1e3) return Math.round(micros) + ' \u00b5s';
    if (micros < 1e6) return (micros / 1e3).toFixed(micros < 1e4 ? 2 : 1) + ' ms';
    if (micros < 6e7) return (micros / 1e6).toFixed(2) + ' s';
    const seconds = Math.floor(micros / 1e6);
    const two = (n) => String(n).padStart(2, '0');
    if (seconds < 3600) return Math.floor(seconds / 60) + 'm' + two(seconds % 60) + 's';
    return Math.floor(seconds / 3600) + 'h' + two(Math.floor(seconds / 60) % 60) + 'm';
  }

  const rate = (perSecond) => perSecond.toFixed(perSecond < 10 ? 1 : 0);

  // The upper bound of the bucket holding the q-th quantile, as QuantileMicros does.
  function quantile(counts, bounds, q) {
    const total = counts.reduce((sum, count) => sum + num(count), 0);
    if (total === 0 || bounds.length === 0) return null;
    const rank = Math.max(1, Math.ceil(q * total));
    let seen = 0;
    for (let i = 0; i < counts.length; ++i) {
      seen += num(counts[i]);
      if (seen >= rank) return bounds[Math.min(i, bounds.length - 1)];
    }
    return bounds[bounds.length - 1];
  }

  function formatQuantile(micros, largest) {
    if (micros === null) return '-';
    return micros >= largest ? '>' + formatMicros(largest) : '\u2264' + formatMicros(micros);
  }

  function svg(name, attributes) {
    const element = document.createElementNS(SVG, name);
    for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
    return element;
  }

  function setText(id, text) {
    const element = byId(id);
    if (element) element.textContent = text;
  }

  function cell(row, column, text) {
    const td = document.createElement('td');
    td.dataset.col = column;
    td.textContent = text;
    row.appendChild(td);
    return td;
  }

  // Replaces the table's body with a row per item.
  function fillTable(id, items, makeRow) {
    const table = byId(id);
    const body = document.createElement('tbody');
    for (const item of items) body.appendChild(makeRow(item));
    table.replaceChild(body, table.tBodies[0]);
  }

  const sessionLabel = (name, id) => (name || '(unnamed)') + ' #' + num(id);

  function workerState(worker) {
    if (worker.busy) return 'busy';
    return worker.down ? 'down' : 'idle';
  }

  // As WorkersBusiestFirst: busy ones running longest first, then idle, then down.
  function workersBusiestFirst(workers) {
    const group = (worker) => (worker.busy ? 0 : worker.down ? 2 : 1);
    return workers.slice().sort((a, b) =>
      group(a) - group(b) ||
      (a.busy ? num(b.running_ms) - num(a.running_ms) : 0) ||
      a.worker - b.worker);
  }

  // As SessionsBusiestFirst: most running, most queued, fastest, oldest.
  function sessionsBusiestFirst(sessions) {
    return sessions.slice().sort((a, b) =>
      num(b.running_tasks) - num(a.running_tasks) ||
      num(b.queued_tasks) - num(a.queued_tasks) ||
      b.recent_tasks_per_second - a.recent_tasks_per_second ||
      num(a.session_id) - num(b.session_id));
  }

  function drawSummary(status) {
    const workers = status.worker_list;
    const busy = workers.filter((worker) => worker.busy).length;
    const down = workers.filter((worker) => worker.down).length;
    const state = status.state.replace(/^POOL_STATE_/, '');
    const stateElement = byId('state');
    stateElement.textContent = state;
    stateElement.className = 'state-' + state;
    document.title = 'mpigate: ' + state;
    let why = status.state_reason;
    if (status.degraded_reason) why += (why ? '; ' : '') + 'degraded: ' + status.degraded_reason;
    setText('state-reason', why);
    setText('s-workers', String(status.workers));
    setText('s-busy', String(busy));
    setText('s-idle', String(status.workers - busy - down));
    setText('s-down', String(down));
    setText('s-queued', String(num(status.queued_tasks)));
    setText('s-sessions', String(status.sessions));
    setText('s-rate', rate(status.recent_tasks_per_second));
    setText('s-succeeded', String(num(status.tasks_succeeded)));
    setText('s-failed', String(num(status.tasks_failed)));
    setText('s-cancelled', String(num(status.tasks_cancelled)));
    setText('s-uptime', formatMicros(num(status.uptime_ms) * 1000));
  }

  // Tasks ended per second, oldest left, now right, over a 5-minute axis.
  function drawChart(history) {
    const width = 900;
    const height = 160;
    const left = 44;
    const bottom = 20;
    const slots = 300;
    const peak = Math.max(1, ...history);
    // A round top for the axis: 1, 2 or 5 times a power of ten.
    const step = Math.pow(10, Math.floor(Math.log10(peak)));
    const top = [1, 2, 5, 10].map((m) => m * step).find((value) => value >= peak);
    const x = (i) => left + ((slots - history.length + i) * (width - left - 4)) / (slots - 1);
    const y = (value) => 4 + (1 - value / top) * (height - bottom - 8);
    const chart = svg('svg', {
      viewBox: '0 0 ' + width + ' ' + height, role: 'img', class: 'chart', id: 'chart-svg',
    });
    const title = svg('title', {});
    title.textContent = 'tasks ended per second over the last 5 minutes';
    chart.appendChild(title);
    for (const value of [0, top / 2, top]) {
      chart.appendChild(svg('line', {
        x1: left, x2: width - 4, y1: y(value), y2: y(value), class: 'grid',
      }));
      const label = svg('text', { x: left - 6, y: y(value) + 4, 'text-anchor': 'end' });
      label.textContent = String(value);
      chart.appendChild(label);
    }
    for (let minute = 5; minute >= 0; --minute) {
      const label = svg('text', {
        x: left + ((300 - minute * 60) * (width - left - 4)) / 300, y: height - 4,
        'text-anchor': minute === 0 ? 'end' : 'middle',
      });
      label.textContent = minute === 0 ? 'now' : '-' + minute + ' min';
      chart.appendChild(label);
    }
    if (history.length > 0) {
      const points = history.map((value, i) => x(i).toFixed(1) + ',' + y(value).toFixed(1));
      const base = y(0).toFixed(1);
      chart.appendChild(svg('path', {
        d: 'M' + x(0).toFixed(1) + ',' + base + ' L' + points.join(' L') + ' L' +
          x(history.length - 1).toFixed(1) + ',' + base + ' Z',
        class: 'area',
      }));
      chart.appendChild(svg('polyline', { points: points.join(' '), class: 'line' }));
    }
    const holder = byId('chart');
    holder.replaceChildren(chart);
    const lastMinute = history.slice(-60).reduce((sum, value) => sum + value, 0);
    setText('chart-note', lastMinute + ' tasks ended in the last minute; peak ' +
      Math.max(0, ...history) + '/s over the last ' + history.length + ' s.');
  }

  // A distribution as bars, one per bucket from the first to the last that holds a task.
  function histogram(counts, bounds) {
    const values = counts.map(num);
    const first = values.findIndex((value) => value > 0);
    const chart = svg('svg', { class: 'histogram', viewBox: '0 0 120 28' });
    if (first < 0) return chart;
    let last = values.length - 1;
    while (values[last] === 0) --last;
    const shown = values.slice(first, last + 1);
    const peak = Math.max(...shown);
    const barWidth = 120 / Math.max(shown.length, 6);
    shown.forEach((value, i) => {
      const barHeight = value === 0 ? 0 : Math.max(1, (value / peak) * 26);
      const bar = svg('rect', {
        x: (i * barWidth).toFixed(1), y: (27 - barHeight).toFixed(1),
        width: Math.max(barWidth - 1, 1).toFixed(1), height: barHeight.toFixed(1),
      });
      const bucket = first + i;
      const tip = svg('title', {});
      tip.textContent = value + ' tasks ' + (bucket < bounds.length
        ? '\u2264 ' + formatMicros(bounds[bucket])
        : '> ' + formatMicros(bounds[bounds.length - 1]));
      bar.appendChild(tip);
      chart.appendChild(bar);
    });
    return chart;
  }

  function drawWorkers(status) {
    fillTable('workers', workersBusiestFirst(status.worker_list), (worker) => {
      const row = document.createElement('tr');
      const state = workerState(worker);
      row.dataset.worker = String(worker.worker);
      row.className = state;
      cell(row, 'worker', String(worker.worker));
      cell(row, 'host', worker.host);
      cell(row, 'pid', worker.pid > 0 ? String(worker.pid) : '-');
      cell(row, 'runner', worker.runner_pid > 0 ? String(worker.runner_pid) : '-');
      cell(row, 'state', state);
      cell(row, 'function', worker.busy ? worker.function : '');
      cell(row, 'session', worker.busy ? sessionLabel(worker.client_name, worker.session_id) : '');
      cell(row, 'for', worker.busy ? formatMicros(num(worker.running_ms) * 1000) : '');
      cell(row, 'backlog', worker.busy ? String(worker.backlog) : '');
      cell(row, 'done', String(num(worker.tasks_done)));
      cell(row, 'failed', String(num(worker.tasks_failed)));
      return row;
    });
  }

  function drawSessions(status) {
    fillTable('sessions', sessionsBusiestFirst(status.session_list), (session) => {
      const row = document.createElement('tr');
      row.dataset.session = String(num(session.session_id));
      cell(row, 'session', String(num(session.session_id)));
      cell(row, 'client', session.client_name);
      cell(row, 'queued', String(num(session.queued_tasks)));
      cell(row, 'running', String(num(session.running_tasks)));
      cell(row, 'done', String(num(session.tasks_succeeded)));
      cell(row, 'failed', String(num(session.tasks_failed)));
      cell(row, 'cancelled', String(num(session.tasks_cancelled)));
      cell(row, 'rate', rate(session.recent_tasks_per_second));
      cell(row, 'stream', session.detached ? 'detached' : 'attached');
      return row;
    });
  }

  function drawFunctions(status) {
    const bounds = status.time_bucket_bounds_us.map(num);
    const largest = bounds.length ? bounds[bounds.length - 1] : 0;
    fillTable('functions', status.function_times, (times) => {
      const row = document.createElement('tr');
      cell(row, 'function', times.name);
      cell(row, 'succeeded', String(num(times.succeeded)));
      cell(row, 'failed', String(num(times.failed)));
      cell(row, 'cancelled', String(num(times.cancelled)));
      const wait = times.queue_wait_counts;
      const run = times.run_time_counts;
      cell(row, 'wait-p50', formatQuantile(quantile(wait, bounds, 0.5), largest));
      cell(row, 'wait-p99', formatQuantile(quantile(wait, bounds, 0.99), largest));
      cell(row, 'wait-histogram', '').appendChild(histogram(wait, bounds));
      cell(row, 'run-p50', formatQuantile(quantile(run, bounds, 0.5), largest));
      cell(row, 'run-p99', formatQuantile(quantile(run, bounds, 0.99), largest));
      cell(row, 'run-histogram', '').appendChild(histogram(run, bounds));
      return row;
    });
  }

  function drawFailures(status) {
    fillTable('failures', status.recent_failures, (failure) => {
      const row = document.createElement('tr');
      const when = new Date(num(failure.unix_ms));
      cell(row, 'when', when.toISOString().slice(11, 23));
      cell(row, 'session', sessionLabel(failure.client_name, failure.session_id));
      cell(row, 'task', String(num(failure.task_id)));
      cell(row, 'function', failure.function);
      cell(row, 'worker', failure.worker >= 0 ? String(failure.worker) : '-');
      cell(row, 'code', failure.code);
      cell(row, 'message', failure.message);
      return row;
    });
  }

  function draw(status) {
    drawSummary(status);
    drawChart(status.tasks_ended_per_second);
    drawWorkers(status);
    drawSessions(status);
    drawFunctions(status);
    drawFailures(status);
  }

  async function update() {
    try {
      const response = await fetch('/api/status', {
        headers: { Authorization: 'Bearer ' + token }, cache: 'no-store',
      });
      if (!response.ok) throw new Error('HTTP ' + response.status);
      const status = await response.json();
      if (status.error) throw new Error(status.error);
      draw(status);
      setText('updated', 'updated ' + new Date().toLocaleTimeString());
      document.body.dataset.live = 'ok';
    } catch (error) {
      // The last figures stay; the page says they are old.
      setText('updated', 'not updating: ' + error.message);
      document.body.dataset.live = 'error';
    } finally {
      window.setTimeout(update, 1000);
    }
  }

  update();
})();
