// The live query page: editor, targets, Run; then the campaign's results streaming in over
// Server-Sent Events into virtualised tables, with progress, per-host status, Stop and export.
import { ApiError, get, getAll, post } from "./api.js";
import { $, badge, download, fmtNumber, h, show } from "./dom.js";
import { createSqlEditor } from "./sql_editor.js";
import { TargetPicker } from "./targets.js";
import { VirtualTable } from "./virtual_table.js";

const HOST_KEY = "__fleetwatch_host";
const params = new URLSearchParams(location.search);
const runButton = $("#run");
const stopButton = $("#stop");
const runError = $("#run-error");
const editor = createSqlEditor($("#sql-editor"), {
  id: "sql",
  label: "SQL",
  value: params.get("sql") || "SELECT * FROM osquery_info;",
  onRun: () => run(),
});
const picker = new TargetPicker();

const rowsTable = new VirtualTable($("#rows-table"), {
  label: "Result rows",
  emptyText: "Rows appear here as hosts answer",
});
const hostsTable = new VirtualTable($("#hosts-table"), {
  label: "Hosts",
  emptyText: "No hosts",
  columns: [
    { key: "hostname", title: "host", render: (r) => h("a", { href: `/ui/hosts/${r.host_id}` }, r.hostname || `#${r.host_id}`) },
    { key: "status", title: "status", width: 130, render: (r) => badge(r.status, statusText(r.status)) },
    { key: "rows_count", title: "rows", width: 90 },
    { key: "error", title: "error", width: 420 },
  ],
});

let campaign = null; // {id, status, totals, ...}
let events = null;
let rows = [];
let columns = [];
let columnSet = new Set();
let hosts = new Map();
let hostRows = [];

function statusText(status) {
  return { complete: "answered", pending: "waiting", noresponse: "no response" }[status] || status;
}

// --- running --------------------------------------------------------------------------

async function run() {
  show(runError, "");
  editor.clearError();
  const sql = editor.value.trim();
  if (!sql) {
    editor.showError("Write a query to run.");
    return;
  }
  const targets = picker.targets();
  if (!targets.length) {
    show(runError, "Choose what to query: all hosts, or some hosts, labels or teams.");
    return;
  }
  runButton.disabled = true;
  try {
    const data = await post("/api/v1/fleet/queries/run", { query: sql, targets });
    history.replaceState(null, "", `/ui/live?campaign_id=${data.campaign_id}`);
    await openCampaign(data.campaign);
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
    if (err.body.line || /query/i.test(err.message) && err.status === 400) {
      editor.showError(err.message, err.body.line, err.body.column);
    } else {
      show(runError, err.message);
    }
  } finally {
    runButton.disabled = false;
  }
}

runButton.addEventListener("click", run);
stopButton.addEventListener("click", async () => {
  if (!campaign) return;
  stopButton.disabled = true;
  try {
    setStatus((await post(`/api/v1/fleet/campaigns/${campaign.id}/stop`)).campaign);
  } catch (err) {
    show(runError, err.message);
  } finally {
    stopButton.disabled = false;
  }
});

// --- a campaign -----------------------------------------------------------------------

async function openCampaign(body) {
  events?.close();
  campaign = body;
  rows = [];
  columns = [];
  columnSet = new Set();
  hosts = new Map();
  hostRows = [];
  rowsTable.setColumns([]);
  rowsTable.setRows(rows);
  hostsTable.setRows(hostRows);
  $("#campaign").hidden = false;
  $("#export-csv").href = `/api/v1/fleet/campaigns/${body.id}/results?format=csv`;
  $("#export-csv").setAttribute("download", `campaign-${body.id}.csv`);
  $("#campaign-info").textContent = `campaign ${body.id}`;
  updateTotals(body.totals);
  setStatus(body);
  listen(null);
  seedHosts(body.id);
}

