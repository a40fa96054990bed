// The Berth console: one page, hash-routed. Every page calls Berth's own
// APIs (/v2/, SWR's /v2/manage and /v2/<project>/instances, /berth/v1)
// with the session cookie; changes carry the session's CSRF token. What a
// user may see and do is decided by those APIs: pages show what they
// answer and offer the changes the caller's access level allows.

import { t, setLocale, locale, LOCALES } from "./i18n.js";
import * as archive from "./archive.js";

let session = null;
const $ = (sel, root = document) => root.querySelector(sel);

// --- DOM -------------------------------------------------------------------

function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k.startsWith("on") && typeof v === "function") el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else if (k === "value") el.value = v;
    else if (k === "checked") el.checked = !!v;
    else if (v === true) el.setAttribute(k, "");
    else if (v !== false && v != null) el.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  }
  return el;
}

let uid = 0;
/// A labelled form field: the label names the control for screen readers.
function field(label, control) {
  const id = control.id || `f${++uid}`;
  control.id = id;
  return h("div", { class: "field" }, h("label", { for: id }, label), control);
}

function input(name, attrs = {}) {
  return h("input", { name, ...attrs });
}

function select(name, options, value) {
  return h("select", { name }, options.map(([v, label]) => h("option", { value: v, selected: v === value }, label)));
}

function table(caption, headers, rows) {
  if (rows.length === 0) return h("p", { class: "empty" }, t("common.none"));
  return h("div", { class: "table-wrap" },
    h("table", {},
      h("caption", { class: "sr-only" }, caption),
      h("thead", {}, h("tr", {}, headers.map((x) => h("th", { scope: "col" }, x)))),
      h("tbody", {}, rows.map((r) => h("tr", {}, r.map((c) => h("td", {}, c)))))));
}

function button(label, onclick, attrs = {}) {
  return h("button", { type: "button", onclick, ...attrs }, label);
}

function section(title, ...children) {
  return h("section", { "aria-label": title }, h("h2", {}, title), ...children);
}

function say(message, error = false) {
  const s = $("#status");
  s.textContent = message;
  s.className = error ? "status error" : "status";
  s.setAttribute("role", error ? "alert" : "status");
}

function bytes(n) {
  if (n == null) return "";
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let i = 0;
  let v = Number(n);
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
}

function when(s) {
  if (!s) return t("tags.never");
  const d = new Date(s);
  return isNaN(d) ? s : d.toLocaleString(locale() === "zh" ? "zh-CN" : "en");
}

// --- API -------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/// Sends with the session (cookie, and the CSRF token on changes); waits
/// out 429s as Retry-After says.
async function request(method, url, init = {}) {
  const headers = new Headers(init.headers || {});
  if (!["GET", "HEAD"].includes(method) && session) headers.set("X-Berth-CSRF", session.csrf);
  for (let attempt = 0; ; attempt++) {
    const r = await fetch(url, { ...init, method, headers, credentials: "same-origin" });
    if (r.status === 429 && attempt < 10) {
      await new Promise((ok) => setTimeout(ok, 1000 * (Number(r.headers.get("Retry-After")) || 1)));
      continue;
    }
    if (r.status === 401 && session && !url.startsWith("/console/api/session")) {
      session = null;
      renderFrame();
      location.hash = "#/signin";
      say(t("session.expired"), true);
    }
    return r;
  }
}

async function messageOf(r) {
  try {
    const body = await r.json();
    return body.errorMsg || body.errors?.[0]?.message || `HTTP ${r.status}`;
  } catch {
    return `HTTP ${r.status}`;
  }
}

/// A JSON call: the parsed answer (null when empty); ApiError otherwise.
async function api(method, url, body) {
  const init = body === undefined ? {} : { body: JSON.stringify(body), headers: { "Content-Type": "application/json" } };
  const r = await request(method, url, init);
  if (!r.ok) throw new ApiError(r.status, await messageOf(r));
  const text = await r.text();
  const parsed = text ? JSON.parse(text) : null;
  if (parsed && typeof parsed === "object") Object.defineProperty(parsed, "_headers", { value: r.headers });
  return parsed;
}

/// Runs a change, then says it was done (or why not) and redraws.
async function act(fn, redraw = true) {
  try {
    await fn();
    say(t("common.done"));
    if (redraw) await route();
  } catch (e) {
    say(t("common.error", { msg: e.message }), true);
  }
}

const enterprise = (rest) => `/v2/${session.project_id}/instances/${session.project_id}${rest}`;
const manageRepo = (ns, repo) => `/v2/manage/namespaces/${encodeURIComponent(ns)}/repos/${encodeURIComponent(repo)}`;

async function organizations() {
  return (await api("GET", "/v2/manage/namespaces")).namespaces || [];
}

// --- frame -------------------------------------------------------------------

const PAGES = [
  ["orgs", "nav.orgs", () => true],
  ["repos", "nav.repos", () => true],
  ["upload", "nav.upload", () => true],
  ["webhooks", "nav.webhooks", () => true],
  ["aging", "nav.aging", () => true],
  ["immutable", "nav.immutable", () => true],
  ["sync", "nav.sync", () => true],
  ["gc", "nav.gc", () => session.admin],
  ["usage", "nav.usage", () => true],
  ["audit", "nav.audit", () => session.admin],
  ["keys", "nav.keys", () => !session.access_key_login],
  ["users", "nav.users", () => session.admin && !session.access_key_login],
  ["groups", "nav.groups", () => session.admin && !session.access_key_login],
  ["policies", "nav.policies", () => session.admin && !session.access_key_login],
  ["network", "nav.network", () => session.admin && !session.access_key_login],
];

function renderFrame() {
  document.title = t("app.title");
  const langs = select("lang", Object.entries(LOCALES).map(([k, v]) => [k, v.name]), locale());
  langs.addEventListener("change", () => {
    setLocale(langs.value);
    renderFrame();
    route();
  });
  const header = h("header", { class: "top" },
    h("a", { class: "skip", href: "#main" }, t("app.skip")),
    h("span", { class: "brand" }, t("app.title")),
    field(t("lang.label"), langs),
    session ? h("span", { class: "who" }, t("signed_in_as", { user: session.user, tenant: session.tenant })) : null,
    session ? button(t("signout"), signOut, { id: "signout" }) : null);
  const nav = session
    ? h("nav", { "aria-label": t("nav.label") },
      h("ul", {}, PAGES.filter(([, , show]) => show()).map(([id, key]) =>
        h("li", {}, h("a", { href: `#/${id}`, "data-page": id }, t(key))))))
    : null;
  const app = $("#app");
  app.replaceChildren(header, h("div", { class: "body" }, nav,
    h("main", { id: "main", tabindex: "-1" }), h("div", { id: "status", class: "status", role: "status", "aria-live": "polite" })));
}

