// The dashboard's script: renders what the index pushes (GET /v1/dashboard/events), keeps two
// minutes of each node's figures for its charts, and sends admin actions to the index's change API.
(() => {
  const $ = (id) => document.getElementById(id);
  const ESCAPES = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" };
  const esc = (s) => String(s).replace(/[&<>"']/g, (c) => ESCAPES[c]);
  const nodeName = (n) => `${n.host}:${n.port}`;
  const KEEP = 120;

  /** node -> { t: [], ops: [], mem: [] }: what the charts draw. */
  const series = new Map();
  /** node -> uPlot */
  const charts = new Map();
  let shownVersion = -1;
  let nodes = [];
  let shownTimeline = "";

  const token = $("token");
  token.value = sessionStorage.getItem("flare-token") ?? "";
  token.addEventListener("input", () => sessionStorage.setItem("flare-token", token.value));

  const bytes = (n) => {
    if (!Number.isFinite(n)) return "–";
    const units = ["B", "KB", "MB", "GB", "TB"];
    let i = 0;
    let v = n;
    while (v >= 1000 && i < units.length - 1) {
      v /= 1000;
      i++;
    }
    return `${v >= 100 || i === 0 ? Math.round(v) : v.toFixed(1)} ${units[i]}`;
  };
  const count = (n) => (n === null || n === undefined ? "–" : Math.round(n).toLocaleString("en-US"));
  const percent = (n) => (n === null || n === undefined ? "–" : `${(n * 100).toFixed(1)}%`);

  function add(node, s) {
    let line = series.get(node);
    if (line === undefined) {
      line = { t: [], ops: [], mem: [] };
      series.set(node, line);
    }
    const t = s.at / 1000;
    if (line.t.length > 0 && line.t[line.t.length - 1] >= t) return;
    line.t.push(t);
    line.ops.push(s.opsPerSecond);
    line.mem.push(s.limitBytes > 0 ? (s.bytes / s.limitBytes) * 100 : null);
    if (line.t.length > KEEP) {
      line.t.shift();
      line.ops.shift();
      line.mem.shift();
    }
  }

  function nodeHtml(n) {
    const name = nodeName(n);
    const down = n.state === "down";
    const prepare = n.state === "prepare";
    const actions =
      n.role === "proxy"
        ? ""
        : `<div class="actions">
  <label>balance <input type="number" min="0" value="${esc(n.balance)}" data-balance></label>
  <button type="button" data-action="balance">set</button>
  ${down ? "" : '<button type="button" data-action="down" class="danger">mark down</button>'}
  ${prepare ? '<button type="button" data-action="activate">activate</button>' : ""}
</div>`;
    return `<div class="node${down ? " is-down" : ""}" data-node="${esc(name)}" data-role="${esc(n.role)}" data-state="${esc(n.state)}">
  <div class="node-head">
    <span class="badge role-${esc(n.role)}">${esc(n.role)}</span>
    <span class="badge state-${esc(n.state)}">${esc(n.state)}</span>
    <code>${esc(name)}</code>
    <span class="balance">balance <b>${esc(n.balance)}</b></span>
  </div>
  <dl class="figures">
    <div><dt class="series-ops">ops/s</dt><dd data-field="ops">–</dd></div>
    <div><dt>hit ratio</dt><dd data-field="hit">–</dd></div>
    <div><dt>items</dt><dd data-field="items">–</dd></div>
    <div><dt class="series-memory">memory</dt><dd data-field="memory">–</dd></div>
    <div><dt>connections</dt><dd data-field="connections">–</dd></div>
    <div><dt>repl. lag</dt><dd data-field="lag">–</dd></div>
  </dl>
  <div class="chart" data-chart="${esc(name)}"></div>
  ${actions}
</div>`;
  }

  function renderMap() {
    const partitions = new Map();
    const spare = [];
    for (const n of nodes) {
      if (n.role === "proxy" || n.partition < 0) spare.push(n);
      else {
        const list = partitions.get(n.partition) ?? [];
        list.push(n);
        partitions.set(n.partition, list);
      }
    }
    const order = { master: 0, slave: 1 };
    const cards = [...partitions.keys()]
      .sort((a, b) => a - b)
      .map((p) => {
        const members = partitions.get(p).sort((a, b) => order[a.role] - order[b.role]);
        const master = members.find((n) => n.role === "master");
        const badge =
          master === undefined
            ? '<span class="badge state-down">no master</span>'
            : master.state === "prepare"
              ? '<span class="badge state-prepare">preparing</span>'
              : master.state === "down"
                ? '<span class="badge state-down">master down</span>'
                : "";
        return `<article class="card" data-partition="${p}"><h3>partition ${p} ${badge}</h3>${members.map(nodeHtml).join("")}</article>`;
      });
    $("partitions").innerHTML = cards.join("") || '<p class="empty">no partition yet</p>';
    const options = [...partitions.keys()]
      .sort((a, b) => a - b)
      .map((p) => `<option value="${p}">${p}</option>`)
      .join("");
    $("spare").innerHTML =
      spare
        .map(
          (
            n,
          ) => `<div class="node spare" data-node="${esc(nodeName(n))}" data-role="${esc(n.role)}" data-state="${esc(n.state)}">
  <div class="node-head"><span class="badge role-${esc(n.role)}">${esc(n.role)}</span> <span class="badge state-${esc(n.state)}">${esc(n.state)}</span> <code>${esc(nodeName(n))}</code></div>
  ${
    n.role === "proxy" && n.state !== "down" && options !== ""
      ? `<div class="actions"><label>slave of partition <select data-partition>${options}</select></label>
  <label>balance <input type="number" min="0" value="1" data-balance></label>
  <button type="button" data-action="add-slave">add as slave</button></div>`
      : ""
  }
</div>`,
        )
        .join("") || '<p class="empty">none</p>';
    for (const chart of charts.values()) chart.destroy();
    charts.clear();
    for (const el of document.querySelectorAll("[data-chart]")) {
      const name = el.dataset.chart;
      charts.set(
        name,
        new uPlot(
          {
            width: Math.max(200, el.clientWidth),
            height: 90,
            legend: { show: false },
            cursor: { show: false },
            scales: { x: { time: true }, pct: { range: [0, 100] } },
            axes: [
              { show: false },
              { size: 56, stroke: "currentColor", grid: { show: false } },
              { side: 1, scale: "pct", size: 40, stroke: "currentColor", grid: { show: false } },
            ],
            series: [
              {},
              {
                label: "ops/s",
                stroke: "#2f7fd8",
                width: 1.5,
                fill: "rgba(47,127,216,0.12)",
                points: { show: false },
              },
              { label: "memory %", stroke: "#d8832f", width: 1.5, scale: "pct", points: { show: false } },
            ],
          },
          chartData(name),
          el,
        ),
      );
    }
  }

  function chartData(name) {
    const line = series.get(name) ?? { t: [], ops: [], mem: [] };
    return [line.t, line.ops, line.mem];
  }

  function updateFigures(latest) {
    for (const el of document.querySelectorAll("[data-node]")) {
      const s = latest[el.dataset.node];
      if (s === undefined) continue;
      const set = (field, text) => {
        const dd = el.querySelector(`[data-field="${field}"]`);
        if (dd !== null) dd.textContent = text;
      };
      set("ops", count(s.opsPerSecond));
      set("hit", percent(s.hitRatio));
      set("items", count(s.items));
      set("memory", s.limitBytes > 0 ? `${bytes(s.bytes)} / ${bytes(s.limitBytes)}` : bytes(s.bytes));
      set("connections", count(s.connections));
      set("lag", count(s.replicationLag));
    }
    for (const [name, chart] of charts) chart.setData(chartData(name));
  }

  function renderTimeline(timeline) {
    const head = `${timeline.length}:${timeline[0]?.mapVersion ?? ""}`;
    if (head === shownTimeline) return;
    shownTimeline = head;
    $("timeline").innerHTML =
      timeline
        .map((e) => {
          const failover = e.promoted !== undefined;
          const took = e.tookMs !== undefined ? ` · took ${e.tookMs} ms` : "";
          return `<li data-kind="${failover ? "failover" : "change"}" class="${failover ? "failover" : ""}">
  <time datetime="${new Date(e.at).toISOString()}">${new Date(e.at).toLocaleTimeString()}</time>
  <b>${failover ? `failover: ${esc(e.promoted)} promoted` : esc(e.what)}</b>
  <span class="events">${esc(e.events.join("; "))}</span>
  <span class="meta">map v${esc(e.mapVersion)}${took}</span>
</li>`;
        })
        .join("") || '<li class="empty">no change since this index started</li>';
  }

  function render(state) {
    $("map-version").textContent = `map v${state.version}`;
    $("leader").textContent = state.leading ? "leading index" : state.notLeader;
    if (state.history !== undefined) {
      for (const [name, samples] of Object.entries(state.history)) for (const s of samples) add(name, s);
    } else {
      for (const [name, s] of Object.entries(state.latest)) add(name, s);
    }
    if (state.version !== shownVersion) {
      nodes = state.nodes;
      shownVersion = state.version;
      renderMap();
    }
    updateFigures(state.latest);
    renderTimeline(state.timeline);
  }

  function say(text, ok) {
    const m = $("message");
    m.textContent = text;
    m.className = ok ? "ok" : "error";
  }

  async function change(path, body) {
    const headers = { "Content-Type": "application/json" };
    if (token.value !== "") headers.Authorization = `Bearer ${token.value}`;
    try {
      const res = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
      const answer = await res.json();
      if (res.ok) say(`done: map v${answer.version}`, true);
      else say(`refused: ${answer.error?.code}: ${answer.error?.message}`, false);
    } catch (err) {
      say(`failed: ${err.message}`, false);
    }
  }

  document.addEventListener("click", (ev) => {
    const button = ev.target.closest("button[data-action]");
    if (button === null) return;
    const el = button.closest("[data-node]");
    const n = nodes.find((x) => nodeName(x) === el.dataset.node);
    if (n === undefined) return;
    const path = `/v1/nodes/${encodeURIComponent(n.host)}/${n.port}`;
    const balance = Number(el.querySelector("[data-balance]")?.value);
    const name = nodeName(n);
    switch (button.dataset.action) {
      case "balance":
        if (confirm(`Set the balance of ${name} to ${balance}?`))
          change(`${path}/role`, { role: n.role, balance, partition: n.partition });
        break;
      case "down":
        if (confirm(`Mark ${name} down? A master is failed over to a slave.`))
          change(`${path}/state`, { state: "down" });
        break;
      case "activate":
        if (confirm(`Activate partition ${n.partition} (${name} starts serving it)?`))
          change(`${path}/state`, { state: "active" });
        break;
      case "add-slave": {
        const partition = Number(el.querySelector("[data-partition]").value);
        if (confirm(`Make ${name} a slave of partition ${partition} with balance ${balance}?`))
          change(`${path}/role`, { role: "slave", balance, partition });
        break;
      }
    }
  });

  // Charts follow the window's width.
  let resizing;
  window.addEventListener("resize", () => {
    clearTimeout(resizing);
    resizing = setTimeout(() => {
      for (const el of document.querySelectorAll("[data-chart]"))
        charts.get(el.dataset.chart)?.setSize({ width: Math.max(200, el.clientWidth), height: 90 });
    }, 100);
  });

  const live = $("live");
  const events = new EventSource("/v1/dashboard/events");
  events.addEventListener("state", (ev) => render(JSON.parse(ev.data)));
  events.onopen = () => {
    live.textContent = "● live";
    live.className = "pill live";
  };
  events.onerror = () => {
    live.textContent = "○ reconnecting";
    live.className = "pill";
  };
})();
