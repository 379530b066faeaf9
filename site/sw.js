// gangway service worker: authorise this browser's address when gangway pushes (issue 7).
// A push carries a short-lived, single-use token; the worker posts it to the IPAuth API exactly as the
// page does with a link, then shows the result (browsers require a visible notification for a push).
// Clicking the notification opens the page's status view. No framework, no build step.

const TOKEN = /^g2\.[0-9]{1,24}\.[0-9a-f]{8}\.[A-Za-z0-9_-]{16,2048}$/;
const TAG = "gangway-ipauth";

self.addEventListener("install", () => self.skipWaiting());
self.addEventListener("activate", (event) => event.waitUntil(self.clients.claim()));

async function apiBase() {
  const resp = await fetch(new URL("config.json", self.registration.scope), { cache: "no-store" });
  if (!resp.ok) throw new Error(`config.json: ${resp.status}`);
  const cfg = await resp.json();
  if (typeof cfg.api_url !== "string" || !cfg.api_url) throw new Error("config.json has no api_url");
  return cfg.api_url.replace(/\/+$/, "");
}

function readPush(event) {
  try {
    const data = event.data ? event.data.json() : null;
    if (data && data.type === "ipauth" && typeof data.token === "string" && TOKEN.test(data.token)) return data;
  } catch {
    // not JSON: not ours
  }
  return null;
}

async function authorise(token) {
  const base = await apiBase();
  const resp = await fetch(base + "/ipauth/authorize", {
    method: "POST",
    mode: "cors",
    credentials: "omit",
    cache: "no-store",
    referrerPolicy: "no-referrer",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token }),
  });
  let body = {};
  try {
    body = await resp.json();
  } catch {
    body = {};
  }
  return { ok: resp.ok, status: resp.status, body };
}

async function onPush(event) {
  const data = readPush(event);
  let title = "gangway";
  let body = "A notification gangway couldn't read. Run /addip in Discord for a link.";
  if (data) {
    try {
      const result = await authorise(data.token);
      if (result.ok) {
        title = "You're in";
        body = `${result.body.address} can reach the game servers. Have fun!`;
      } else {
        title = "Couldn't let you in";
        const message = result.body && result.body.error && result.body.error.message;
        body = message || "Run /addip in Discord and open the link on this device.";
      }
    } catch {
      title = "Couldn't reach gangway";
      body = "Nothing was changed. Run /addip in Discord for a link instead.";
    }
  }
  await self.registration.showNotification(title, { body, tag: TAG, renotify: true, data: { view: "status" } });
}

self.addEventListener("push", (event) => event.waitUntil(onPush(event)));

async function openStatus() {
  const url = new URL("./", self.registration.scope).href;
  const windows = await self.clients.matchAll({ type: "window", includeUncontrolled: true });
  for (const win of windows) {
    if (win.url.split("#")[0] === url && "focus" in win) return win.focus();
  }
  return self.clients.openWindow(url);
}

self.addEventListener("notificationclick", (event) => {
  event.notification.close();
  event.waitUntil(openStatus());
});
