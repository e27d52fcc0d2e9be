// Login: the credentials go to /api/v1/fleet/login, the token to /ui/session, which keeps it
// in an HttpOnly cookie; the page never stores it.
import { $, show } from "./dom.js";

const form = $("#login-form");
const error = $("#login-error");

async function postJson(path, body) {
  const response = await fetch(path, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json" },
    body: JSON.stringify(body),
    credentials: "same-origin",
  });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(data.error || `HTTP ${response.status}`);
  return data;
}

function nextPage() {
  // The server checked `next` (fleetwatch.web.routes.safe_next): a path on this server or
  // the home page, never another site.
  return form.dataset.next || "/ui/hosts";
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  show(error, "");
  const button = form.querySelector("button[type=submit]");
  button.disabled = true;
  try {
    const { token } = await postJson("/api/v1/fleet/login", {
      email: $("#email").value.trim(),
      password: $("#password").value,
    });
    await postJson("/ui/session", { token });
    location.assign(nextPage());
  } catch (err) {
    show(error, err.message);
    $("#password").select();
  } finally {
    button.disabled = false;
  }
});
