// hopscope web UI: a live flow list over /api/flows and the /api/events
// stream, with details fetched when a flow is opened. Plain JavaScript, no
// build step, nothing loaded from elsewhere.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, attrs = {}, ...kids) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k === "style") e.style.cssText = v; // CSSOM: allowed by the page's CSP, unlike a style attribute
    else if (k === "checked") e.checked = !!v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : v);
  }
  for (const kid of kids.flat()) {
    if (kid === null || kid === undefined || kid === false) continue;
    e.append(kid instanceof Node ? kid : document.createTextNode(String(kid)));
  }
  return e;
};

const state = {
  flows: new Map(), // id (a string: IDs pass 2^53) -> summary
  rows: new Map(), // id -> <tr>
  order: [], // ids, oldest first
  selected: null,
  detail: null, // Detail of the selected flow
  tab: "headers",
  query: "",
  typeFilter: "",
  paused: false,
  missed: 0,
  stats: null,
  ws: null, // WebSocket view state of the selected flow
  es: null,
  // One list per reload in flight: the live changes that arrived while it
  // waited. Its answer is a snapshot from some moment of that wait, so
  // they are applied again on top of it, in order (each flow ends at its
  // newest state), or a flow that arrived meanwhile would vanish.
  during: new Set(),
  reloads: 0, // reloads started; only the newest one's answer is drawn
};

// ---------- formatting ----------
function size(n) {
  if (n === undefined || n === null || n < 0) return "—";
  if (n < 1024) return n + " B";
  if (n < 1024 * 1024) return (n / 1024).toFixed(n < 10240 ? 1 : 0) + " KiB";
  if (n < 1024 * 1024 * 1024) return (n / 1048576).toFixed(1) + " MiB";
  return (n / 1073741824).toFixed(2) + " GiB";
}
function dur(ms) {
  if (!ms) return "—";
  if (ms < 1) return ms.toFixed(2) + " ms";
  if (ms < 1000) return ms.toFixed(ms < 10 ? 1 : 0) + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(2) + " s";
  return Math.floor(ms / 60000) + " min " + Math.round((ms % 60000) / 1000) + " s";
}
function clock(ms) {
  if (!ms) return "";
  const d = new Date(ms);
  const p = (n, w = 2) => String(n).padStart(w, "0");
  return `${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}.${p(d.getMilliseconds(), 3)}`;
}
const typeLabel = { http: "HTTP", bumped: "HTTPS", websocket: "WS", tunnel: "Tunnel", denied: "Denied", fault: "Fault" };
function statusClass(s) { return "st-" + (s ? Math.floor(s / 100) : 0); }

function toast(msg) {
  const t = $("#toast");
  t.textContent = msg;
  t.hidden = false;
  clearTimeout(toast.timer);
  toast.timer = setTimeout(() => (t.hidden = true), 2200);
}

async function api(path, opts) {
  const r = await fetch(path, Object.assign({ credentials: "same-origin" }, opts));
  if (!r.ok) {
    let msg = r.status + " " + r.statusText;
    try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON */ }
    throw new Error(msg);
  }
  return r;
}

// ---------- flow list ----------
function matchesType(s) {
  if (!state.typeFilter) return true;
  if (state.typeFilter === "fault") return s.type === "fault" || s.faults > 0;
  return s.type === state.typeFilter;
}

function rowFor(s) {
  const tr = el("tr", { "data-id": s.id });
  tr.addEventListener("click", () => select(s.id));
  fillRow(tr, s);
  return tr;
}

function fillRow(tr, s) {
  tr.className = [s.type === "denied" ? "denied" : "", s.open ? "open" : "", state.selected === s.id ? "sel" : ""].join(" ").trim();
  const ct = s.type === "websocket" ? `${s.messages || 0} message${s.messages === 1 ? "" : "s"}` : s.type === "tunnel" ? "" : (s.content_type || "");
  tr.replaceChildren(
    el("td", { class: "seq", text: s.seq }),
    el("td", { class: "type" }, el("span", { class: "badge t-" + s.type, text: typeLabel[s.type] || s.type }),
      s.faults ? el("span", { class: "fault-mark", title: s.faults + " fault(s) injected", text: "⚡" }) : null),
    el("td", { class: "method", text: s.method }),
    el("td", { class: "status " + statusClass(s.status), text: s.status || (s.open ? "" : "—") }),
    el("td", { class: "host", title: s.host, text: s.host }),
    el("td", { class: "path", title: s.path, text: s.path }),
    el("td", { class: "ct", title: ct, text: ct }),
    // A tunnel counts its bytes when it ends: "0 B" while open would be wrong.
    el("td", { class: "size", text: s.open && s.type === "tunnel" && !s.size ? "…" : size(s.size) }),
    el("td", { class: "time", text: s.open && !s.duration ? "…" : dur(s.duration) }),
    el("td", { class: "note c-note", title: (s.error ? s.error + " — " : "") + (s.note || ""), text: s.error ? "⚠ " + s.error : (s.note || "") }),
  );
}

function upsert(s) {
  const known = state.flows.has(s.id);
  state.flows.set(s.id, s);
  let tr = state.rows.get(s.id);
  if (!matchesType(s)) {
    if (tr) { tr.remove(); state.rows.delete(s.id); }
  } else if (tr) {
    fillRow(tr, s);
  } else {
    tr = rowFor(s);
    state.rows.set(s.id, tr);
    insertRow(tr, s);
  }
  if (!known) state.order.push(s.id);
  updateEmpty();
  if (state.selected === s.id && state.detail) refreshDetailSoon();
}

function insertRow(tr, s) {
  const body = $("#rows");
  // Rows stay in arrival order: most arrive last.
  let next = null;
  for (let i = body.children.length - 1; i >= 0; i--) {
    const c = body.children[i];
    const cs = state.flows.get(c.dataset.id);
    if (cs && cs.seq > s.seq) next = c; else break;
  }
  body.insertBefore(tr, next);
}