async function signOut() {
  await request("DELETE", "/console/api/session");
  session = null;
  renderFrame();
  location.hash = "#/signin";
}

/// Draws the page the hash names.
async function route() {
  const [page, ...args] = location.hash.replace(/^#\/?/, "").split("/").map((x) => {
    try {
      return decodeURIComponent(x);
    } catch {
      return "";
    }
  });
  const main = $("#main");
  if (!main) return;
  if (!session) {
    main.replaceChildren(signInPage());
    focusHeading(main);
    return;
  }
  for (const a of document.querySelectorAll("nav a")) {
    if (a.dataset.page === page) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  const view = VIEWS[page] ? page : "orgs";
  const entry = PAGES.find(([id]) => id === view);
  main.replaceChildren(h("p", {}, t("common.loading")));
  try {
    const content = entry && !entry[2]() ? h("h1", { class: "forbidden" }, t("forbidden")) : await VIEWS[view](...args);
    main.replaceChildren(content);
  } catch (e) {
    main.replaceChildren(h("div", { role: "alert" }, h("h1", { class: "error" }, t("common.error", { msg: e.message }))));
  }
  focusHeading(main);
}

function focusHeading(main) {
  const h1 = main.querySelector("h1");
  if (h1) {
    h1.setAttribute("tabindex", "-1");
    h1.focus();
    document.title = `${h1.textContent} · ${t("app.title")}`;
  }
}

// --- sign-in -------------------------------------------------------------------

function signInPage() {
  const user = input("username", { autocomplete: "username", required: true });
  const pass = input("password", { type: "password", autocomplete: "current-password", required: true });
  const form = h("form", { class: "signin" },
    h("h1", {}, t("signin.title")),
    field(t("signin.username"), user),
    field(t("signin.password"), pass),
    h("button", { type: "submit" }, t("signin.submit")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await request("POST", "/console/api/session", {
      body: JSON.stringify({ username: user.value, password: pass.value }),
      headers: { "Content-Type": "application/json" },
    });
    if (!r.ok) {
      say(t("signin.failed", { msg: await messageOf(r) }), true);
      return;
    }
    session = await r.json();
    renderFrame();
    say(t("signed_in_as", { user: session.user, tenant: session.tenant }));
    // One draw: a changed hash draws through hashchange.
    if (location.hash === "#/orgs") route();
    else location.hash = "#/orgs";
  });
  return form;
}

// --- organizations ---------------------------------------------------------------

const VIEWS = {};

VIEWS.orgs = async (selected) => {
  const orgs = await organizations();
  const out = h("div", {}, h("h1", {}, t("orgs.title")));
  if (session.can_create_namespace) {
    const name = input("namespace", { required: true, pattern: "[a-z][a-z0-9._\\-]*" });
    const form = h("form", { class: "inline" }, field(t("orgs.new"), name), h("button", { type: "submit" }, t("common.create")));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      act(() => api("POST", "/v2/manage/namespaces", { namespace: name.value.trim() }));
    });
    out.append(form);
  }
  out.append(table(t("orgs.title"), [t("common.name"), t("orgs.creator"), t("orgs.your_access"), t("common.actions")],
    orgs.map((o) => [
      h("a", { href: `#/repos/${encodeURIComponent(o.name)}` }, o.name),
      o.creator_name,
      t(`auth.${o.auth}`),
      o.auth >= 7
        ? h("span", { class: "actions" },
          h("a", { href: `#/orgs/${encodeURIComponent(o.name)}`, class: "button" }, t("orgs.grants")),
          button(t("common.delete"), () => {
            if (confirm(t("common.confirm_delete", { name: o.name }))) {
              act(() => api("DELETE", `/v2/manage/namespaces/${encodeURIComponent(o.name)}`));
            }
          }, { "aria-label": `${t("common.delete")} ${o.name}` }))
        : "",
    ])));
  const org = orgs.find((o) => o.name === selected);
  if (org && org.auth >= 7) {
    out.append(await grantsPanel(t("grants.title", { name: org.name }), `/v2/manage/namespaces/${encodeURIComponent(org.name)}/access`));
  }
  return out;
};

/// The grants of an organization or repository at `url` (SWR's
/// `…/access`: `self_auth`, `others_auths`), with add and revoke.
async function grantsPanel(title, url) {
  const grants = await api("GET", url);
  const rows = [grants.self_auth, ...(grants.others_auths || [])].filter(Boolean);
  let users = [];
  if (session.admin && !session.access_key_login) {
    try {
      users = (await api("GET", `/berth/v1/tenants/${encodeURIComponent(session.tenant)}/users`)).users || [];
    } catch {
      users = [];
    }
  }
  const who = users.length
    ? select("user", users.map((u) => [u.id, u.name]))
    : input("user_id", { required: true });
  const level = select("auth", [["7", t("auth.7")], ["3", t("auth.3")], ["1", t("auth.1")]], "1");
  const form = h("form", { class: "inline" },
    field(users.length ? t("grants.user") : t("grants.user_id"), who), field(t("grants.level"), level),
    h("button", { type: "submit" }, t("grants.add")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const user = users.find((u) => u.id === who.value);
    const body = [{ user_id: who.value.trim(), user_name: user ? user.name : who.value.trim(), auth: Number(level.value) }];
    const exists = rows.some((r) => r.user_id === who.value);
    act(() => api(exists ? "PATCH" : "POST", url, body));
  });
  return section(title,
    table(title, [t("grants.user"), t("grants.level"), t("common.actions")],
      rows.map((g) => [g.user_name, t(`auth.${g.auth}`),
        g.user_id === session_user_id(grants) ? "" :
          button(t("grants.remove"), () => act(() => api("DELETE", url, [g.user_id])), { "aria-label": `${t("grants.remove")} ${g.user_name}` })])),
    form);
}

function session_user_id(grants) {
  return grants.self_auth?.user_id;
}

