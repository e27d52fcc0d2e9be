// The live query page: editor, targets, Run; then the campaign's results streaming in over
// Server-Sent Events into virtualised tables, with progress, per-host status, Stop and export;
// once it is over, re-run it on the hosts that did not answer, or compare it with another run.
import { ApiError, get, getAll, post, qs } from "./api.js";
import { $, badge, download, fmtNumber, fmtTime, h, show } from "./dom.js";
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
  return { complete: "answered", late: "answered late", pending: "waiting", noresponse: "no response" }[status] || status;
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
  $("#compare").hidden = true;
  showOrigin(body);
  showCost(body);
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
  setStreamState("pending", "loading");
  const data = (event) => JSON.parse(event.data).data;
  // caught up (after the initial results or a resume's replay): only now is it live
  source.addEventListener("current", () => setStreamState("running", "live"));
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
      setStreamState("stopped", "disconnected");
      show(runError, "Lost the connection to the server; reload to resume.");
    }
  });
}

/** The stream's state beside the results: "loading" until the server's `current` marker. */
function setStreamState(status, text) {
  $("#stream-state").replaceChildren(badge(status, text));
}

function setHost(result) {
  const known = hosts.get(result.host_id);
  const entry = {
    host_id: result.host_id,
    hostname: result.hostname,
    // an answer after the campaign expired (the host has left non_responders)
    status: result.late && result.status === "complete" ? "late" : result.status,
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
  if (known && ["complete", "late", "error"].includes(known.status)) return; // once per host
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
  $("#stat-late").textContent = fmtNumber(totals.late || 0);
  $("#stat-late-box").hidden = !totals.late;
  refreshRerun();
  if (campaign.status === "running") scheduleCost();
}

// --- cost and truncation ----------------------------------------------------------------

/** Seconds between two reads of a running campaign's cost (its totals come by the stream). */
const COST_EVERY = 2000;
let costTimer = 0;

/** Read the campaign's cost again soon (once per COST_EVERY however many answers come). */
function scheduleCost() {
  if (costTimer) return;
  const id = campaign.id;
  costTimer = setTimeout(async () => {
    costTimer = 0;
    try {
      const data = await get(`/api/v1/fleet/campaigns/${id}`);
      if (campaign?.id === id) showCost(data.campaign);
    } catch {
      // the next totals try again
    }
  }, COST_EVERY);
}

function fmtMs(value) {
  return value == null ? "–" : `${fmtNumber(value)} ms`;
}

function fmtBytes(value) {
  if (value == null) return "–";
  for (const [size, unit] of [[2 ** 30, "GiB"], [2 ** 20, "MiB"], [2 ** 10, "KiB"]]) {
    if (value >= size) return `${(value / size).toFixed(1)} ${unit}`;
  }
  return `${fmtNumber(value)} B`;
}

/** What a cap is called where a person reads why rows are missing (`truncated_reason`). */
const CAPS = {
  max_rows: "the campaign's row limit (max_rows)",
  max_bytes: "the campaign's size limit (max_bytes)",
  rows_per_host: "the server's rows per host",
  result_bytes: "the server's bytes per answer",
  rows_per_campaign: "the server's rows per campaign",
};

/** p50 / p95 / max of wall time and memory over the answers; `truncated` and why. */
function showCost(body) {
  const cost = body.cost;
  if (cost) {
    const triple = (measure, fmt) => [measure?.p50, measure?.p95, measure?.max].map(fmt).join(" · ");
    $("#cost-wall").textContent = triple(cost.wall_time_ms, fmtMs);
    $("#cost-memory").textContent = triple(cost.memory, fmtBytes);
    $("#cost").hidden = !cost.samples;
  }
  const notice = $("#truncated");
  const parts = [];
  if (body.truncated) {
    const reason = body.truncated_reason;
    const limit = body.limits?.[reason];
    parts.push(h("b", {}, "Truncated: "),
      `${CAPS[reason] || reason}${limit != null ? ` (${fmtNumber(limit)})` : ""} was reached. `
      + "No host was asked after that; later answers were counted but their rows not stored.");
  } else if (body.totals?.truncated) {
    parts.push(h("b", {}, "Truncated: "),
      `${fmtNumber(body.totals.truncated)} answers were cut by the server's caps per host or per campaign.`);
  }
  notice.replaceChildren(...parts);
  notice.hidden = !parts.length;
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
    get(`/api/v1/fleet/campaigns/${campaign.id}`).then((data) => {
      updateTotals(data.campaign.totals);
      showCost(data.campaign);
    });
    // An expired campaign still takes late answers from the hosts it waited for: keep
    // listening, so they arrive here as they do on the server.
    if (body.status !== "expired") setTimeout(() => events?.close(), 1500);
  }
  if (editor.value.trim() === "" && body.query) editor.value = body.query;
  refreshRerun();
}