// Live rows are applied in batches, at most every 100 ms: a burst of
// thousands of flows costs one layout per batch.
let flowQueue = [];
let flowTimer = null;
function queueFlow(s) {
  flowQueue.push(s);
  if (!flowTimer) flowTimer = setTimeout(flushFlows, 100);
}
function flushFlows() {
  flowTimer = null;
  const list = $("#list");
  const atBottom = list.scrollTop + list.clientHeight >= list.scrollHeight - 30;
  const batch = flowQueue;
  flowQueue = [];
  const latest = new Map();
  for (const s of batch) latest.set(s.id, s); // a flow's newest row wins
  for (const s of latest.values()) liveFlow(s);
  if (atBottom) list.scrollTop = list.scrollHeight;
  setStats(state.stats);
}

function removeFlow(id) {
  state.flows.delete(id);
  const tr = state.rows.get(id);
  if (tr) tr.remove();
  state.rows.delete(id);
  updateEmpty();
}

function updateEmpty() {
  const e = $("#empty");
  e.hidden = state.rows.size > 0;
  if (e.hidden) return;
  const html = state.flows.size > 0 || state.query
    ? "<p><b>No flow matches the filter.</b></p>"
    : "<p><b>No flows yet.</b></p><p>Point a browser or <code>curl -x</code> at hopscope and traffic appears here as it happens.</p>";
  if (e.innerHTML !== html) e.innerHTML = html;
}

async function reload() {
  let data;
  const during = [];
  const mine = ++state.reloads;
  state.during.add(during);
  try {
    data = await (await api("/api/flows?q=" + encodeURIComponent(state.query))).json();
    $("#qerror").textContent = "";
    $("#q").classList.remove("bad");
  } catch (e) {
    $("#qerror").textContent = e.message;
    return;
  } finally {
    state.during.delete(during);
  }
  // A newer reload is under way (the filter changed, the store was
  // cleared): its answer, newer than this one, will be drawn instead.
  if (mine !== state.reloads) return;
  state.flows.clear();
  state.rows.clear();
  state.order = [];
  $("#rows").replaceChildren();
  const frag = document.createDocumentFragment();
  for (const s of data.flows) {
    state.flows.set(s.id, s);
    state.order.push(s.id);
    if (!matchesType(s)) continue;
    const tr = rowFor(s);
    state.rows.set(s.id, tr);
    frag.append(tr);
  }
  $("#rows").append(frag);
  for (const [kind, v] of during) {
    if (kind === "flow") liveFlow(v);
    else removeFlow(v);
  }
  const list = $("#list");
  list.scrollTop = list.scrollHeight;
  setStats(data.stats);
  updateEmpty();
}

// liveFlow applies a flow's live change to the list.
function liveFlow(s) {
  if (state.query && !state.flows.has(s.id)) { reloadSoon(); return; }
  upsert(s);
}

function setStats(st) {
  if (!st) return;
  state.stats = st;
  const n = (v) => (typeof v === "number" ? v : 0);
  $("#st-flows").textContent = `${state.rows.size} shown · ${n(st.flows)} flows, ${n(st.messages)} messages in the store`;
  $("#st-bytes").textContent = st.max_bytes ? `${size(n(st.bytes))} of ${size(st.max_bytes)} used` + (st.evicted_flows ? ` · ${st.evicted_flows} flows and ${n(st.evicted_messages)} messages evicted` : "") : "";
}

// ---------- live stream ----------
let reloadTimer = null;
function reloadSoon() {
  clearTimeout(reloadTimer);
  reloadTimer = setTimeout(reload, 250);
}

// resyncSoon reloads what the page shows after the stream dropped changes
// (traffic faster than the browser reads it): at most twice a second, so
// a flood of resyncs does not become a flood of reloads.
let resyncTimer = null;
function resyncSoon() {
  if (resyncTimer) return;
  resyncTimer = setTimeout(() => {
    resyncTimer = null;
    reload();
    if (state.ws && state.tab === "messages") renderTab(); // its missed messages too
  }, 500);
}

function connect() {
  const es = new EventSource("/api/events");
  state.es = es;
  const live = $("#live");
  es.onopen = () => { setLive(); reload(); };
  es.onerror = () => { live.className = "live off"; live.textContent = "reconnecting"; };
  es.addEventListener("flow", (ev) => {
    if (state.paused) { state.missed++; setLive(); return; }
    const s = JSON.parse(ev.data);
    for (const d of state.during) d.push(["flow", s]);
    queueFlow(s);
  });
  es.addEventListener("message", (ev) => {
    if (state.paused) return;
    const m = JSON.parse(ev.data);
    if (state.query && !state.flows.has(m.flow)) reloadSoon();
    if (state.ws && state.ws.id === m.flow) wsAppend(m.message);
  });
  es.addEventListener("evict", (ev) => {
    if (state.paused) return;
    const id = JSON.parse(ev.data).id;
    for (const d of state.during) d.push(["evict", id]);
    removeFlow(id);
  });
  es.addEventListener("clear", () => { if (!state.paused) { reload(); closeDetail(); } });
  es.addEventListener("resync", () => { if (!state.paused) resyncSoon(); });
  es.addEventListener("stats", (ev) => setStats(JSON.parse(ev.data)));
}

function setLive() {
  const live = $("#live");
  if (state.paused) {
    live.className = "live paused";
    live.textContent = state.missed ? `paused · ${state.missed} new` : "paused";
  } else {
    live.className = "live on";
    live.textContent = "live";
  }
}

// ---------- detail ----------
async function select(id) {
  if (state.selected !== null) {
    const old = state.rows.get(state.selected);
    if (old) old.classList.remove("sel");
  }
  state.selected = id;
  const tr = state.rows.get(id);
  if (tr) tr.classList.add("sel");
  $("#detail").hidden = false;
  $("#splitter").hidden = false;
  $("#main").classList.add("narrow");
  await loadDetail(true);
}