// --- repositories ------------------------------------------------------------------

const PAGE_SIZE = 20;

VIEWS.repos = async (ns = "", q = "", offsetText = "0") => {
  const offset = Number(offsetText) || 0;
  const orgs = await organizations();
  const params = new URLSearchParams({ limit: PAGE_SIZE, offset });
  if (ns) params.set("namespace", ns);
  if (q) params.set("name", q);
  const r = await request("GET", `/v2/manage/repos?${params}`);
  if (!r.ok) throw new ApiError(r.status, await messageOf(r));
  const repos = await r.json();
  const total = Number((r.headers.get("Content-Range") || "").split("/")[1] || repos.length);
  const org = select("namespace", [["", t("audit.any")], ...orgs.map((o) => [o.name, o.name])], ns);
  const name = input("name", { value: q, type: "search" });
  const form = h("form", { class: "inline", role: "search" },
    field(t("common.organization"), org), field(t("repos.query"), name), h("button", { type: "submit" }, t("common.search")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.hash = `#/repos/${encodeURIComponent(org.value)}/${encodeURIComponent(name.value)}/0`;
  });
  const pageLink = (o, label) => h("a", { class: "button", href: `#/repos/${encodeURIComponent(ns)}/${encodeURIComponent(q)}/${o}` }, label);
  return h("div", {},
    h("h1", {}, t("repos.title")),
    form,
    table(t("repos.title"), [t("common.name"), t("repos.visibility"), t("repos.category"), t("repos.tags"), t("repos.size"), t("repos.updated")],
      repos.map((x) => [
        h("a", { href: `#/repo/${encodeURIComponent(x.namespace)}/${encodeURIComponent(x.name)}` }, `${x.namespace}/${x.name}`),
        x.is_public ? t("repos.public") : t("repos.private"),
        x.category || "",
        x.num_images ?? x.tags?.length ?? "",
        bytes(x.size),
        when(x.updated_at || x.updated_time),
      ])),
    h("nav", { class: "pager", "aria-label": t("common.page", { n: offset / PAGE_SIZE + 1 }) },
      offset > 0 ? pageLink(Math.max(0, offset - PAGE_SIZE), t("common.previous")) : null,
      h("span", {}, t("common.page", { n: offset / PAGE_SIZE + 1 })),
      offset + PAGE_SIZE < total ? pageLink(offset + PAGE_SIZE, t("common.next")) : null));
};

VIEWS.repo = async (ns, repo, marker = "") => {
  const name = `${ns}/${repo}`;
  const orgs = await organizations();
  const auth = orgs.find((o) => o.name === ns)?.auth ?? 0;
  const info = await api("GET", manageRepo(ns, repo));
  const params = new URLSearchParams({ limit: 100 });
  if (marker) params.set("marker", marker);
  const tags = await api("GET", `/v3/manage/namespaces/${encodeURIComponent(ns)}/repos/${encodeURIComponent(repo)}/tags?${params}`);
  const host = location.host;
  const out = h("div", {}, h("h1", {}, name));
  if (info.description) out.append(h("p", {}, info.description));
  const tree = h("div", { class: "tree", "aria-live": "polite" });
  const rows = (tags.tags || []).map((x) => {
    return [
      x.tag,
      h("code", { title: x.digest }, x.digest.slice(0, 19) + "…"),
      bytes(x.size),
      x.manifest,
      when(x.updated),
      x.last_pulled ? when(x.last_pulled) : t("tags.never"),
      h("details", { class: "pull" }, h("summary", {}, "docker / podman"),
        h("code", {}, `docker pull ${host}/${name}:${x.tag}`),
        h("code", {}, `podman pull ${host}/${name}:${x.tag}`)),
      h("span", { class: "actions" },
        button(t("tags.show_tree", { tag: x.tag }), async () => {
          tree.replaceChildren(h("h3", {}, `${t("tags.tree")}: ${x.tag}`), h("div"));
          await showTree(name, x.digest, tree.lastChild);
        }),
        auth >= 3
          ? button(t("common.delete"), () => {
            if (confirm(t("common.confirm_delete", { name: `${name}:${x.tag}` }))) {
              act(() => api("DELETE", `${manageRepo(ns, repo)}/tags/${encodeURIComponent(x.tag)}`));
            }
          }, { "aria-label": `${t("common.delete")} ${x.tag}` })
          : null),
    ];
  });
  out.append(section(t("tags.title", { name }),
    table(t("tags.title", { name }), [t("tags.tag"), t("tags.digest"), t("repos.size"), t("tags.media_type"), t("tags.pushed"),
      t("tags.last_pulled"), t("repos.pull_cmd"), t("common.actions")], rows),
    tags.has_more ? h("a", { class: "button", href: `#/repo/${encodeURIComponent(ns)}/${encodeURIComponent(repo)}/${encodeURIComponent(tags.nextMarker)}` }, t("common.next")) : null,
    tree));
  if (auth >= 3) out.append(repoSettings(ns, repo, info));
  if (auth >= 7) {
    out.append(await triggersPanel(ns, repo));
    out.append(await grantsPanel(t("grants.title", { name }), `${manageRepo(ns, repo)}/access`));
    out.append(await sharesPanel(ns, repo));
  }
  return out;
};