/** The targeted hosts still waiting or offline (answers come from the stream). */
async function seedHosts(id) {
  try {
    const results = await getAll(`/api/v1/fleet/campaigns/${id}/results?`, "results", { perPage: 1000 });
    if (campaign?.id !== id) return;
    for (const result of results) {
      const waiting = result.status === "pending" || result.status === "offline";
      if (waiting && !hosts.has(result.host_id)) setHost(result);
    }
    markNonResponders();
    refreshHosts();
  } catch (err) {
    show(runError, err.message);
  }
}

function listen(since) {
  const id = campaign.id;
  const url = `/api/v1/fleet/campaigns/${id}/events${since ? `?since=${since}` : ""}`;
  const source = new EventSource(url);
  events = source;
  const data = (event) => JSON.parse(event.data).data;
  source.addEventListener("totals", (event) => updateTotals(data(event)));
  source.addEventListener("result", (event) => addResult(data(event)));
  source.addEventListener("status", (event) => setStatus(data(event)));
  source.addEventListener("error", (event) => {
    if (event.data) {
      const message = data(event);
      if (message.resync) {
        source.close();
        listen(message.seq ?? null); // fell behind: resume after the last result we have
        return;
      }
      show(runError, message.error);
    } else if (source.readyState === EventSource.CLOSED && campaign?.status === "running") {
      show(runError, "Lost the connection to the server; reload to resume.");
    }
  });
}

function setHost(result) {
  const known = hosts.get(result.host_id);
  const entry = {
    host_id: result.host_id,
    hostname: result.hostname,
    status: result.status,
    error: result.error || "",
    rows_count: result.rows_count ?? (result.rows ? result.rows.length : 0),
  };
  if (known) Object.assign(known, entry);
  else {
    hosts.set(result.host_id, entry);
    hostRows.push(entry);
  }
}

function addResult(result) {
  if (result.status === "pending" || result.status === "offline") {
    if (!hosts.has(result.host_id)) setHost(result);
    refreshHosts();
    return;
  }
  const known = hosts.get(result.host_id);
  if (known && (known.status === "complete" || known.status === "error")) return; // once per host
  setHost(result);
  let newColumns = false;
  for (const row of result.rows || []) {
    for (const key of Object.keys(row)) {
      if (!columnSet.has(key)) {
        columnSet.add(key);
        columns.push(key);
        newColumns = true;
      }
    }
    row[HOST_KEY] = result.hostname;
    rows.push(row);
  }
  if (newColumns) {
    rowsTable.setColumns([
      { key: HOST_KEY, title: "host" },
      ...columns.map((key) => ({ key, title: key })),
    ]);
  }
  rowsTable.changed();
  refreshRowCount();
  refreshHosts();
}

function updateTotals(totals) {
  if (!totals || !campaign) return;
  campaign.totals = totals;
  const targeted = Math.max(1, totals.targeted);
  $("#progress-answered").style.width = `${(100 * totals.responded) / targeted}%`;
  $("#progress-online").style.width = `${(100 * totals.online) / targeted}%`;
  const bar = $("#progress");
  bar.setAttribute("aria-valuemax", String(totals.online));
  bar.setAttribute("aria-valuenow", String(totals.responded));
  bar.setAttribute("aria-valuetext", `${totals.responded} of ${totals.online} online hosts answered; ${totals.targeted} targeted`);
  $("#stat-answered").textContent = fmtNumber(totals.responded);
  $("#stat-online").textContent = fmtNumber(totals.online);
  $("#stat-targeted").textContent = fmtNumber(totals.targeted);
  $("#stat-failed").textContent = fmtNumber(totals.failed);
  $("#stat-pending").textContent = fmtNumber(totals.pending);
  $("#stat-rows").textContent = fmtNumber(totals.rows);
}