async function loadDetail(first) {
  const id = state.selected;
  let d;
  try {
    d = await (await api("/api/flows/" + id)).json();
  } catch (e) {
    $("#tab-body").replaceChildren(el("div", { class: "error-box", text: e.message }));
    return;
  }
  if (state.selected !== id) return;
  state.detail = d;
  const s = d.summary;
  const badge = $("#d-type");
  badge.className = "badge t-" + s.type;
  badge.textContent = typeLabel[s.type] || s.type;
  $("#d-method").textContent = s.method;
  $("#d-url").textContent = d.url || s.host + s.path;
  $("#d-url").title = d.url || s.host;
  $("#curl").hidden = !d.request_headers;
  const tabs = [["headers", d.request_headers ? "Headers" : "Overview"]];
  if (d.request_headers) tabs.push(["request", "Request"], ["response", "Response"]);
  if (s.type === "websocket" || (d.records && d.records.session)) tabs.push(["messages", "Messages", s.messages]);
  tabs.push(["timing", "Timing"], ["record", "Record"]);
  if (first) {
    const want = s.type === "websocket" ? "messages" : state.tab;
    state.tab = tabs.some((t) => t[0] === want) ? want : "headers";
  }
  if (!tabs.some((t) => t[0] === state.tab)) state.tab = "headers";
  $("#tabs").replaceChildren(...tabs.map(([key, label, count]) =>
    el("button", { class: state.tab === key ? "on" : "", role: "tab", "data-tab": key, onclick: () => { state.tab = key; loadDetail(false); } },
      label, count ? el("span", { class: "count", text: count }) : null)));
  if (!first && state.tab === "messages" && state.ws && state.ws.id === id) {
    wsUpdateCounts();
    return; // the timeline follows the stream; don't rebuild it
  }
  renderTab();
}

let detailTimer = null;
function refreshDetailSoon() {
  clearTimeout(detailTimer);
  detailTimer = setTimeout(() => {
    if (state.tab === "request" || state.tab === "response") return; // bodies don't change under the reader
    loadDetail(false);
  }, 300);
}

function closeDetail() {
  const tr = state.rows.get(state.selected);
  if (tr) tr.classList.remove("sel");
  state.selected = null;
  state.detail = null;
  state.ws = null;
  $("#detail").hidden = true;
  $("#splitter").hidden = true;
  $("#main").classList.remove("narrow");
}

function renderTab() {
  const body = $("#tab-body");
  const d = state.detail;
  if (state.tab !== "messages") state.ws = null;
  body.scrollTop = 0;
  switch (state.tab) {
    case "headers": body.replaceChildren(...headersTab(d)); break;
    case "request": body.replaceChildren(bodyView(d, "request")); break;
    case "response": body.replaceChildren(bodyView(d, "response")); break;
    case "messages": body.replaceChildren(wsView(d)); break;
    case "timing": body.replaceChildren(timingTab(d)); break;
    case "record": body.replaceChildren(el("pre", { class: "body" }, jsonHighlight(JSON.stringify(d, null, 2)))); break;
  }
}

// flowLink opens another flow (a tunnel, an exchange inside one).
function flowLink(id, label) {
  const f = state.flows.get(id);
  return el("a", { href: "#", class: "flow-link", onclick: (e) => { e.preventDefault(); select(id); } },
    label || (f ? `#${f.seq} ${f.method} ${f.host}` : `flow ${id}`));
}

function kvTable(rows) {
  return el("table", { class: "kv" }, rows.filter((r) => r && r[1] !== undefined && r[1] !== null && r[1] !== "").map(([k, v]) =>
    el("tr", {}, el("td", { text: k }), el("td", {}, v instanceof Node ? v : String(v)))));
}

function headerTable(headers) {
  if (!headers || headers.length === 0) return el("div", { class: "muted", text: "none" });
  return el("table", { class: "kv" }, headers.map((h) =>
    el("tr", { class: h.hop ? "hop" : "", title: h.hop ? "hop-by-hop: meant for the next hop only; a proxy does not forward it (RFC 9110 §7.6.1)" : "" },
      el("td", {}, h.name, h.hop ? el("span", { class: "hop-tag", text: "hop" }) : null),
      el("td", { text: h.value }))));
}

function section(title, hint, ...content) {
  return el("div", { class: "section" }, el("h4", {}, title, hint ? el("span", { class: "hint", text: hint }) : null), ...content);
}