/// A repository's image triggers (SWR's, updating Kubernetes workloads on
/// a push): list, enable or disable, delete, create.
async function triggersPanel(ns, repo) {
  const url = `${manageRepo(ns, repo)}/triggers`;
  const triggers = (await api("GET", url)) || [];
  let clusters = [];
  if (session.admin && !session.access_key_login) {
    clusters = ((await api("GET", tenantUrl("/clusters")).catch(() => ({}))).clusters || []);
  }
  const name = input("name", { required: true });
  const cluster = clusters.length ? select("cluster_id", clusters.map((c) => [c.id, c.name || c.id])) : input("cluster_id", { required: true });
  const clusterNs = input("cluster_ns", { value: "default", required: true });
  const appType = select("app_type", [["deployments", "deployments"], ["statefulsets", "statefulsets"]]);
  const application = input("application", { required: true });
  const container = input("container");
  const kind = select("trigger_type", [["all", "all"], ["tag", "tag"], ["regular", "regular"]]);
  const condition = input("condition", { value: ".*", required: true });
  const form = h("form", { class: "inline" },
    field(t("common.name"), name), field(t("triggers.cluster"), cluster), field(t("triggers.cluster_ns"), clusterNs),
    field(t("triggers.app_type"), appType), field(t("triggers.application"), application),
    field(t("triggers.container"), container), field(t("triggers.type"), kind), field(t("triggers.condition"), condition),
    h("button", { type: "submit" }, t("common.create")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(() => api("POST", url, {
      name: name.value.trim(), action: "update", enable: "true", trigger_type: kind.value, condition: condition.value,
      cluster_id: cluster.value.trim(), cluster_ns: clusterNs.value.trim(), app_type: appType.value,
      application: application.value.trim(), ...(container.value.trim() ? { container: container.value.trim() } : {}),
    }));
  });
  return section(t("triggers.title"),
    table(t("triggers.title"), [t("common.name"), t("triggers.cluster"), t("triggers.application"), t("triggers.condition"),
      t("common.enabled"), t("triggers.history"), t("common.actions")],
    triggers.map((x) => [x.name, `${x.cluster_name || x.cluster_id}/${x.cluster_ns}`, `${x.app_type}/${x.application}`,
      `${x.trigger_type}: ${x.condition}`, x.enable, String((x.trigger_history || []).length),
      h("span", { class: "actions" },
        button(x.enable === "true" ? t("triggers.disable") : t("triggers.enable"),
          () => act(() => api("PATCH", `${url}/${encodeURIComponent(x.name)}`, { enable: x.enable === "true" ? "false" : "true" })),
          { "aria-label": `${x.enable === "true" ? t("triggers.disable") : t("triggers.enable")} ${x.name}` }),
        button(t("common.delete"), () => act(() => api("DELETE", `${url}/${encodeURIComponent(x.name)}`)),
          { "aria-label": `${t("common.delete")} ${x.name}` }))])),
    form);
}

function repoSettings(ns, repo, info) {
  const visibility = select("is_public", [["false", t("repos.private")], ["true", t("repos.public")]], String(!!info.is_public));
  const category = select("category", ["app_server", "linux", "framework_app", "database", "lang", "other", "windows", "arm"].map((c) => [c, c]), info.category || "other");
  const description = h("textarea", { name: "description", rows: 3 }, info.description || "");
  const form = h("form", {}, field(t("repos.visibility"), visibility), field(t("repos.category"), category),
    field(t("common.description"), description), h("button", { type: "submit" }, t("common.save")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(() => api("PATCH", manageRepo(ns, repo), {
      is_public: visibility.value === "true", category: category.value, description: description.value,
    }));
  });
  return section(t("repos.edit"), form);
}

async function sharesPanel(ns, repo) {
  const url = `/v2/manage/namespaces/${encodeURIComponent(ns)}/repositories/${encodeURIComponent(repo)}/access-domains`;
  const shares = await api("GET", url);
  const tenant = input("access_domain", { required: true });
  const deadline = input("deadline", { value: "forever", required: true });
  const form = h("form", { class: "inline" }, field(t("repos.share_tenant"), tenant), field(t("repos.share_deadline"), deadline),
    h("button", { type: "submit" }, t("repos.share_add")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const d = deadline.value.trim();
    act(() => api("POST", url, {
      access_domain: tenant.value.trim(), permit: "read",
      deadline: d === "forever" ? "forever" : `${d}T00:00:00.000Z`, description: "",
    }));
  });
  return section(t("repos.shares"),
    table(t("repos.shares"), [t("repos.share_tenant"), t("repos.share_deadline"), t("common.actions")],
      (shares || []).map((s) => [s.access_domain, s.deadline, button(t("common.delete"),
        () => act(() => api("DELETE", `${url}/${encodeURIComponent(s.access_domain)}`)), { "aria-label": `${t("common.delete")} ${s.access_domain}` })])),
    form);
}

const MANIFEST_TYPES = [
  "application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
  "application/vnd.docker.distribution.manifest.list.v2+json", "application/vnd.docker.distribution.manifest.v2+json",
].join(", ");

/// A manifest's platforms (an index's children) and its referrers, as a
/// nested list, read from the registry API.
async function showTree(name, digest, into, depth = 0) {
  const r = await request("GET", `/v2/${name}/manifests/${digest}`, { headers: { Accept: MANIFEST_TYPES } });
  if (!r.ok) {
    into.replaceChildren(h("p", { class: "error" }, await messageOf(r)));
    return;
  }
  const doc = await r.json();
  const list = h("ul", { "aria-label": digest });
  for (const child of doc.manifests || []) {
    const p = child.platform ? `${child.platform.os}/${child.platform.architecture}${child.platform.variant ? "/" + child.platform.variant : ""}` : "";
    const li = h("li", {}, h("span", { class: "kind" }, t("tags.children")), ` ${p} `, h("code", {}, child.digest));
    list.append(li);
    if (depth < 2) {
      const sub = h("div");
      li.append(sub);
      await showTree(name, child.digest, sub, depth + 1);
    }
  }
  const refs = await request("GET", `/v2/${name}/referrers/${digest}`);
  if (refs.ok) {
    for (const ref of (await refs.json()).manifests || []) {
      list.append(h("li", {}, h("span", { class: "kind" }, t("tags.referrers")), ` ${ref.artifactType || ref.mediaType} `, h("code", {}, ref.digest)));
    }
  }
  // A plain image shows what it is; below the top, only what holds more.
  if (list.children.length) into.replaceChildren(list);
  else into.replaceChildren(depth === 0 ? h("p", { class: "empty" }, doc.mediaType || "") : "");
}

// --- upload -----------------------------------------------------------------------

