// Every signed-in page: theme toggle, logout, and nav entries for optional APIs.
import { ApiError, api, hasApi } from "./api.js";
import { $, $$ } from "./dom.js";

function currentTheme() {
  const set = document.documentElement.dataset.theme;
  if (set) return set;
  return matchMedia("(prefers-color-scheme: dark)").matches ? "dark" : "light";
}

$("#theme-toggle")?.addEventListener("click", () => {
  const next = currentTheme() === "dark" ? "light" : "dark";
  document.documentElement.dataset.theme = next;
  try { localStorage.setItem("fleetwatch-theme", next); } catch { /* private mode */ }
});

$("#logout")?.addEventListener("click", async () => {
  try {
    await api("DELETE", "/ui/session", undefined, { redirectOn401: false });
  } catch (err) {
    if (!(err instanceof ApiError)) throw err;
  }
  location.assign("/ui/login");
});

// Labels and teams appear once their APIs exist on this server.
for (const name of ["labels", "teams"]) {
  hasApi(name).then((present) => {
    for (const el of $$(`[data-needs-api="${name}"]`)) el.hidden = !present;
  });
}
