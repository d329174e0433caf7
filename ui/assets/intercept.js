// hopscope interception controls: paused WebSocket messages and HTTP
// exchanges (forward, edit, drop, close, respond) with their countdown,
// breakpoints, and injecting a message into a live session. Talks to the
// interception engine's API under /api/intercept/; hidden when hopscope
// runs without --intercept (the API answers 404).
"use strict";
(() => {
  const API = "/api/intercept";
  const state = { open: false, paused: new Map(), skew: 0, timer: 0 };

  function h(tag, attrs, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === "on") for (const [ev, f] of Object.entries(v)) e.addEventListener(ev, f);
      else if (k === "class") e.className = v;
      else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? "" : v);
    }
    for (const k of kids) if (k !== null && k !== undefined) e.append(k);
    return e;
  }

  async function call(path, body, method) {
    const opts = { method: method || (body === undefined ? "GET" : "POST"), headers: {} };
    if (body !== undefined) {
      opts.headers["Content-Type"] = "application/json";
      opts.body = JSON.stringify(body);
    }
    const r = await fetch(API + path, opts);
    const text = await r.text();
    let v = null;
    try { v = text ? JSON.parse(text) : null; } catch (_) { v = { error: text }; }
    if (!r.ok) throw new Error((v && v.error) || r.status + " " + r.statusText);
    return v;
  }

  function say(msg, bad) {
    const s = document.getElementById("ix-msg");
    if (s) { s.textContent = msg; s.classList.toggle("bad", !!bad); }
  }

  // The toggle in the top bar, with the number of paused messages.
  const toggle = h("button", { id: "ix-toggle", title: "Intercept: paused messages, breakpoints, inject", on: { click: () => show(!state.open) } }, "Intercept");
  const badge = h("span", { id: "ix-count", class: "ix-count" }, "");
  toggle.append(badge);

  const sessions = h("select", { id: "ix-inject-session" });
  const pausedList = h("div", { id: "ix-paused", class: "ix-list" });
  const httpList = h("div", { id: "ix-http-bps", class: "ix-list" });
  const bpList = h("div", { id: "ix-bps", class: "ix-list" });
  const panel = h("aside", { id: "ix-panel", class: "ix-panel", hidden: true, "aria-label": "Intercept" },
    h("div", { class: "ix-head" }, h("b", {}, "Intercept"), h("span", { class: "spacer" }),
      h("span", { id: "ix-msg", class: "ix-msg", role: "status" }),
      h("button", { class: "icon", title: "Close", on: { click: () => show(false) } }, "✕")),
    h("h4", {}, "Paused"), pausedList,
    h("h4", {}, "WebSocket breakpoints"), bpList, breakpointForm(),
    h("h4", {}, "HTTP breakpoints"), httpList, httpBreakpointForm(),
    h("h4", {}, "Inject a message"), injectForm());

  function show(open) {
    state.open = open;
    panel.hidden = !open;
    toggle.classList.toggle("on", open);
    if (open) { refreshBreakpoints(); refreshSessions(); }
  }

  function breakpointForm() {
    const from = h("select", { id: "ix-bp-from" }, h("option", { value: "" }, "either side"), h("option", { value: "client" }, "from client"), h("option", { value: "server" }, "from server"));
    const url = h("input", { id: "ix-bp-url", type: "text", placeholder: "URL glob, e.g. *example.com/chat*" });
    const contains = h("input", { id: "ix-bp-contains", type: "text", placeholder: "contains" });
    const jsonPath = h("input", { id: "ix-bp-json", type: "text", placeholder: "json_path, e.g. data.type" });
    const add = h("button", { id: "ix-bp-add", on: { click: async () => {
      const match = {};
      if (from.value) match.from = from.value;
      if (url.value) match.url = url.value;
      if (contains.value) match.contains = contains.value;
      if (jsonPath.value) match.json_path = jsonPath.value;
      try { await call("/breakpoints", { name: "", match }); say("breakpoint set"); refreshBreakpoints(); } catch (e) { say(e.message, true); }
    } } }, "Add breakpoint");
    return h("div", { class: "ix-form" }, from, url, contains, jsonPath, add);
  }

  function httpBreakpointForm() {
    const stage = h("select", { id: "ix-hbp-stage" }, h("option", { value: "request" }, "request"), h("option", { value: "response" }, "response"), h("option", { value: "both" }, "both"));
    const method = h("input", { id: "ix-hbp-method", type: "text", placeholder: "method (any)", size: 8 });
    const url = h("input", { id: "ix-hbp-url", type: "text", placeholder: "URL glob, e.g. *example.com/api/*" });
    const add = h("button", { id: "ix-hbp-add", on: { click: async () => {
      try {
        await call("/http-breakpoints", { name: "", stage: stage.value, method: method.value.trim().toUpperCase(), url: url.value });
        say("HTTP breakpoint set");
        refreshBreakpoints();
      } catch (e) { say(e.message, true); }
    } } }, "Add breakpoint");
    return h("div", { class: "ix-form" }, stage, method, url, add);
  }

  async function refreshBreakpoints() {
    try {
      const bps = await call("/http-breakpoints");
      httpList.replaceChildren(...bps.map((bp) => h("div", { class: "ix-row" },
        h("code", {}, bp.name), h("span", { class: "ix-match" }, [bp.stage, bp.method || "any method", bp.url || "any URL"].join(" · ")),
        h("button", { class: "icon", title: "Remove", on: { click: async () => {
          await call("/http-breakpoints/" + encodeURIComponent(bp.name), undefined, "DELETE").catch((e) => say(e.message, true));
          refreshBreakpoints();
        } } }, "✕"))));
      if (!bps.length) httpList.replaceChildren(h("div", { class: "ix-none" }, "none"));
    } catch (e) { say(e.message, true); }
    refreshWSBreakpoints();
  }

  async function refreshWSBreakpoints() {
    try {
      const bps = await call("/breakpoints");
      bpList.replaceChildren(...bps.map((bp) => h("div", { class: "ix-row" },
        h("code", {}, bp.name), h("span", { class: "ix-match" }, JSON.stringify(bp.match)),
        h("button", { class: "icon", title: "Remove", on: { click: async () => {
          await call("/breakpoints/" + encodeURIComponent(bp.name), undefined, "DELETE").catch((e) => say(e.message, true));
          refreshBreakpoints();
        } } }, "✕"))));
      if (!bps.length) bpList.replaceChildren(h("div", { class: "ix-none" }, "none"));
    } catch (e) { say(e.message, true); }
  }

  function injectForm() {
    const to = h("select", { id: "ix-inject-to" }, h("option", { value: "client" }, "to client"), h("option", { value: "server" }, "to server"));
    const mode = h("select", { id: "ix-inject-mode" }, h("option", { value: "text" }, "text"), h("option", { value: "hex" }, "hex (binary)"));
    const body = h("textarea", { id: "ix-inject-body", rows: 2, spellcheck: "false", placeholder: "message" });
    const send = h("button", { id: "ix-inject-send", on: { click: async () => {
      if (!sessions.value) { say("no live session", true); return; }
      const msg = { to: to.value };
      msg[mode.value] = body.value;
      try {
        const r = await call("/sessions/" + sessions.value + "/inject", msg);
        say("injected as message " + r.seq + (r.note ? " — " + r.note : ""));
      } catch (e) { say(e.message, true); }
    } } }, "Send");
    return h("div", { class: "ix-form" }, sessions, h("button", { class: "icon", title: "Reload sessions", on: { click: refreshSessions } }, "↻"), to, mode, body, send);
  }

  async function refreshSessions() {
    try {
      const list = await call("/sessions");
      const keep = sessions.value;
      sessions.replaceChildren(...list.map((s) => h("option", { value: s.id }, "#" + s.id + " " + s.url)));
      if (!list.length) sessions.replaceChildren(h("option", { value: "" }, "no live session"));
      if (keep) sessions.value = keep;
    } catch (e) { say(e.message, true); }
  }

  // One card per paused message, kept while it is paused so that an edit
  // in progress is never redrawn away.
  function card(p) {
    const ws = p.kind === "websocket";
    const text = p.text !== undefined && p.text !== null;
    const mode = h("select", { class: "ix-mode" }, h("option", { value: "text" }, "text"), h("option", { value: "json" }, "JSON"), h("option", { value: "hex" }, "hex"));
    mode.value = text ? "text" : "hex";
    const body = h("textarea", { class: "ix-body", rows: 4, spellcheck: "false" });
    body.value = text ? p.text : p.hex;
    mode.addEventListener("change", () => {
      if (mode.value === "hex" && body.dataset.mode !== "hex") body.value = p.hex;
      else if (mode.value !== "hex" && body.dataset.mode === "hex" && text) body.value = p.text;
      body.dataset.mode = mode.value;
    });
    body.dataset.mode = mode.value;
    const countdown = h("span", { class: "ix-countdown" });
    const act = async (decision) => {
      try { await call("/paused/" + p.id, decision); say(decision.action + ": done"); remove(p.id); } catch (e) { say(e.message, true); }
    };
    const edited = () => { const d = {}; d[mode.value] = body.value; return d; };
    const buttons = [h("button", { class: "ix-forward", on: { click: () => act({ action: "forward" }) } }, "Forward")];
    let header = null;
    if (ws) {
      const code = h("input", { class: "ix-code", type: "text", value: "1000", size: 5, title: "close code" });
      buttons.push(
        h("button", { class: "ix-edit", disabled: !p.editable, title: p.not_editable || "", on: { click: () => act(Object.assign({ action: "edit" }, edited())) } }, "Edit & forward"),
        h("button", { class: "ix-drop", disabled: !p.editable, title: p.not_editable || "", on: { click: () => act({ action: "drop" }) } }, "Drop"),
        h("button", { class: "ix-close", on: { click: () => act({ action: "close", code: Number(code.value) }) } }, "Close with"), code);
    } else {
      header = h("textarea", { class: "ix-header", rows: 3, spellcheck: "false" });
      header.value = JSON.stringify(p.header || {}, null, 1);
      const status = h("input", { class: "ix-status", type: "text", size: 4, value: p.status ? String(p.status) : "200", title: "status" });
      const withHead = (d) => {
        try { d.header = JSON.parse(header.value); } catch (_) { throw new Error("the header is not JSON"); }
        return d;
      };
      buttons.push(
        h("button", { class: "ix-edit", on: { click: () => { try { const d = withHead(Object.assign({ action: "edit" }, p.editable ? edited() : {})); if (p.kind === "response") d.status = Number(status.value); act(d); } catch (e) { say(e.message, true); } } } }, "Edit & forward"),
        h("button", { class: "ix-respond", title: p.kind === "request" ? "Answer the client yourself; the request does not go upstream" : "Replace the answer", on: { click: () => {
          try {
            const d = Object.assign({ action: "respond", status: Number(status.value) }, edited());
            // A request's header is no answer's: a local answer gets a
            // plain one, a replaced answer the header as edited.
            if (p.kind === "request") d.header = { "Content-Type": ["text/plain; charset=utf-8"] };
            else withHead(d);
            act(d);
          } catch (e) { say(e.message, true); }
        } } }, "Respond"), status);
    }
    const title = ws ? `${p.from} → ${p.from === "client" ? "server" : "client"} · ${p.type}` : `${p.kind} · ${p.method}${p.status ? " · " + p.status : ""}`;
    const el = h("div", { class: "ix-card", "data-id": p.id },
      h("div", { class: "ix-card-head" }, h("b", {}, title), h("span", { class: "ix-url" }, p.url), h("span", { class: "spacer" }),
        h("span", { class: "ix-bp" }, "at " + p.breakpoint), countdown),
      p.not_editable ? h("div", { class: "ix-note" }, "Cannot edit: " + p.not_editable) : null,
      header, h("div", { class: "ix-edit-row" }, mode, body), h("div", { class: "ix-buttons" }, ...buttons));
    return { el, countdown, deadline: p.deadline ? Date.parse(p.deadline) : 0 };
  }

  function remove(id) {
    const c = state.paused.get(id);
    if (c) { c.el.remove(); state.paused.delete(id); }
    render();
  }

  function render() {
    const n = state.paused.size;
    badge.textContent = n ? String(n) : "";
    toggle.classList.toggle("ix-alert", n > 0);
    if (!n && !pausedList.querySelector(".ix-none")) pausedList.replaceChildren(h("div", { class: "ix-none" }, "nothing paused"));
    if (n) pausedList.querySelector(".ix-none")?.remove();
  }

  function tick() {
    const now = Date.now() + state.skew;
    for (const c of state.paused.values()) {
      c.countdown.textContent = c.deadline ? Math.max(0, Math.ceil((c.deadline - now) / 1000)) + "s left" : "";
    }
  }

  async function poll() {
    let list;
    try { list = await call("/paused"); } catch (e) {
      if (/404/.test(e.message) || /not found/i.test(e.message)) { toggle.hidden = true; return; }
      setTimeout(poll, 2000);
      return;
    }
    toggle.hidden = false;
    const seen = new Set();
    for (const p of list) {
      seen.add(p.id);
      if (state.paused.has(p.id)) continue;
      if (p.deadline && p.remaining_ms !== undefined) state.skew = Date.parse(p.deadline) - p.remaining_ms - Date.now();
      const c = card(p);
      state.paused.set(p.id, c);
      pausedList.append(c.el);
      if (!state.open) show(true); // a new pause wants the person's attention
    }
    for (const id of [...state.paused.keys()]) if (!seen.has(id)) remove(id);
    render();
    tick();
    setTimeout(poll, 500);
  }

  function start() {
    const actions = document.querySelector(".actions");
    (actions || document.body).prepend(toggle);
    toggle.hidden = true;
    document.body.append(panel);
    render();
    setInterval(tick, 250);
    poll();
  }
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