VIEWS.upload = async () => {
  const orgs = (await organizations()).filter((o) => o.auth >= 3);
  const files = input("archives", { type: "file", multiple: true, accept: ".tar,application/x-tar", required: true });
  const org = select("namespace", orgs.map((o) => [o.name, o.name]));
  const results = h("ul", { class: "uploads", "aria-live": "polite" });
  const form = h("form", {}, h("p", {}, t("upload.help")), field(t("upload.files"), files), field(t("upload.target"), org),
    h("button", { type: "submit" }, t("upload.start")));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const chosen = [...files.files];
    if (chosen.length > 10) {
      say(t("upload.too_many"), true);
      return;
    }
    results.replaceChildren();
    for (const file of chosen) {
      const bar = h("progress", { max: 100, value: 0, "aria-label": t("upload.progress", { file: file.name }) });
      const state = h("span", { class: "state" });
      results.append(h("li", { "data-file": file.name }, h("span", { class: "file" }, file.name), bar, state));
      if (file.size > 2 * 1024 ** 3) {
        state.textContent = t("upload.too_big", { file: file.name });
        state.className = "state error";
        continue;
      }
      try {
        const imgs = await archive.images(file);
        const total = Math.max(1, archive.totalBytes(imgs));
        let done = 0;
        const pushed = [];
        for (const img of imgs) {
          const before = done;
          pushed.push(...await archive.push(img, org.value, request, (sent) => {
            done = before + sent;
            bar.value = Math.round((done / total) * 100);
          }));
          done = before + img.blobs.reduce((n, b) => n + b.size, 0);
        }
        bar.value = 100;
        state.textContent = t("upload.file_done", { file: file.name, tags: pushed.join(", ") });
        state.className = "state done";
      } catch (e) {
        state.textContent = t("upload.file_failed", { file: file.name, msg: e.message });
        state.className = "state error";
      }
    }
  });
  return h("div", {}, h("h1", {}, t("upload.title")), form, results);
};

// --- triggers and webhooks --------------------------------------------------------------

const EVENTS = ["PUSH_ARTIFACT", "DELETE_ARTIFACT", "PULL_ARTIFACT"];

VIEWS.webhooks = async (ns, policyId) => {
  const orgs = (await organizations()).filter((o) => o.auth >= 7);
  const listed = await api("GET", enterprise("/webhook/policies?limit=100"));
  const out = h("div", {}, h("h1", {}, t("webhooks.title")));
  if (orgs.length) {
    const org = select("namespace", orgs.map((o) => [o.name, o.name]));
    const name = input("name", { required: true });
    const address = input("address", { type: "url", required: true });
    const repos = input("repos", { value: "**" });
    const tags = input("tags", { value: "**" });
    const events = h("fieldset", {}, h("legend", {}, t("webhooks.events")),
      EVENTS.map((e) => h("label", { class: "check" }, h("input", { type: "checkbox", name: "event", value: e, checked: e === "PUSH_ARTIFACT" }), e)));
    const form = h("form", {}, field(t("common.organization"), org), field(t("common.name"), name),
      field(t("webhooks.address"), address), field(t("webhooks.repos"), repos), field(t("webhooks.tags"), tags), events,
      h("button", { type: "submit" }, t("common.create")));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const selector = (decoration, pattern) => ({ kind: "doublestar", decoration, pattern });
      act(() => api("POST", enterprise(`/namespaces/${encodeURIComponent(org.value)}/webhook/policies`), {
        name: name.value.trim(), enabled: true,
        targets: [{ type: "http", address: address.value.trim(), skip_cert_verify: false, address_type: "internal" }],
        event_types: [...form.querySelectorAll("input[name=event]:checked")].map((i) => i.value),
        scope_rules: [{ tag_selectors: [selector("matches", tags.value)], scope_selectors: { repository: [selector("repoMatches", repos.value)] }, repo_scope_mode: "regular" }],
      }));
    });
    out.append(section(t("webhooks.new"), form));
  }
  out.append(table(t("webhooks.title"), [t("common.name"), t("common.organization"), t("webhooks.address"), t("webhooks.events"), t("common.enabled"), t("common.actions")],
    (listed.policies || []).map((p) => [
      p.name, p.namespace_name, p.targets.map((x) => x.address).join(", "), (p.event_types || []).join(", "), String(p.enabled),
      h("span", { class: "actions" },
        h("a", { class: "button", href: `#/webhooks/${encodeURIComponent(p.namespace_name)}/${p.id}` }, t("webhooks.deliveries")),
        button(t("common.delete"), () => act(() => api("DELETE", enterprise(`/namespaces/${encodeURIComponent(p.namespace_name)}/webhook/policies/${p.id}`))),
          { "aria-label": `${t("common.delete")} ${p.name}` })),
    ])));
  const policy = (listed.policies || []).find((p) => String(p.id) === policyId && p.namespace_name === ns);
  if (policy) {
    const jobs = await api("GET", enterprise(`/namespaces/${encodeURIComponent(ns)}/webhook/policies/${policy.id}/jobs?limit=100`));
    const title = t("webhooks.show_deliveries", { name: policy.name });
    out.append(section(title,
      button(t("common.refresh"), () => route()),
      table(title, [t("webhooks.event"), t("common.status"), t("webhooks.attempts"), t("common.time"), t("common.actions")],
        (jobs.jobs || []).map((j) => {
          const attempts = JSON.parse(j.job_detail || "{}").attempts || [];
          const last = attempts[attempts.length - 1];
          const outcome = last ? (last.status ? `HTTP ${last.status}` : last.error || "") : "";
          return [
          `${j.event_type} #${j.id}`, `${j.status}${j.status_text ? ` (${j.status_text})` : ""}`,
          `${attempts.length}${outcome ? ` — ${outcome}` : ""}`, when(j.updated_at),
          button(t("webhooks.redeliver"), () => act(() => api("POST", `/berth/v1/webhooks/${policy.id}/deliveries/${j.id}/redeliver`)),
            { "aria-label": `${t("webhooks.redeliver")} ${j.id}` }),
          ];
        }))));
  }
  return out;
};

// --- repository pickers -------------------------------------------------------------

/// An organization and repository picker that navigates to `#/<page>/<ns>/<repo>`.
function repoPicker(page, orgs, ns, repo) {
  const org = select("namespace", orgs.map((o) => [o.name, o.name]), ns);
  const name = input("repository", { value: repo || "", required: true });
  const form = h("form", { class: "inline" }, field(t("common.organization"), org), field(t("common.repository"), name),
    h("button", { type: "submit" }, t("common.filter")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    location.hash = `#/${page}/${encodeURIComponent(org.value)}/${encodeURIComponent(name.value.trim())}`;
  });
  return form;
}

// --- aging ---------------------------------------------------------------------------

