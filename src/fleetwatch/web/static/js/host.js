// One host: status, facts, inventory, labels and its recent result and status logs.
import { ApiError, get, hasApi, qs } from "./api.js";
import { $, ago, badge, clear, fmtNumber, fmtTime, h, show } from "./dom.js";

const id = Number($("#host-page").dataset.hostId);
const ABOUT = [
  ["hostname", "Hostname"], ["display_name", "Display name"], ["uuid", "UUID"],
  ["platform", "Platform"], ["os_version", "OS version"], ["osquery_version", "osquery"],
  ["hardware_vendor", "Vendor"], ["hardware_model", "Model"], ["hardware_serial", "Serial"],
  ["cpu_brand", "CPU"], ["cpu_logical_cores", "Cores"], ["memory", "Memory"],
  ["primary_ip", "IP address"], ["primary_mac", "MAC"], ["team_id", "Team"],
  ["enrolled_at", "Enrolled"], ["seen_time", "Last seen"], ["detail_updated_at", "Details refreshed"],
];

function value(key, v) {
  if (v === null || v === undefined || v === "") return "—";
  if (key === "memory") return `${(Number(v) / 2 ** 30).toFixed(1)} GiB`;
  if (key.endsWith("_at") || key === "seen_time") return `${fmtTime(v)} (${ago(v)})`;
  return typeof v === "object" ? JSON.stringify(v) : String(v);
}

function facts(list, pairs) {
  clear(list);
  for (const [label, v] of pairs) list.append(h("dt", {}, label), h("dd", {}, v));
}

async function loadHost() {
  let host;
  try {
    host = (await get(`/api/v1/fleet/hosts/${id}`)).host;
  } catch (err) {
    if (err instanceof ApiError) show($("#host-error"), err.message);
    return;
  }
  document.title = `${host.display_name || host.hostname} · fleetwatch`;
  $("#host-name").textContent = host.display_name || host.hostname;
  $("#host-status").replaceChildren(badge(host.status));
  facts($("#about"), ABOUT.map(([key, label]) => [label, value(key, host[key])]));
  facts($("#inventory"), Object.keys(host.inventory || {}).sort()
    .map((key) => [key, value(key, host.inventory[key])]));
  const names = new Map();
  if (await hasApi("labels")) {
    for (const label of (await get("/api/v1/fleet/labels")).labels || []) names.set(label.id, label.name);
  }
  const chips = (host.labels || []).map((label) => h("span", { class: "chip" },
    typeof label === "object" ? label.name : names.get(label) ?? `label ${label}`));
  $("#host-labels").replaceChildren(...(chips.length ? chips : ["None"]));
}

async function loadLogs() {
  const type = $("#log-type").value;
  const data = await get(`/api/v1/fleet/hosts/${id}/logs${qs({ type, per_page: 50 })}`);
  const body = $("#logs-table tbody");
  clear(body);
  for (const log of data.logs) {
    const payload = log.columns ?? log.snapshot ?? log.message ?? log.raw ?? log;
    const time = log.unixTime ? Number(log.unixTime) : log.calendarTime;
    body.append(h("tr", {},
      h("td", { title: fmtTime(time) }, ago(time)),
      h("td", {}, log.log_type ?? ""),
      h("td", { class: "mono" }, log.name ?? ""),
      h("td", {}, log.action ?? log.severity ?? ""),
      h("td", { class: "mono" }, h("code", {}, JSON.stringify(payload).slice(0, 300))),
    ));
  }
  if (!data.logs.length) body.append(h("tr", {}, h("td", { colspan: 5, class: "empty" }, "No logs from this host yet.")));
  $("#log-count").textContent = `${fmtNumber(data.count)} entries`;
}

$("#log-type").addEventListener("change", loadLogs);
loadHost();
loadLogs();
setInterval(() => { if (!document.hidden) { loadHost(); loadLogs(); } }, 15000);