function headersTab(d) {
  const s = d.summary;
  const r = d.records || {};
  const out = [];
  if (r.denial) {
    out.push(el("div", { class: "denial-box" }, el("b", { text: `Denied by rule ${r.denial.Rule} (${r.denial.Status})` }), el("br"), r.denial.Reason || "",
      r.denial.Hint ? el("div", { class: "denial-hint", text: r.denial.Hint }) : null));
  }
  if (s.error) out.push(el("div", { class: "error-box", text: s.error }));
  for (const f of (r.faults || [])) {
    out.push(el("div", { class: "fault-box" }, el("b", { text: "⚡ fault " + f.Fault }), " ", f.Spec ? el("code", { text: f.Spec }) : null, el("br"), f.Detail || "", f.From ? ` (from ${f.From})` : "", f.Message ? ` at message ${f.Message}` : ""));
  }
  const gen = [
    ["URL", d.url],
    ["Method", s.method],
    ["Status", s.status ? el("span", { class: statusClass(s.status), text: s.status }) : (s.open ? "in progress" : "")],
    ["Protocol", d.proto],
    ["Type", typeLabel[s.type] || s.type],
    ["Decision", s.note],
    ["Answered by", d.answered_by],
    ["Client", s.client],
    ["Started", s.start ? new Date(s.start).toLocaleString() + " (" + clock(s.start) + ")" : ""],
    ["Duration", s.duration ? dur(s.duration) : ""],
    ["Response size", s.size >= 0 && d.request_headers ? size(s.size) : ""],
    ["Flow", `#${s.seq} (id ${s.id})`],
    ["Inside tunnel", d.tunnel_id ? flowLink(d.tunnel_id) : ""],
  ];
  out.push(section("General", "", kvTable(gen)));
  if (s.type === "tunnel") {
    const inner = [...state.flows.values()].filter((f) => f.tunnel === s.id);
    if (inner.length) {
      out.push(section("Inside this tunnel", `${inner.length} flow${inner.length === 1 ? "" : "s"}`,
        el("table", { class: "kv" }, inner.map((f) => el("tr", {}, el("td", {}, flowLink(f.id, `#${f.seq} ${f.method}`)),
          el("td", { text: `${f.status || "…"} ${f.path || f.host}` }))))));
    }
  }
  if (r.tunnel) {
    const t = r.tunnel;
    out.push(section("Tunnel", t.Mode === "bump" ? "TLS opened with hopscope's CA" : t.Mode === "splice" ? "bytes copied blind" : "", kvTable([
      ["Target", `${t.Host}:${t.Port}`], ["Mode", t.Mode], ["Status", t.Status], ["Bytes up", s.open ? "counted when the tunnel ends" : size(t.BytesUp)], ["Bytes down", s.open ? "counted when the tunnel ends" : size(t.BytesDown)],
      ["SNI", t.SNI], ["TLS", t.TLSVersion], ["ALPN", t.ALPN], ["Leaf", t.Leaf], ["Error", t.Error]])));
  }
  if (r.session) {
    const ss = r.session;
    out.push(section("WebSocket", ss.Path ? ss.Path + " path" : "", kvTable([
      ["URL", ss.URL], ["Subprotocol", ss.Subprotocol], ["Extensions", ss.Extensions],
      ["Accept", ss.AcceptMismatch ? "Sec-WebSocket-Accept did not match" : ""],
      ["Close", ss.Code ? `${ss.Code}${ss.Reason ? " “" + ss.Reason + "”" : ""} by ${ss.ClosedBy}` : ""],
      ["Client → server", s.open ? "counted when the session ends (the Messages tab shows them live)" : `${ss.ClientMessages} messages, ${size(ss.ClientBytes)}`],
      ["Server → client", s.open ? "counted when the session ends" : `${ss.ServerMessages} messages, ${size(ss.ServerBytes)}`],
      ["Error", ss.Error]])));
  }
  if (d.request_headers) {
    const hop = (d.request_headers || []).filter((h) => h.hop).length + (d.response_headers || []).filter((h) => h.hop).length;
    out.push(section("Request headers", hop ? `${hop} hop-by-hop field(s) marked — hopscope does not pass those on` : "", headerTable(d.request_headers)));
    out.push(section("Response headers", "", headerTable(d.response_headers)));
  }
  return out;
}

// ---------- bodies ----------
function bodyView(d, side) {
  const info = side === "request" ? d.request_body : d.response_body;
  const wrap = el("div");
  if (!info || (info.len <= 0 && info.kept === 0)) {
    wrap.append(el("div", { class: "section muted", text: info && info.len < 0 ? "The body did not complete." : "No body." }));
    return wrap;
  }
  const bar = el("div", { class: "viewer-bar" });
  const out = el("div");
  wrap.append(bar, out);
  const base = `/api/flows/${d.summary.id}/body/${side}`;
  api(base).then(async (r) => {
    const buf = new Uint8Array(await r.arrayBuffer());
    const decoded = r.headers.get("X-Hopscope-Decoded");
    const decErr = r.headers.get("X-Hopscope-Decode-Error");
    const cut = r.headers.get("X-Hopscope-Truncated");
    const facts = [size(info.len) + " on the wire"];
    if (info.type) facts.push(info.type);
    if (decoded) facts.push(`decoded from ${decoded} → ${size(buf.length)}`);
    if (decErr) facts.push("could not decode: " + decErr);
    if (cut || info.truncated) facts.push(`showing the first ${size(info.kept)} kept`);
    viewer(bar, out, buf, info.type || "", facts, base + "?download=1");
  }).catch((e) => out.replaceChildren(el("div", { class: "error-box", text: e.message })));
  return wrap;
}

function isText(buf) {
  try { new TextDecoder("utf-8", { fatal: true }).decode(buf.subarray(0, Math.min(buf.length, 65536))); return true; } catch (_) { return buf.length > 65536; }
}

// viewer fills bar and out with a Pretty/Text/Hex switch over buf.
function viewer(bar, out, buf, type, facts, downloadURL, extra) {
  const text = isText(buf);
  let json = null;
  if (text && buf.length > 0) {
    const s = new TextDecoder().decode(buf);
    if (/json/.test(type) || /^\s*[[{]/.test(s)) { try { json = JSON.parse(s); } catch (_) { json = null; } }
  }
  const modes = [];
  if (json !== null) modes.push("JSON");
  if (text) modes.push("Text");
  modes.push("Hex");
  let mode = modes[0];
  const seg = el("span", { class: "seg" });
  const draw = () => {
    seg.replaceChildren(...modes.map((m) => el("button", { class: m === mode ? "on" : "", onclick: () => { mode = m; draw(); } }, m)));
    if (mode === "JSON") out.replaceChildren(el("pre", { class: "body" }, jsonHighlight(JSON.stringify(json, null, 2))));
    else if (mode === "Text") out.replaceChildren(el("pre", { class: "body", text: new TextDecoder().decode(buf) }));
    else out.replaceChildren(hexView(buf));
  };
  bar.replaceChildren(...[seg,
    el("button", { title: "Copy as text", onclick: () => copy(mode === "Hex" ? hexText(buf) : new TextDecoder().decode(buf)) }, "Copy"),
    downloadURL ? el("a", { class: "button", href: downloadURL, download: "" }, "⤓ Download") : null,
    extra, el("span", { class: "facts", text: facts.join(" · ") })].filter(Boolean));
  draw();
}

function jsonHighlight(s) {
  const frag = document.createDocumentFragment();
  const re = /("(?:\\.|[^"\\])*")(\s*:)?|\b(-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)\b|\b(true|false|null)\b/g;
  let last = 0, m;
  while ((m = re.exec(s)) !== null) {
    if (m.index > last) frag.append(s.slice(last, m.index));
    if (m[1]) {
      frag.append(el("span", { class: m[2] ? "j-key" : "j-str", text: m[1] }));
      if (m[2]) frag.append(m[2]);
    } else if (m[3]) frag.append(el("span", { class: "j-num", text: m[3] }));
    else frag.append(el("span", { class: "j-lit", text: m[4] }));
    last = re.lastIndex;
  }
  frag.append(s.slice(last));
  return frag;
}

const hexLimit = 64 * 1024;
function hexText(buf) {
  const lines = [];
  const n = Math.min(buf.length, hexLimit);
  for (let off = 0; off < n; off += 16) {
    const row = buf.subarray(off, Math.min(off + 16, n));
    const hex = Array.from(row, (b) => b.toString(16).padStart(2, "0")).join(" ");
    const asc = Array.from(row, (b) => (b >= 32 && b < 127 ? String.fromCharCode(b) : ".")).join("");
    lines.push(off.toString(16).padStart(8, "0") + "  " + hex.padEnd(48) + "  " + asc);
  }
  return lines.join("\n");
}
function hexView(buf) {
  const pre = el("pre", { class: "body hex" });
  pre.textContent = hexText(buf);
  if (buf.length > hexLimit) pre.append(el("div", { class: "muted", text: `… ${size(buf.length - hexLimit)} more (download to see all)` }));
  if (buf.length === 0) pre.textContent = "(empty)";
  return pre;
}

function copy(text) {
  const done = () => toast("Copied");
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(text).then(done, () => fallbackCopy(text, done));
  } else fallbackCopy(text, done);
}
function fallbackCopy(text, done) {
  const ta = el("textarea", { style: "position:fixed;opacity:0" });
  ta.value = text;
  document.body.append(ta);
  ta.select();
  try { document.execCommand("copy"); done(); } catch (_) { toast("Copy failed"); }
  ta.remove();
}