VIEWS.aging = async (ns, repo, previewId) => {
  const orgs = await organizations();
  const out = h("div", {}, h("h1", {}, t("aging.title")), repoPicker("aging", orgs, ns, repo));
  if (!ns || !repo) return out;
  const url = `${manageRepo(ns, repo)}/retentions`;
  const rules = await api("GET", url);
  const kind = select("template", [["date_rule", t("aging.date_rule")], ["tag_rule", t("aging.tag_rule")]]);
  const value = input("value", { type: "number", min: 1, value: 30, required: true });
  const valueField = field(t("aging.keep_days"), value);
  kind.addEventListener("change", () => {
    valueField.querySelector("label").textContent = t(kind.value === "date_rule" ? "aging.keep_days" : "aging.keep_num");
  });
  const form = h("form", { class: "inline" }, field(t("aging.kind"), kind), valueField,
    h("button", { type: "submit" }, t("common.create")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const params = kind.value === "date_rule" ? { days: value.value } : { num: value.value };
    act(() => api("POST", url, { algorithm: "or", rules: [{ template: kind.value, params, tag_selectors: [] }] }));
  });
  out.append(form, table(t("aging.title"), [t("aging.kind"), t("aging.value"), t("common.actions")],
    (rules || []).map((r) => [
      t(`aging.${r.rules?.[0]?.template}`),
      r.rules?.[0]?.template === "date_rule"
        ? `${t("aging.keep_days")}: ${r.rules?.[0]?.params?.days}`
        : `${t("aging.keep_num")}: ${r.rules?.[0]?.params?.num}`,
      h("span", { class: "actions" },
        h("a", { class: "button", href: `#/aging/${encodeURIComponent(ns)}/${encodeURIComponent(repo)}/${r.id}` }, t("aging.preview")),
        button(t("common.delete"), () => act(() => api("DELETE", `${url}/${r.id}`)), { "aria-label": `${t("common.delete")} ${t("aging.kind")} ${r.id}` })),
    ])));
  if (previewId) {
    const plan = await api("GET", `${url}/${encodeURIComponent(previewId)}/preview`);
    const list = (items) => h("ul", {}, items.map((x) => h("li", {}, `${x.tag} `, h("small", {}, x.reason))));
    out.append(section(t("aging.preview"),
      h("h3", {}, t("aging.would_remove")), plan.remove.length ? list(plan.remove) : h("p", {}, t("common.none")),
      h("h3", {}, t("aging.would_keep")), plan.keep.length ? list(plan.keep) : h("p", {}, t("common.none"))));
  }
  return out;
};

// --- immutable tags ---------------------------------------------------------------------

VIEWS.immutable = async () => {
  const orgs = (await organizations()).filter((o) => o.auth >= 7);
  const rules = await api("GET", enterprise("/immutabletagrules?limit=100"));
  const out = h("div", {}, h("h1", {}, t("immutable.title")));
  if (orgs.length) {
    const org = select("namespace", orgs.map((o) => [o.name, o.name]));
    const repos = input("repos", { value: "**", required: true });
    const tags = input("tags", { value: "v*", required: true });
    const form = h("form", { class: "inline" }, field(t("common.organization"), org), field(t("immutable.repos"), repos),
      field(t("immutable.tags"), tags), h("button", { type: "submit" }, t("common.create")));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      act(() => api("POST", enterprise(`/namespaces/${encodeURIComponent(org.value)}/immutabletagrules`), {
        tag_selectors: [{ kind: "doublestar", decoration: "matches", pattern: tags.value }],
        scope_selectors: { repository: [{ kind: "doublestar", decoration: "repoMatches", pattern: repos.value }] },
      }));
    });
    out.append(form);
  }
  out.append(table(t("immutable.title"), [t("common.organization"), t("immutable.repos"), t("immutable.tags"), t("common.actions")],
    (rules.immutable_rules || []).map((r) => [
      r.namespace_name, r.scope_selectors?.repository?.[0]?.pattern, r.tag_selectors?.[0]?.pattern,
      button(t("common.delete"), () => act(() => api("DELETE", enterprise(`/namespaces/${encodeURIComponent(r.namespace_name)}/immutabletagrules/${r.id}`))),
        { "aria-label": `${t("common.delete")} ${r.id}` }),
    ])));
  return out;
};

// --- sync ------------------------------------------------------------------------------------

VIEWS.sync = async (ns, repo) => {
  const orgs = await organizations();
  const out = h("div", {}, h("h1", {}, t("sync.title")), repoPicker("sync", orgs, ns, repo));
  if (session.system_admin) {
    try {
      const status = await api("GET", "/berth/jobs/replication");
      out.append(section(t("sync.job_status"), h("pre", {}, JSON.stringify(status, null, 2))));
    } catch {
      // Status is for system administrators only.
    }
  }
  if (!ns || !repo) return out;
  const base = manageRepo(ns, repo);
  const rules = await api("GET", `${base}/sync_repo`);
  const regions = (await api("GET", "/v2/manage/regions")) || [];
  const region = select("remoteRegionId", regions.map((r) => [r.regionID, r.regionID]));
  const target = input("remoteNamespace", { required: true });
  const override = h("input", { type: "checkbox", name: "override" });
  const form = h("form", { class: "inline" }, field(t("sync.target_region"), region), field(t("sync.target_org"), target),
    field(t("sync.override"), override), h("button", { type: "submit" }, t("common.create")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(() => api("POST", `${base}/sync_repo`, {
      remoteRegionId: region.value, remoteNamespace: target.value.trim(), syncAuto: true, override: override.checked,
    }));
  });
  const jobs = await api("GET", `${base}/sync_job?filter=${encodeURIComponent("limit::50|offset::0|order::desc")}`).catch(() => []);
  out.append(form,
    table(t("sync.rules"), [t("sync.target_region"), t("sync.target_org"), t("sync.override"), t("common.actions")],
      (rules || []).map((r) => [r.remoteRegionId, r.remoteNamespace, String(r.override),
        button(t("common.delete"), () => act(() => api("DELETE", `${base}/sync_repo`, { remoteRegionId: r.remoteRegionId, remoteNamespace: r.remoteNamespace })),
          { "aria-label": `${t("common.delete")} ${r.remoteNamespace}` })])),
    section(t("sync.jobs"), table(t("sync.jobs"), [t("tags.tag"), t("common.status"), t("common.time")],
      (jobs || []).map((j) => [j.tag || j.repoName || "", j.status, when(j.updatedAt || j.createdAt)]))));
  return out;
};

// --- garbage collection ------------------------------------------------------------------------