function markNonResponders() {
  for (const id of campaign?.non_responders || []) {
    const entry = hosts.get(id);
    if (entry && entry.status === "pending") entry.status = "noresponse";
  }
  refreshHosts();
}

// --- re-run and compare ---------------------------------------------------------------

const rerunButton = $("#rerun");

/** Targets with no answer stored: the hosts a "non_responders" re-run asks. */
function unanswered() {
  const totals = campaign?.totals;
  return totals ? Math.max(0, totals.targeted - totals.responded) : 0;
}

function refreshRerun() {
  if (!campaign) return;
  const n = unanswered();
  rerunButton.hidden = campaign.status === "running" || n === 0;
  rerunButton.textContent = `Re-run on the ${fmtNumber(n)} that did not answer`;
}

/** Where the campaign came from: a re-run of another, a canary sample of its targets. */
function showOrigin(body) {
  const parts = [];
  if (body.rerun_of) {
    parts.push("Re-run of ", h("a", { href: `/ui/live?campaign_id=${body.rerun_of}` }, `campaign ${body.rerun_of}`));
  }
  if (body.sample) {
    if (parts.length) parts.push(" · ");
    parts.push(`A sample of ${fmtNumber(body.sample.chosen)} of ${fmtNumber(body.sample.of)} targets`);
  }
  $("#campaign-origin").replaceChildren(...parts);
  $("#campaign-origin").hidden = !parts.length;
}

rerunButton.addEventListener("click", async () => {
  if (!campaign) return;
  rerunButton.disabled = true;
  show(runError, "");
  try {
    const data = await post(`/api/v1/fleet/campaigns/${campaign.id}/rerun`, { hosts: "non_responders" });
    history.replaceState(null, "", `/ui/live?campaign_id=${data.campaign_id}`);
    await openCampaign(data.campaign);
  } catch (err) {
    show(runError, err.message);
  } finally {
    rerunButton.disabled = false;
  }
});

$("#compare-open").addEventListener("click", async () => {
  if (!campaign) return;
  const select = $("#compare-with");
  const summary = $("#compare-summary");
  $("#compare").hidden = false;
  $("#diff-table").hidden = true;
  select.replaceChildren();
  const runs = (await get(`/api/v1/fleet/campaigns${qs({ sql: campaign.query, per_page: 100 })}`))
    .campaigns.filter((c) => c.id !== campaign.id);
  $("#compare-run").disabled = !runs.length;
  if (!runs.length) {
    summary.textContent = "No other run of this query to compare with.";
    return;
  }
  summary.textContent = "";
  for (const other of runs) {
    select.append(h("option", { value: other.id }, `campaign ${other.id} · ${fmtTime(other.created_at)} · ${other.status}`));
  }
  // the run just before this one, when there is one
  const previous = runs.find((c) => c.id < campaign.id);
  if (previous) select.value = String(previous.id);
});

$("#compare-close").addEventListener("click", () => { $("#compare").hidden = true; });

/** Rows shown per comparison: the API has them all, a page need not draw them all. */
const MAX_DIFF_ROWS = 2000;

$("#compare-run").addEventListener("click", async () => {
  if (!campaign) return;
  const against = $("#compare-with").value;
  try {
    const diff = await get(`/api/v1/fleet/campaigns/${campaign.id}/diff${qs({ against })}`);
    const body = $("#diff-table tbody");
    const lines = [];
    for (const host of diff.hosts) {
      const name = host.hostname || `#${host.host_id}`;
      for (const [rows, change, text] of [[host.added, "complete", "+ added"], [host.removed, "error", "− removed"]]) {
        for (const row of rows) {
          if (lines.length < MAX_DIFF_ROWS) {
            lines.push(h("tr", {}, h("td", {}, name), h("td", {}, badge(change, text)), h("td", {}, h("code", {}, JSON.stringify(row)))));
          }
        }
      }
    }
    body.replaceChildren(...lines);
    $("#diff-table").hidden = !lines.length;
    $("#compare-summary").textContent = [
      `${fmtNumber(diff.hosts.length)} hosts answered differently`,
      `${fmtNumber(diff.only_in_campaign.length)} answered only this run`,
      `${fmtNumber(diff.only_in_other.length)} answered only campaign ${against}`,
    ].join(" · ");
  } catch (err) {
    $("#compare-summary").textContent = err.message;
  }
});

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