// ---------- timing ----------
function timingTab(d) {
  const s = d.summary;
  const wrap = el("div", { class: "timing" });
  const total = s.duration || 0;
  const fb = d.first_byte || 0;
  wrap.append(kvTable([
    ["Started", s.start ? new Date(s.start).toISOString() : ""],
    ["Waiting (to first byte)", fb ? dur(fb) : ""],
    ["Receiving", fb && total ? dur(Math.max(0, total - fb)) : ""],
    ["Total", dur(total)],
  ]));
  if (total > 0) {
    const bar = el("div", { class: "tbar" });
    const wp = Math.min(100, (fb / total) * 100);
    bar.append(el("div", { class: "wait", style: `width:${wp}%` }), el("div", { class: "recv", style: `left:${wp}%;width:${100 - wp}%` }));
    wrap.append(bar, el("div", { class: "muted", text: "blue: waiting for the answer's head · green: the rest of the exchange (body, or the WebSocket's life)" }));
  }
  return wrap;
}

// ---------- copy as curl ----------
function shq(s) { return "'" + String(s).replace(/'/g, "'\\''") + "'"; }
async function curlFor(d) {
  const parts = ["curl"];
  const s = d.summary;
  if (s.method !== "GET") parts.push("-X", s.method);
  parts.push(shq(d.url));
  for (const h of d.request_headers || []) {
    if (h.hop || /^(host|content-length|sec-websocket-.*)$/i.test(h.name)) continue;
    parts.push("-H", shq(h.name + ": " + h.value));
  }
  if (d.request_body && d.request_body.kept > 0) {
    const buf = new Uint8Array(await (await api(`/api/flows/${s.id}/body/request?decode=0`)).arrayBuffer());
    if (isText(buf)) parts.push("--data-raw", shq(new TextDecoder().decode(buf)));
    else parts.push("--data-binary", "@body.bin");
  }
  if ((d.request_headers || []).some((h) => /^accept-encoding$/i.test(h.name))) parts.push("--compressed");
  return parts.join(" ");
}

// ---------- WebSocket timeline ----------
const wsTail = 2000; // messages fetched when a session opens
const wsLiveCap = 5000; // messages the timeline holds while following
function wsView(d) {
  const id = d.summary.id;
  const ws = {
    id, msgs: [], pending: [], flushTimer: null, follow: true, text: "", show: { client: true, server: true, control: true }, selected: null,
    events: wsEvents(d),
  };
  state.ws = ws;
  const filter = el("input", { type: "search", placeholder: "Filter messages", "aria-label": "Filter messages" });
  filter.addEventListener("input", () => { ws.text = filter.value; wsRedraw(); });
  const toggle = (key, label, title) => {
    const b = el("button", { class: "on", title }, label);
    b.addEventListener("click", () => { ws.show[key] = !ws.show[key]; b.classList.toggle("on", ws.show[key]); wsRedraw(); });
    return b;
  };
  const follow = el("input", { type: "checkbox", checked: true });
  follow.addEventListener("change", () => { ws.follow = follow.checked; if (ws.follow) wsScroll(); });
  ws.counts = el("span", { class: "ws-counts" });
  ws.tbody = el("tbody");
  ws.list = el("div", { class: "ws-list" }, el("table", {},
    el("colgroup", {}, el("col", { class: "w-dir" }), el("col", { class: "w-seq" }), el("col", { class: "w-time" }), el("col", { class: "w-op" }), el("col"), el("col", { class: "w-len" }), el("col", { class: "w-wire" }), el("col", { class: "w-act" })),
    el("thead", {}, el("tr", {}, el("th", { title: "↑ client to server, ↓ server to client" }, ""), el("th", { text: "#" }), el("th", { text: "Time" }), el("th", { text: "Opcode" }), el("th", { text: "Data (inflated)" }), el("th", { class: "num", text: "Size" }), el("th", { text: "On the wire" }), el("th", { text: "Action" }))),
    ws.tbody));
  ws.list.addEventListener("scroll", () => {
    const atBottom = ws.list.scrollTop + ws.list.clientHeight >= ws.list.scrollHeight - 20;
    if (!atBottom && ws.follow && !ws.autoscrolling) { ws.follow = false; follow.checked = false; }
    ws.autoscrolling = false;
  });
  ws.detail = el("div", { class: "ws-detail" }, el("div", { class: "section muted", text: "Select a message to see its payload." }));
  const view = el("div", { class: "ws" },
    el("div", { class: "ws-bar" }, filter,
      el("span", { class: "seg" }, toggle("client", "↑ Sent", "client to server"), toggle("server", "↓ Received", "server to client"), toggle("control", "Control", "ping, pong, close")),
      el("label", { title: "Scroll to new messages as they arrive" }, follow, "Follow"),
      ws.counts),
    ws.list, ws.detail);
  const load = (all) => api(`/api/flows/${id}/messages?tail=${all ? wsLiveCap : wsTail}`).then(async (r) => {
    const data = await r.json();
    if (state.ws !== ws) return;
    const c = data.counts || {};
    ws.earlier = Math.max(0, (c.Kept || 0) - data.messages.length);
    ws.loadEarlier = () => load(true);
    const seen = new Set(ws.msgs.map((m) => m.seq));
    ws.msgs = data.messages.concat(ws.msgs.filter((m) => !data.messages.some((x) => x.seq === m.seq)));
    ws.msgs.sort((a, b) => a.seq - b.seq);
    void seen;
    wsRedraw();
  }).catch((e) => ws.tbody.replaceChildren(el("tr", {}, el("td", { colspan: 8, class: "error-box", text: e.message }))));
  load(false);
  wsUpdateCounts();
  return view;
}

// wsEvents turns a session's faults, violations and close into timeline
// rows, placed by time among the messages.
function wsEvents(d) {
  const r = d.records || {};
  const out = [];
  for (const f of r.faults || []) out.push({ event: "fault", time: Date.parse(f.Time), text: `⚡ fault ${f.Fault}${f.Detail ? ": " + f.Detail : ""}`, from: f.From, message: f.Message });
  for (const v of r.violations || []) out.push({ event: "violation", time: Date.parse(v.Time), text: `✖ ${v.Side === 1 ? "server" : "client"} broke the protocol: ${v.Violation} → sent ${v.Code}` });
  const ss = r.session;
  if (ss && ss.Code && !d.summary.open) {
    // Last, whatever the clocks say: the relay ends after the closes.
    out.push({ event: "end", time: Infinity, text: `session ended: ${ss.Code}${ss.Reason ? " “" + ss.Reason + "”" : ""}${ss.ClosedBy ? " by " + ss.ClosedBy : ""}${ss.CloseHandshake === false ? " (no close frame)" : ""}` });
  }
  return out;
}

// wsAppend queues a live message; wsFlush adds the queue to the timeline
// at most every 100 ms, so a session of thousands of messages a second
// costs the page one layout per flush, not one per message.
function wsAppend(m) {
  const ws = state.ws;
  ws.pending.push(m);
  if (!ws.flushTimer) ws.flushTimer = setTimeout(() => wsFlush(ws), 100);
}

function wsFlush(ws) {
  ws.flushTimer = null;
  if (state.ws !== ws) return;
  const last = ws.msgs.length ? ws.msgs[ws.msgs.length - 1].seq : 0;
  const fresh = ws.pending.filter((m) => m.seq > last || !ws.msgs.some((x) => x.seq === m.seq));
  ws.pending = [];
  if (!fresh.length) return;
  fresh.sort((a, b) => a.seq - b.seq);
  const frag = document.createDocumentFragment();
  for (const m of fresh) {
    ws.msgs.push(m);
    if (wsVisible(m)) frag.append(wsRow(m));
  }
  ws.tbody.append(frag);
  if (ws.msgs.length > wsLiveCap + wsLiveCap / 10) {
    // A chatty session must not grow the page without bound: the oldest
    // rows go, as they do in the store.
    const gone = ws.msgs.splice(0, ws.msgs.length - wsLiveCap);
    ws.earlier = (ws.earlier || 0) + gone.length;
    const goneSeqs = new Set(gone.map((g) => g.seq));
    for (const tr of Array.from(ws.tbody.children)) {
      if (!tr.dataset.seq) continue; // the "earlier" row and event rows stay
      if (!goneSeqs.has(+tr.dataset.seq)) break;
      tr.remove();
    }
  }
  if (ws.follow) wsScroll();
  wsUpdateCounts();
}

function wsScroll() {
  const ws = state.ws;
  ws.autoscrolling = true;
  ws.list.scrollTop = ws.list.scrollHeight;
}

function wsVisible(m) {
  const ws = state.ws;
  const control = m.opcode >= 8;
  if (control && !ws.show.control) return false;
  if (!control && !ws.show[m.from]) return false;
  if (ws.text) {
    const t = ws.text.toLowerCase();
    const hay = (m.preview + " " + (m.close_reason || "") + " " + m.type + " " + (m.rule || "") + " " + (m.action || "")).toLowerCase();
    if (!hay.includes(t)) return false;
  }
  return true;
}

function wsRedraw() {
  const ws = state.ws;
  const rows = [];
  let evs = ws.text ? [] : ws.events.slice().sort((a, b) => a.time - b.time);
  const after = wsAnchorFaults(evs);
  evs = evs.filter((e) => !e.anchor);
  let ei = 0;
  for (const m of ws.msgs) {
    while (ei < evs.length && evs[ei].time < m.time) rows.push(wsEventRow(evs[ei++]));
    if (wsVisible(m)) rows.push(wsRow(m));
    for (const e of after.get(m.seq) || []) rows.push(wsEventRow(e));
  }
  while (ei < evs.length) rows.push(wsEventRow(evs[ei++]));
  if (ws.earlier > 0 && !ws.text) {
    rows.unshift(el("tr", { class: "m-more" }, el("td", { colspan: 8 }, `${ws.earlier} earlier messages are kept but not shown. `,
      el("button", { onclick: () => ws.loadEarlier() }, "Load them"))));
  }
  ws.tbody.replaceChildren(...rows);
  if (ws.msgs.length === 0 && evs.length === 0) ws.tbody.append(el("tr", {}, el("td", { colspan: 8, class: "muted", text: "No messages yet — they appear here as they cross." })));
  if (ws.follow) wsScroll();
  wsUpdateCounts();
}

// searchedText is the message text the flow filter looks for (msg:word,
// or a plain word), so the timeline marks why a session matched.
function searchedText() {
  const m = state.query.match(/(?:^|\s)(?:msg:|body:)?("([^"]+)"|[^\s"~:-][^\s:]*)(?=\s|$)/);
  return m ? (m[2] || m[1]) : "";
}