VIEWS.gc = async () => {
  const runs = await api("GET", enterprise("/system/gc?limit=50"));
  const out = h("div", {}, h("h1", {}, t("gc.title")),
    button(t("gc.run"), () => act(() => api("POST", enterprise("/system/gc/schedule"), {
      schedule: { type: "Manual" }, parameters: { workers: 1, delete_untagged: false, dry_run: false },
    }))));
  const tasks = Array.isArray(runs) ? runs : runs.tasks || runs.jobs || [];
  out.append(table(t("gc.runs"), ["ID", t("common.status"), t("gc.blobs"), t("gc.manifests"), t("gc.freed"), t("common.time")],
    tasks.map((x) => [x.id, x.job_status, x.job_parameters?.purged_blobs, x.job_parameters?.purged_manifests,
      bytes(x.job_parameters?.freed_space), when(x.update_time)])));
  if (session.system_admin) {
    try {
      out.append(section(t("gc.job_status"), h("pre", {}, JSON.stringify(await api("GET", "/berth/jobs/gc"), null, 2))));
    } catch {
      // Only for system administrators.
    }
  }
  return out;
};

// --- usage ---------------------------------------------------------------------------------------

/// A bar chart as SVG, described for screen readers, with its figures in a
/// table beside it.
function chart(title, points) {
  const w = 600;
  const hgt = 160;
  const max = Math.max(1, ...points.map((p) => p.value || 0));
  const bw = w / Math.max(1, points.length);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${w} ${hgt}`);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title);
  svg.setAttribute("class", "chart");
  points.forEach((p, i) => {
    const v = p.value || 0;
    const r = document.createElementNS("http://www.w3.org/2000/svg", "rect");
    const bh = (v / max) * (hgt - 10);
    r.setAttribute("x", i * bw + 1);
    r.setAttribute("y", hgt - bh);
    r.setAttribute("width", Math.max(1, bw - 2));
    r.setAttribute("height", bh);
    const tip = document.createElementNS("http://www.w3.org/2000/svg", "title");
    tip.textContent = `${p.date}: ${bytes(v)}`;
    r.append(tip);
    svg.append(r);
  });
  return h("figure", {}, svg, h("figcaption", {}, title),
    h("details", {}, h("summary", {}, title), table(title, [t("common.time"), title], points.map((p) => [p.date, bytes(p.value)]))));
}

VIEWS.usage = async (ns = "") => {
  const overview = await api("GET", "/v2/manage/overview");
  const stored = await api("GET", "/v2/manage/reports/store/daily");
  const served = await api("GET", `/v2/manage/reports/downflow/daily${ns ? `?namespace=${encodeURIComponent(ns)}` : ""}`);
  const orgs = overview.namespaces || [];
  const pick = select("namespace", [["", t("audit.any")], ...orgs.map((o) => [o.name, o.name])], ns);
  pick.addEventListener("change", () => {
    location.hash = `#/usage/${encodeURIComponent(pick.value)}`;
  });
  return h("div", {}, h("h1", {}, t("usage.title")),
    section(t("usage.overview"), h("dl", { class: "figures" },
      h("dt", {}, t("usage.orgs")), h("dd", {}, overview.namspace_num),
      h("dt", {}, t("usage.repos")), h("dd", {}, overview.repo_num),
      h("dt", {}, t("repos.tags")), h("dd", {}, overview.image_num),
      h("dt", {}, t("usage.stored")), h("dd", {}, bytes(overview.store_space)),
      h("dt", {}, t("usage.served")), h("dd", {}, bytes(overview.downflow_size)))),
    chart(t("usage.chart", { what: t("usage.stored") }), stored || []),
    section(t("usage.chart", { what: t("usage.served") }), field(t("common.organization"), pick),
      chart(t("usage.chart", { what: t("usage.served") }), served || [])),
    section(t("usage.per_org"), table(t("usage.per_org"), [t("common.organization"), t("usage.stored"), t("usage.served")],
      orgs.map((o) => [o.name, bytes(o.store_space), bytes(o.downflow_size)]))));
};

// --- audit log ---------------------------------------------------------------------------------------

VIEWS.audit = async (query = "") => {
  const params = new URLSearchParams(query);
  if (!params.has("limit")) params.set("limit", "50");
  const log = await api("GET", `/berth/v1/tenants/${encodeURIComponent(session.tenant)}/audit?${params}`);
  const fields = {
    user: input("user", { value: params.get("user") || "" }),
    operation: select("operation", [["", t("audit.any")], ["create", "create"], ["update", "update"], ["delete", "delete"], ["pull", "pull"]], params.get("operation") || ""),
    resource: input("resource", { value: params.get("resource") || "" }),
    status: select("status", [["", t("audit.any")], ["succeeded", t("audit.succeeded")], ["failed", t("audit.failed")]], params.get("status") || ""),
    since: input("since", { type: "date", value: (params.get("since") || "").slice(0, 10) }),
    until: input("until", { type: "date", value: (params.get("until") || "").slice(0, 10) }),
  };
  const form = h("form", { class: "inline", role: "search" },
    field(t("audit.user"), fields.user), field(t("audit.kind"), fields.operation), field(t("audit.resource"), fields.resource),
    field(t("common.status"), fields.status), field(t("audit.since"), fields.since), field(t("audit.until"), fields.until),
    h("button", { type: "submit" }, t("common.filter")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    const q = new URLSearchParams();
    for (const [k, el] of Object.entries(fields)) if (el.value) q.set(k, el.value);
    location.hash = `#/audit/${encodeURIComponent(q.toString())}`;
  });
  const next = new URLSearchParams(params);
  if (log.next) next.set("before", log.next);
  return h("div", {}, h("h1", {}, t("audit.title")), form,
    h("p", {}, t("audit.total", { n: log.total })),
    table(t("audit.title"), [t("common.time"), t("audit.user"), t("audit.operation"), t("audit.resource"), t("common.status"), t("audit.source")],
      log.events.map((e) => [when(e.time), e.user, e.operation, e.resource, String(e.status), e.source])),
    log.next ? h("a", { class: "button", href: `#/audit/${encodeURIComponent(next.toString())}` }, t("common.next")) : null);
};

// --- access keys -------------------------------------------------------------------------------------

