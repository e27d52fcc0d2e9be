// The hosts page: search, filters, sortable columns and paging, all done by the API
// (query, status, platform, team_id, order_key, order_direction, page, per_page); the
// state lives in the URL so a view can be bookmarked and Back works.
import { get, getAll, hasApi, qs } from "./api.js";
import { $, $$, ago, badge, clear, debounce, fmtNumber, h } from "./dom.js";

const params = new URLSearchParams(location.search);
const state = {
  query: params.get("query") || "",
  status: params.get("status") || "",
  platform: params.get("platform") || "",
  label_id: params.get("label_id") || "",
  team_id: params.get("team_id") || "",
  order_key: params.get("order_key") || "hostname",
  order_direction: params.get("order_direction") || "asc",
  page: Number(params.get("page") || 0),
  per_page: Number(params.get("per_page") || 50),
};
const body = $("#hosts-table tbody");
const labels = new Map();
const teams = new Map();
let lastCount = 0;

/** A host's label: an id, or an object with its name. */
function labelName(label) {
  if (label && typeof label === "object") return label.name ?? `#${label.id}`;
  return labels.get(label)?.name ?? `#${label}`;
}

function syncControls() {
  $("#host-search").value = state.query;
  $("#host-status").value = state.status;
  $("#host-per-page").value = String(state.per_page);
  for (const th of $$("#hosts-table th[data-key]")) {
    const sorted = th.dataset.key === state.order_key;
    if (sorted) th.setAttribute("aria-sort", state.order_direction === "asc" ? "ascending" : "descending");
    else th.removeAttribute("aria-sort");
  }
}

async function load() {
  syncControls();
  history.replaceState(null, "", `/ui/hosts${qs({ ...state, page: state.page || "", per_page: state.per_page === 50 ? "" : state.per_page })}`);
  const data = await get(`/api/v1/fleet/hosts${qs(state)}`);
  lastCount = data.count;
  clear(body);
  for (const host of data.hosts) {
    body.append(h("tr", {},
      h("td", {}, badge(host.status)),
      h("td", {}, h("a", { href: `/ui/hosts/${host.id}` }, host.display_name || host.hostname)),
      h("td", {}, host.platform),
      h("td", {}, host.os_version),
      h("td", {}, host.osquery_version),
      h("td", {}, (host.labels || []).map((label) => h("span", { class: "chip" }, labelName(label)))),
      h("td", {}, host.team_id == null ? h("span", { class: "subtle" }, "No team") : teams.get(host.team_id)?.name ?? `Team ${host.team_id}`),
      h("td", { title: host.seen_time }, ago(host.seen_time)),
    ));
  }
  if (!data.hosts.length) {
    body.append(h("tr", {}, h("td", { colspan: 8, class: "empty" },
      state.query || state.status || state.platform ? "No host matches these filters." : "No hosts have enrolled yet.")));
  }
  const first = data.count ? state.page * state.per_page + 1 : 0;
  const last = Math.min(data.count, (state.page + 1) * state.per_page);
  $("#host-range").textContent = `${fmtNumber(first)}–${fmtNumber(last)} of ${fmtNumber(data.count)}`;
  $("#host-prev").disabled = state.page === 0;
  $("#host-next").disabled = last >= data.count;
}

async function summary() {
  const [all, online] = await Promise.all([
    get("/api/v1/fleet/hosts?per_page=1"),
    get("/api/v1/fleet/hosts?per_page=1&status=online"),
  ]);
  $("#host-summary").textContent = `${fmtNumber(all.count)} hosts · ${fmtNumber(online.count)} online`;
}

async function platforms() {
  // Distinct platforms of (up to) the first thousand hosts, for the filter.
  const hosts = await getAll("/api/v1/fleet/hosts?order_key=platform", "hosts", { limit: 1000 });
  const select = $("#host-platform");
  for (const platform of [...new Set(hosts.map((host) => host.platform).filter(Boolean))].sort()) {
    select.append(h("option", { value: platform }, platform));
  }
  select.value = state.platform;
}

async function optional(name, map, select, key) {
  if (!(await hasApi(name))) return;
  for (const item of (await get(`/api/v1/fleet/${name}`))[name] || []) {
    map.set(item.id, item);
    select.append(h("option", { value: item.id }, item.name));
  }
  select.value = state[key];
  select.addEventListener("change", () => { state[key] = select.value; state.page = 0; load(); });
}

const reload = () => { state.page = 0; load(); };
$("#host-filters").addEventListener("submit", (event) => event.preventDefault());
$("#host-search").addEventListener("input", debounce((event) => { state.query = event.target.value.trim(); reload(); }, 250));
$("#host-status").addEventListener("change", (event) => { state.status = event.target.value; reload(); });
$("#host-platform").addEventListener("change", (event) => { state.platform = event.target.value; reload(); });
$("#host-per-page").addEventListener("change", (event) => { state.per_page = Number(event.target.value); reload(); });
$("#host-prev").addEventListener("click", () => { state.page = Math.max(0, state.page - 1); load(); });
$("#host-next").addEventListener("click", () => {
  if ((state.page + 1) * state.per_page < lastCount) { state.page += 1; load(); }
});
for (const th of $$("#hosts-table th[data-key]")) {
  th.querySelector("button").addEventListener("click", () => {
    const key = th.dataset.key;
    state.order_direction = state.order_key === key && state.order_direction === "asc" ? "desc" : "asc";
    state.order_key = key;
    load();
  });
}

await Promise.all([
  optional("labels", labels, $("#host-label"), "label_id"),
  optional("teams", teams, $("#host-team"), "team_id"),
]);
load();
summary();
platforms();
setInterval(() => { if (!document.hidden) { load(); summary(); } }, 10000);
