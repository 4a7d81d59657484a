// capsearch page: search as you type, thumbnails grid, detail view with similar photos,
// status view. Plain DOM (text is always set with textContent, never parsed as HTML).
"use strict";

const $ = (id) => document.getElementById(id);
const PAGE = 40;
let state = { q: "", offset: 0, controller: null, timer: 0 };

class NeedLogin extends Error {}

async function api(path, signal) {
  const r = await fetch(path, { signal, credentials: "same-origin" });
  let body = null;
  try { body = await r.json(); } catch (e) { body = null; }
  if (r.status === 401) throw new NeedLogin();
  if (!r.ok) throw new Error((body && body.error) || ("HTTP " + r.status));
  return body;
}

function el(tag, props, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (k === "text") e.textContent = v;
    else if (k === "dataset") Object.assign(e.dataset, v);
    else e.setAttribute(k, v);
  }
  for (const c of children) if (c) e.append(c);
  return e;
}

function date(unix) {
  if (unix === null || unix === undefined) return "";
  return new Date(unix * 1000).toISOString().slice(0, 10);
}

function card(hit) {
  const caption = hit.caption || hit.tags || hit.path.split("/").pop();
  const img = el("img", { src: "/thumb/" + hit.id + "?size=256", alt: caption, loading: "lazy",
                          width: "256", height: "192" });
  const link = el("a", { href: "#/image/" + hit.id, class: "photo" }, img);
  return el("li", { dataset: { id: String(hit.id), path: hit.path } }, link,
            el("p", { class: "caption", text: hit.caption || "(no caption)" }),
            hit.tags ? el("p", { class: "tags", text: hit.tags }) : null);
}

function showView(name) {
  for (const v of ["search", "detail", "status", "login"]) $("view-" + v).hidden = v !== name;
  $("nav-search").toggleAttribute("aria-current", name === "search" || name === "detail");
  if (name === "search" || name === "detail") $("nav-search").setAttribute("aria-current", "page");
  $("nav-status").toggleAttribute("aria-current", name === "status");
  if (name === "status") $("nav-status").setAttribute("aria-current", "page");
}

function searchParams(offset) {
  const p = new URLSearchParams({ q: state.q, limit: String(PAGE), offset: String(offset) });
  for (const f of ["dir", "since", "until"]) if ($(f).value.trim()) p.set(f, $(f).value.trim());
  return p;
}

async function runSearch(append) {
  if (state.controller) state.controller.abort();
  const q = $("q").value.trim();
  state.q = q;
  if (!append) state.offset = 0;
  if (!q) {
    $("results").replaceChildren();
    $("summary").textContent = "";
    $("more").hidden = true;
    return;
  }
  const controller = new AbortController();
  state.controller = controller;
  const params = searchParams(state.offset);
  history.replaceState(null, "", "#/?" + params.toString());
  $("summary").textContent = "Searching…";
  try {
    const res = await api("/api/search?" + params.toString(), controller.signal);
    if (controller.signal.aborted) return;
    const items = res.results.map(card);
    if (append) $("results").append(...items); else $("results").replaceChildren(...items);
    const shown = $("results").children.length;
    $("summary").textContent = shown ? (shown + (res.more ? "+" : "") + " photo" +
                                        (shown === 1 && !res.more ? "" : "s") + " for “" + q + "”")
                                     : "No photos match “" + q + "”.";
    $("more").hidden = !res.more;
    state.offset += res.count;
  } catch (e) {
    if (e.name === "AbortError") return;
    if (e instanceof NeedLogin) return showLogin();
    $("summary").textContent = "Search failed: " + e.message;
  }
}

function scheduleSearch() {
  clearTimeout(state.timer);
  state.timer = setTimeout(() => runSearch(false), 150);
}

function fact(dl, name, value) {
  if (value === null || value === undefined || value === "") return;
  dl.append(el("dt", { text: name }), el("dd", { text: String(value) }));
}