function highlight(text, needle) {
  if (!needle) return text;
  const frag = document.createDocumentFragment();
  const lower = text.toLowerCase(), n = needle.toLowerCase();
  let i = 0, j;
  while ((j = lower.indexOf(n, i)) >= 0) {
    frag.append(text.slice(i, j), el("span", { class: "hl", text: text.slice(j, j + n.length) }));
    i = j + n.length;
  }
  frag.append(text.slice(i));
  return frag;
}

function wsRow(m) {
  const ws = state.ws;
  const control = m.opcode >= 8;
  let data = m.preview;
  if (m.type === "close") data = m.close_code ? `${m.close_code}${m.close_reason ? " “" + m.close_reason + "”" : ""}` : "(no code)";
  else if ((m.type === "ping" || m.type === "pong") && !data) data = "(empty)";
  else if (!data && m.len === 0) data = "(empty)";
  else if (!data && m.kept === 0) data = "(payload not kept)";
  const cls = ["m-" + m.from, control ? "m-ctl" : "", m.action === "drop" ? "m-drop" : "", ws.selected === m.seq ? "sel" : ""].join(" ");
  const wire = [];
  if (m.compressed) wire.push(`deflate ${size(m.payload_len)}`);
  wire.push(`${size(m.wire_len)} framed`);
  const tr = el("tr", { class: cls, "data-seq": m.seq, title: m.note || "" },
    el("td", { class: "dir dir-" + m.from, title: m.from === "client" ? "client → server" : "server → client", text: m.from === "client" ? "↑" : "↓" }),
    el("td", { class: "muted", text: m.seq }),
    el("td", { class: "time", text: clock(m.time) }),
    el("td", {}, el("span", { class: "op op-" + m.type, text: m.type }), m.fragments > 1 ? el("span", { class: "frag", title: `${m.fragments} fragments`, text: "×" + m.fragments }) : null),
    el("td", { class: "data" }, highlight(data, ws.text || searchedText()), m.replacement ? el("span", { class: "muted", text: "  → " + m.replacement }) : null),
    el("td", { class: "len", text: size(m.len) + (m.truncated ? "+" : "") }),
    el("td", { class: "wire", title: m.compressed ? "permessage-deflate: compressed payload, then the whole message with frame headers" : "the whole message with frame headers", text: wire.join(" · ") }),
    el("td", {}, m.action && m.action !== "pass" ? el("span", { class: "act act-" + m.action, title: m.rule ? "rule " + m.rule : "", text: { drop: "dropped", rewrite: "rewritten", close: "closed" }[m.action] || m.action }) : null,
      m.note && /fault/i.test(m.note) ? el("span", { class: "fault-mark", title: m.note, text: "⚡" }) : null));
  tr.addEventListener("click", () => wsSelect(m));
  return tr;
}