function setStatus(body) {
  if (!campaign || !body) return;
  campaign.status = body.status;
  if (body.non_responders) campaign.non_responders = body.non_responders;
  if (body.totals) updateTotals(body.totals);
  $("#campaign-badge").replaceChildren(badge(body.status));
  const running = body.status === "running";
  stopButton.hidden = !running;
  if (!running) {
    markNonResponders();
    // The final totals, then the stream has nothing more to say.
    get(`/api/v1/fleet/campaigns/${campaign.id}`).then((data) => updateTotals(data.campaign.totals));
    setTimeout(() => events?.close(), 1500);
  }
  if (editor.value.trim() === "" && body.query) editor.value = body.query;
}

function markNonResponders() {
  for (const id of campaign?.non_responders || []) {
    const entry = hosts.get(id);
    if (entry && entry.status === "pending") entry.status = "noresponse";
  }
  refreshHosts();
}

// --- tables, filters, export ----------------------------------------------------------

function refreshRowCount() {
  const shown = rowsTable.visibleCount;
  $("#row-count").textContent = shown === rows.length
    ? `${fmtNumber(rows.length)} rows`
    : `${fmtNumber(shown)} of ${fmtNumber(rows.length)} rows`;
}

function refreshHosts() {
  hostsTable.changed();
  const counts = {};
  for (const entry of hostRows) counts[entry.status] = (counts[entry.status] || 0) + 1;
  $("#host-count").textContent = Object.entries(counts)
    .map(([status, n]) => `${fmtNumber(n)} ${statusText(status)}`).join(" · ");
}

$("#row-filter").addEventListener("input", (event) => {
  const text = event.target.value.trim().toLowerCase();
  rowsTable.setFilter(text ? (row) => Object.values(row).some((v) => String(v).toLowerCase().includes(text)) : null);
  refreshRowCount();
});
$("#host-filter").addEventListener("change", (event) => {
  const status = event.target.value;
  hostsTable.setFilter(status ? (r) => r.status === status : null);
});

for (const [tab, pane, other, otherPane] of [
  ["#tab-rows", "#pane-rows", "#tab-hosts", "#pane-hosts"],
  ["#tab-hosts", "#pane-hosts", "#tab-rows", "#pane-rows"],
]) {
  $(tab).addEventListener("click", () => {
    $(tab).setAttribute("aria-selected", "true");
    $(other).setAttribute("aria-selected", "false");
    $(pane).hidden = false;
    $(otherPane).hidden = true;
    rowsTable.refresh();
    hostsTable.refresh();
  });
}

$("#export-json").addEventListener("click", async () => {
  if (!campaign) return;
  const results = await getAll(`/api/v1/fleet/campaigns/${campaign.id}/results?`, "results", { perPage: 1000 });
  const body = { campaign: (await get(`/api/v1/fleet/campaigns/${campaign.id}`)).campaign, results };
  download(`campaign-${campaign.id}.json`, JSON.stringify(body, null, 2), "application/json");
});

// --- start-up: a campaign to reopen, a saved query, a host to target ------------------

async function start() {
  const saved = $("#saved-query");
  const queries = (await get("/api/v1/fleet/queries")).queries || [];
  for (const query of queries) saved.append(h("option", { value: query.id }, query.name));
  saved.addEventListener("change", () => {
    const query = queries.find((q) => String(q.id) === saved.value);
    if (query) editor.value = query.query;
  });
  if (params.get("query_id")) {
    saved.value = params.get("query_id");
    saved.dispatchEvent(new Event("change"));
  }
  const hostId = Number(params.get("host"));
  if (hostId) {
    picker.addHost((await get(`/api/v1/fleet/hosts/${hostId}`)).host);
  } else {
    picker.all.checked = true;
    picker.changed();
  }
  const campaignId = Number(params.get("campaign_id"));
  if (campaignId) {
    try {
      const body = (await get(`/api/v1/fleet/campaigns/${campaignId}`)).campaign;
      editor.value = body.query;
      await openCampaign(body);
    } catch (err) {
      show(runError, err.message);
    }
  }
  editor.focus();
}

start();