async function showDetail(id) {
  showView("detail");
  const facts = $("detail-facts");
  facts.replaceChildren();
  $("similar").replaceChildren();
  $("detail-caption").textContent = "";
  $("detail-img").removeAttribute("src");
  try {
    const img = await api("/api/images/" + id);
    const caption = img.caption || img.tags || img.path.split("/").pop();
    $("detail-heading").textContent = img.caption || "Photo";
    $("detail-img").src = "/thumb/" + id + "?size=1024";
    $("detail-img").alt = caption;
    $("detail-link").href = "/image/" + id;
    $("detail-link").setAttribute("aria-label", "Open the original: " + caption);
    $("detail-caption").textContent = img.caption || "(no caption)";
    fact(facts, "Tags", img.tags);
    fact(facts, "Path", img.path);
    fact(facts, "Taken", date(img.taken_time));
    fact(facts, "Modified", date(img.mtime));
    fact(facts, "Size", img.width && img.height ? img.width + " × " + img.height : "");
    if (img.status !== "ok") fact(facts, "Failed", img.error);
    $("main").focus();
    $("similar-summary").textContent = "Looking for similar photos…";
    const sim = await api("/api/similar/" + id + "?limit=12");
    $("similar").replaceChildren(...sim.results.map(card));
    $("similar-summary").textContent = sim.count ? "" : "No similar photos.";
  } catch (e) {
    if (e instanceof NeedLogin) return showLogin();
    $("similar-summary").textContent = e.message;
  }
}

async function showStatus() {
  showView("status");
  const facts = $("status-facts");
  facts.replaceChildren();
  $("failures").replaceChildren();
  try {
    const s = await api("/api/status");
    fact(facts, "Photos indexed", s.images.ok);
    fact(facts, "Failed", s.images.failed);
    fact(facts, "Database", s.database + " (" + Math.round(s.db_bytes / 1024) + " KiB)");
    fact(facts, "Model", s.model_version || "(nothing indexed yet)");
    const d = s.daemon;
    fact(facts, "Daemon", d.running ? "running (pid " + d.pid + "), " + (d.state || "state unknown") +
         ", " + d.queue + " queued" : "not running");
    if (d.heartbeat_age !== null) fact(facts, "Heartbeat", d.heartbeat_age + " s ago");
    fact(facts, "Watching", d.roots.join(", "));
    fact(facts, "Last error", d.last_error);
    const items = s.failures.map((f) => el("li", { text: f.path + ": " + f.error }));
    $("failures").replaceChildren(...(items.length ? items : [el("li", { text: "none" })]));
    $("main").focus();
  } catch (e) {
    if (e instanceof NeedLogin) return showLogin();
    fact(facts, "Error", e.message);
  }
}

function showLogin() {
  showView("login");
  $("token").focus();
}

async function login(ev) {
  ev.preventDefault();
  const r = await fetch("/login", { method: "POST", credentials: "same-origin",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({ token: $("token").value }).toString() });
  if (!r.ok) { $("login-error").textContent = "Wrong token."; return; }
  $("token").value = "";
  $("login-error").textContent = "";
  route();
}

function route() {
  const h = location.hash || "#/";
  let m;
  if ((m = h.match(/^#\/image\/(\d+)$/))) return showDetail(m[1]);
  if (h === "#/status") return showStatus();
  showView("search");
  const qs = h.indexOf("?") >= 0 ? new URLSearchParams(h.slice(h.indexOf("?") + 1)) : null;
  if (qs && qs.get("q") !== null && qs.get("q") !== $("q").value) {
    $("q").value = qs.get("q");
    for (const f of ["dir", "since", "until"]) $(f).value = qs.get(f) || "";
    runSearch(false);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  $("q").addEventListener("input", scheduleSearch);
  for (const f of ["dir", "since", "until"]) $(f).addEventListener("change", scheduleSearch);
  $("search-form").addEventListener("submit", (e) => { e.preventDefault(); runSearch(false); });
  $("more").addEventListener("click", () => runSearch(true));
  $("login-form").addEventListener("submit", login);
  $("back").addEventListener("click", (e) => {
    if (state.q) { e.preventDefault(); history.back(); }
  });
  window.addEventListener("hashchange", route);
  route();
});