VIEWS.keys = async () => {
  const url = `/berth/v1/tenants/${encodeURIComponent(session.tenant)}/users/${encodeURIComponent(session.user)}/keys`;
  const keys = (await api("GET", url)).credentials || [];
  const revealed = h("div", { class: "secret", "aria-live": "assertive" });
  const out = h("div", {}, h("h1", {}, t("keys.title")),
    button(t("keys.new"), async () => {
      try {
        const k = await api("POST", url, { description: "console" });
        revealed.replaceChildren(h("p", {}, t("keys.ak"), ": ", h("code", { id: "new-ak" }, k.access)),
          h("p", {}, t("keys.sk_once"), ": ", h("code", { id: "new-sk" }, k.secret)));
        say(t("common.done"));
        const list = (await api("GET", url)).credentials || [];
        $("#keys-table")?.replaceChildren(keyTable(list, url));
      } catch (e) {
        say(t("common.error", { msg: e.message }), true);
      }
    }),
    revealed, h("div", { id: "keys-table" }, keyTable(keys, url)));
  return out;
};

function keyTable(keys, url) {
  return table(t("keys.title"), [t("keys.ak"), t("common.status"), t("keys.created"), t("common.actions")],
    keys.map((k) => [h("code", {}, k.access), k.status, when(k.created),
      button(t("common.delete"), () => act(() => api("DELETE", `${url}/${encodeURIComponent(k.access)}`)), { "aria-label": `${t("common.delete")} ${k.access}` })]));
}

// --- users, groups, policies (administrators) -------------------------------------------------------

const tenantUrl = (rest) => `/berth/v1/tenants/${encodeURIComponent(session.tenant)}${rest}`;

VIEWS.users = async () => {
  const users = (await api("GET", tenantUrl("/users"))).users || [];
  const name = input("name", { required: true });
  const password = input("password", { type: "password", autocomplete: "new-password" });
  const policies = input("policies", { value: "SWR ReadOnlyAccess" });
  const form = h("form", { class: "inline" }, field(t("common.name"), name), field(t("users.password"), password),
    field(t("users.policies"), policies), h("button", { type: "submit" }, t("common.create")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(async () => {
      const made = await api("POST", tenantUrl("/users"), {
        name: name.value.trim(), password: password.value || undefined,
        policies: policies.value.split(",").map((s) => s.trim()).filter(Boolean),
      });
      if (made.password) say(`${made.name}: ${made.password}`);
    });
  });
  return h("div", {}, h("h1", {}, t("users.title")), form,
    table(t("users.title"), ["ID", t("common.name"), t("users.policies"), t("users.groups"), t("users.disabled"), t("common.actions")],
      users.map((u) => [h("code", {}, u.id), u.name, (u.policies || []).join(", "), (u.groups || []).join(", "), String(u.disabled),
        u.name === session.user ? "" : button(t("common.delete"), () => act(() => api("DELETE", tenantUrl(`/users/${encodeURIComponent(u.name)}`))),
          { "aria-label": `${t("common.delete")} ${u.name}` })])));
};

VIEWS.groups = async () => {
  const groups = (await api("GET", tenantUrl("/groups"))).groups || [];
  const name = input("name", { required: true });
  const policies = input("policies", { value: "SWR ReadOnlyAccess" });
  const form = h("form", { class: "inline" }, field(t("common.name"), name), field(t("users.policies"), policies),
    h("button", { type: "submit" }, t("common.create")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(() => api("POST", tenantUrl("/groups"), { name: name.value.trim(), policies: policies.value.split(",").map((s) => s.trim()).filter(Boolean) }));
  });
  return h("div", {}, h("h1", {}, t("groups.title")), form,
    table(t("groups.title"), [t("common.name"), t("users.policies"), t("groups.members"), t("common.actions")],
      groups.map((g) => [g.name, (g.policies || []).join(", "), (g.members || []).join(", "),
        button(t("common.delete"), () => act(() => api("DELETE", tenantUrl(`/groups/${encodeURIComponent(g.name)}`))), { "aria-label": `${t("common.delete")} ${g.name}` })])));
};

VIEWS.policies = async () => {
  const policies = (await api("GET", tenantUrl("/policies"))).policies || [];
  const name = input("name", { required: true });
  const doc = h("textarea", { name: "document", rows: 6 }, JSON.stringify({ Version: "1.1", Statement: [{ Effect: "Allow", Action: ["swr:repo:download"] }] }, null, 1));
  const form = h("form", {}, field(t("common.name"), name), field(t("policies.document"), doc), h("button", { type: "submit" }, t("common.create")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(() => {
      let parsed;
      try {
        parsed = JSON.parse(doc.value);
      } catch (e) {
        throw new Error(e.message);
      }
      return api("POST", tenantUrl("/policies"), { name: name.value.trim(), document: parsed });
    });
  });
  return h("div", {}, h("h1", {}, t("policies.title")), form,
    table(t("policies.title"), [t("common.name"), t("policies.document"), t("common.actions")],
      policies.map((p) => [p.name, h("pre", {}, JSON.stringify(p.document ?? p, null, 1)),
        button(t("common.delete"), () => act(() => api("DELETE", tenantUrl(`/policies/${encodeURIComponent(p.name)}`))), { "aria-label": `${t("common.delete")} ${p.name}` })])));
};

// --- network access ------------------------------------------------------------------------------------

VIEWS.network = async () => {
  const url = enterprise("/endpoint-policy");
  const policy = await api("GET", url);
  const enabled = h("input", { type: "checkbox", name: "enabled", checked: policy.status === "Enable" });
  const list = h("textarea", { name: "ip_list", rows: 6 }, (policy.ip_list || []).map((x) => x.ip).join("\n"));
  const form = h("form", {}, field(t("network.status"), enabled), field(t("network.ip_list"), list), h("button", { type: "submit" }, t("common.save")));
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    act(async () => {
      await api("PUT", url, { ip_list: list.value.split("\n").map((s) => s.trim()).filter(Boolean).map((ip) => ({ ip, description: "" })) });
      await api("POST", url, { enable: enabled.checked });
    });
  });
  return h("div", {}, h("h1", {}, t("network.title")), form);
};

// --- start -----------------------------------------------------------------------------------------------

async function start() {
  const r = await fetch("/console/api/session", { credentials: "same-origin" });
  session = r.ok ? await r.json() : null;
  renderFrame();
  if (!session && location.hash !== "#/signin") location.hash = "#/signin";
  await route();
}

window.addEventListener("hashchange", route);
start();
