// Policies: the list with live counts, a form to add one, and one policy's failing hosts.
// "Live" is a continuous query over fleet:policy-result documents (the same engine as the
// Watch page): each change of an answer refreshes the counts and the failing hosts.
import { ApiError, del, get, post } from "./api.js";
import { $, badge, clear, debounce, fmtNumber, h, show } from "./dom.js";

let selected = Number(new URLSearchParams(location.search).get("policy")) || null;

async function loadPolicies() {
  const { policies } = await get("/api/v1/fleet/policies");
  const body = $("#policies-table tbody");
  clear(body);
  for (const p of policies) {
    body.append(h("tr", { dataset: { policyId: String(p.id) } },
      h("td", {}, h("a", { href: `/ui/policies?policy=${p.id}`, onclick: (e) => { e.preventDefault(); select(p.id); } }, p.name)),
      h("td", {}, p.platform || "all"),
      h("td", { class: "passing" }, fmtNumber(p.passing_host_count)),
      h("td", { class: "failing" }, fmtNumber(p.failing_host_count)),
      h("td", { class: "unknown" }, fmtNumber(p.unknown_host_count)),
    ));
  }
  if (!policies.length) body.append(h("tr", {}, h("td", { colspan: 5, class: "empty" }, "No policies yet.")));
}

async function loadDetail() {
  if (!selected) return;
  let policy;
  try {
    policy = (await get(`/api/v1/fleet/policies/${selected}`)).policy;
  } catch (err) {
    if (err instanceof ApiError) show($("#policies-error"), err.message);
    return;
  }
  $("#policy-detail").hidden = false;
  $("#detail-title").textContent = policy.name;
  $("#detail-counts").textContent = `${fmtNumber(policy.passing_host_count)} passing, `
    + `${fmtNumber(policy.failing_host_count)} failing, ${fmtNumber(policy.unknown_host_count)} unknown`;
  $("#detail-query").textContent = policy.query;
  const { hosts, count } = await get(`/api/v1/fleet/policies/${selected}/hosts?response=fail&per_page=200`);
  const list = clear($("#failing-hosts"));
  for (const host of hosts) {
    list.append(h("li", {}, h("a", { href: `/ui/hosts/${host.id}` }, host.display_name || host.hostname)));
  }
  if (!hosts.length) list.append(h("li", { class: "empty" }, "None"));
  $("#failing-count").textContent = `(${fmtNumber(count)})`;
}

function select(id) {
  selected = id;
  history.replaceState(null, "", `/ui/policies?policy=${id}`);
  loadDetail();
}

const refresh = debounce(() => { loadPolicies(); loadDetail(); }, 100);

let task = null;

async function follow() {
  const expiry = (Date.now() + 3600 * 1000) * 1000;
  const created = await post("/core/local-query-tasks", {
    taskInfo: { isDirect: false },
    querySpec: {
      query: { term: { propertyName: "documentKind", matchValue: "fleet:policy-result" } },
      options: ["CONTINUOUS", "CONTINUOUS_STOP_MATCH", "COUNT"],
    },
    documentExpirationTimeMicros: expiry,
  });
  task = created.documentSelfLink;
  const events = new EventSource(`${task}/events`);
  $("#policies-state").replaceChildren(badge("pending", "loading"));
  events.onmessage = (event) => {
    const message = JSON.parse(event.data);
    if (message.type === "current") {
      $("#policies-state").replaceChildren(badge("running", "live"));
      refresh();
    } else if (message.type === "change") {
      refresh();
    }
  };
  events.onerror = () => {
    if (events.readyState === EventSource.CLOSED) $("#policies-state").replaceChildren(badge("stopped", "disconnected"));
  };
}

$("#policy-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  show($("#policy-form-error"), "");
  const body = {
    name: $("#policy-name").value,
    query: $("#policy-query").value,
    interval: Number($("#policy-interval").value) || undefined,
  };
  const platform = $("#policy-platform").value.trim();
  if (platform) body.platform = platform;
  try {
    const { policy } = await post("/api/v1/fleet/policies", body);
    $("#policy-form").reset();
    await loadPolicies();
    select(policy.id);
  } catch (err) {
    if (err instanceof ApiError) show($("#policy-form-error"), err.message);
    else throw err;
  }
});

addEventListener("pagehide", () => { if (task) del(task).catch(() => {}); });

loadPolicies();
loadDetail();
follow().catch((err) => show($("#policies-error"), err.message));