// wsAnchorFaults places each message fault right after the message it
// acted on, which its number names (the Nth data message from its side),
// rather than where its clock puts it: a fault is recorded as the message
// is decided, often in the same millisecond as the messages before it.
// It returns the faults by the seq of their message, marked anchor.
function wsAnchorFaults(evs) {
  const after = new Map();
  const ws = state.ws;
  for (const e of evs) {
    e.anchor = false;
    if (e.shown) e.text = e.shown;
  }
  if (ws.earlier > 0) return after; // the counts would start mid-session
  const nth = { client: new Map(), server: new Map() };
  const count = { client: 0, server: 0 };
  for (const m of ws.msgs) {
    if (m.opcode >= 8 || !nth[m.from]) continue;
    if (m.opcode !== 0) nth[m.from].set(++count[m.from], m);
  }
  for (const e of evs) {
    if (e.event !== "fault" || !e.message || !nth[e.from]) continue;
    const m = nth[e.from].get(e.message);
    if (!m) continue;
    e.anchor = true;
    e.shown = e.text;
    e.text = `${e.shown} (the ${e.from}'s message ${e.message}: #${m.seq} above)`;
    if (!after.has(m.seq)) after.set(m.seq, []);
    after.get(m.seq).push(e);
  }
  return after;
}

function wsEventRow(e) {
  return el("tr", { class: "m-event " + e.event }, el("td", { class: "dir", text: e.event === "fault" ? "⚡" : e.event === "violation" ? "✖" : "■" }), el("td"),
    el("td", { class: "time", text: e.time === Infinity ? "" : clock(e.time) }), el("td", { colspan: 5, text: e.text }));
}

function wsSelect(m) {
  const ws = state.ws;
  ws.selected = m.seq;
  for (const tr of ws.tbody.querySelectorAll("tr.sel")) tr.classList.remove("sel");
  const tr = ws.tbody.querySelector(`tr[data-seq="${m.seq}"]`);
  if (tr) tr.classList.add("sel");
  const facts = [
    `#${m.seq} ${m.from === "client" ? "↑ client → server" : "↓ server → client"}`,
    m.type,
    `${size(m.len)}${m.compressed ? ` inflated from ${size(m.payload_len)}` : ""}`,
    `${size(m.wire_len)} on the wire`,
  ];
  if (m.fragments > 1) facts.push(`${m.fragments} fragments`);
  if (m.close_code) facts.push(`close ${m.close_code}${m.close_reason ? " “" + m.close_reason + "”" : ""}`);
  if (m.action !== "pass") facts.push(`${m.action}${m.rule ? " by rule " + m.rule : ""}`);
  if (m.note) facts.push(m.note);
  if (m.truncated || m.payload_cut) facts.push(`first ${size(m.kept)} kept`);
  const bar = el("div", { class: "viewer-bar" });
  const out = el("div");
  ws.detail.replaceChildren(bar, out);
  const base = `/api/flows/${ws.id}/messages/${m.seq}/payload`;
  api(base).then(async (r) => {
    const buf = new Uint8Array(await r.arrayBuffer());
    viewer(bar, out, buf, m.type === "binary" ? "application/octet-stream" : "text/plain", facts, base + "?download=1");
    if (m.replacement) {
      out.append(el("div", { class: "section" }, el("h4", { text: "Sent instead (rewritten)" }), el("pre", { class: "body", text: m.replacement })));
    }
  }).catch((e) => out.replaceChildren(el("div", { class: "error-box", text: e.message })));
}

function wsUpdateCounts() {
  const ws = state.ws;
  if (!ws || !ws.counts) return;
  const d = state.detail;
  const c = (d && d.message_counts) || {};
  let up = 0;
  for (const m of ws.msgs) if (m.from === "client") up++;
  const shown = ws.tbody ? ws.tbody.querySelectorAll("tr[data-seq]").length : 0;
  const parts = [`${ws.msgs.length} messages (${up} ↑, ${ws.msgs.length - up} ↓)`];
  if (shown !== ws.msgs.length) parts.push(`${shown} shown`);
  if (c.Dropped) parts.push(`${c.Dropped} dropped`);
  if (c.Rewritten) parts.push(`${c.Rewritten} rewritten`);
  if (c.Evicted) parts.push(`${c.Evicted} evicted`);
  ws.counts.textContent = parts.join(" · ");
}

// ---------- filter help ----------
const filterHelp = [
  ["word", "URL, method, error, denial reason, bodies and WebSocket messages"],
  ["host:example.com  path:/api  url:https://", "part of the host, path and query, full URL"],
  ["method:POST", "the method"],
  ["status:404  status:4xx  status:400-499", "the status"],
  ["type:http tunnel bumped ws denied fault", "the kind of flow"],
  ["header:x-foo  header:x-foo=bar", "a request or response header (whose value holds bar)"],
  ["body:text  msg:hello  error:refused", "only bodies, only WebSocket messages, only the error"],
  ["~dropped ~rewritten ~closed", "a message a rule or fault dropped, rewrote, closed on"],
  ["~fault ~denied ~error ~open ~truncated ~evicted", "a fault acted, refused, failed, in progress, kept in part, messages evicted"],
  ["-term   \"two words\"", "negate a term; group words"],
];

function setupHelp() {
  const t = el("table", {}, filterHelp.map(([k, v]) => el("tr", {}, el("td", { text: k }), el("td", { text: v }))));
  $("#help-body").replaceChildren(t, el("p", { class: "muted", text: "All terms must match; text matches case-insensitively. The filter runs in hopscope's store, so it searches message payloads and bodies the list does not show." }));
}

// ---------- wiring ----------
function setup() {
  setupHelp();
  const q = $("#q");
  let qTimer = null;
  q.addEventListener("input", () => {
    clearTimeout(qTimer);
    qTimer = setTimeout(() => { state.query = q.value.trim(); reload(); }, 250);
  });
  q.addEventListener("keydown", (e) => { if (e.key === "Enter") { clearTimeout(qTimer); state.query = q.value.trim(); reload(); } });
  $("#qhelp").addEventListener("click", () => { $("#help").hidden = !$("#help").hidden; });
  for (const b of document.querySelectorAll("#chips button")) {
    b.addEventListener("click", () => {
      for (const o of document.querySelectorAll("#chips button")) o.classList.toggle("on", o === b);
      state.typeFilter = b.dataset.type;
      reload();
    });
  }
  $("#pause").addEventListener("click", () => {
    state.paused = !state.paused;
    $("#pause").textContent = state.paused ? "▶ Resume" : "❚❚ Pause";
    $("#pause").classList.toggle("on", state.paused);
    if (!state.paused) { state.missed = 0; reload(); }
    setLive();
  });
  $("#clear").addEventListener("click", async () => {
    try { await api("/api/clear", { method: "POST" }); closeDetail(); reload(); toast("Cleared"); } catch (e) { toast(e.message); }
  });
  $("#har").addEventListener("click", () => {
    const a = el("a", { href: "/api/har?q=" + encodeURIComponent(state.query), download: "" });
    document.body.append(a);
    a.click();
    a.remove();
  });
  $("#harfile").addEventListener("change", async (e) => {
    const f = e.target.files[0];
    if (!f) return;
    try {
      const r = await (await api("/api/har", { method: "POST", body: f, headers: { "Content-Type": "application/json" } })).json();
      toast(`Imported ${r.imported} entries from ${f.name}`);
      reload();
    } catch (err) { toast("Import failed: " + err.message); }
    e.target.value = "";
  });
  $("#close").addEventListener("click", closeDetail);
  $("#curl").addEventListener("click", async () => {
    if (!state.detail) return;
    try { copy(await curlFor(state.detail)); } catch (e) { toast(e.message); }
  });
  document.addEventListener("keydown", (e) => {
    const typing = /INPUT|TEXTAREA/.test(document.activeElement.tagName);
    if (e.key === "/" && !typing) { e.preventDefault(); q.focus(); }
    else if (e.key === "?" && !typing) $("#help").hidden = !$("#help").hidden;
    else if (e.key === "Escape") { if (!$("#help").hidden) $("#help").hidden = true; else if (typing) document.activeElement.blur(); else closeDetail(); }
    else if ((e.key === "ArrowDown" || e.key === "ArrowUp" || e.key === "j" || e.key === "k") && !typing) {
      const rows = Array.from($("#rows").children);
      if (!rows.length) return;
      e.preventDefault();
      let i = rows.findIndex((r) => r.dataset.id === state.selected);
      i = (e.key === "ArrowDown" || e.key === "j") ? Math.min(rows.length - 1, i + 1) : Math.max(0, i - 1);
      select(rows[i].dataset.id);
      rows[i].scrollIntoView({ block: "nearest" });
    }
  });
  // Drag the splitter to size the list against the detail.
  const sp = $("#splitter");
  sp.addEventListener("mousedown", (e) => {
    e.preventDefault();
    const main = $("#main").getBoundingClientRect();
    const move = (ev) => {
      const frac = Math.min(0.85, Math.max(0.15, (ev.clientX - main.left) / main.width));
      $("#list").style.flex = `0 0 ${frac * 100}%`;
      $("#detail").style.flex = "1 1 0";
    };
    const up = () => { document.removeEventListener("mousemove", move); document.removeEventListener("mouseup", up); };
    document.addEventListener("mousemove", move);
    document.addEventListener("mouseup", up);
  });
  updateEmpty();
  connect();
}

setup();
