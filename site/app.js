// gangway IPAuth page: reads the link's token from the URL fragment, asks the API to let this
// browser's address in, and shows one of a few states. No framework, no build step.
// The API's origin comes from config.json (written by the deploy step, served by the local stack).

const TOKEN = /^g2\.[0-9]{1,24}\.[0-9a-f]{8}\.[A-Za-z0-9_-]{16,2048}$/;
// Links from before the AES-GCM format (KMS-sealed): shown as expired, with what to do.
const OLD_TOKEN = /^g1\.[0-9]{1,24}\.[A-Za-z0-9_-]{16,2048}$/;

const $ = (id) => document.getElementById(id);

const TEXT = {
  working: ["Letting your IP address in…", "Checking your link and detecting your address. This takes a second."],
  success: ["You're in", "Your IP address can now reach this Discord server's game servers."],
  replaced: ["You're in", "Your IP address can now reach the game servers. It replaced the address you let in before."],
  already: ["Already let in", "This address was already let in with this link. Nothing else to do."],
  expired: ["This link has expired", "Links only work for a while. Run /addip in Discord for a fresh one (guests: ask for a new guest link)."],
  used_up: ["This guest link is used up", "It has let in as many addresses as it allows. Ask the person who shared it for a new one, or use /addip if you're a member."],
  invalid: ["This link isn't valid", "Part of it may be missing or changed. Open the exact link the bot gave you, or run /addip in Discord for a new one."],
  rate_limited: ["Too many tries", "Please wait a few minutes, then open the link again."],
  error: ["Something went wrong", "We couldn't reach gangway. Nothing was changed. Check your connection and try again."],
  checking: ["Checking your address…", "Looking up whether your IP address is let in."],
  "checked-in": ["Your address is let in", "This IP address can reach the game servers of the Discord servers below."],
  "checked-out": ["Your address isn't let in", "Run /addip in a Discord server that uses gangway and open the link on this device."],
};

let lastAction = null;
// The member link this page just used: it binds a push subscription to that member (POST /push/subscribe).
// Kept in memory only, like the link itself.
let memberToken = null;

function show(state, extra = {}) {
  const [title, message] = TEXT[state];
  const card = $("card");
  card.dataset.state = state;
  card.setAttribute("aria-busy", state === "working" || state === "checking" ? "true" : "false");
  $("title").textContent = extra.title || title;
  $("message").textContent = extra.message || message;
  const details = extra.details;
  $("details").hidden = !details;
  if (details) {
    $("address").textContent = details.address;
    const when = new Date(details.expires_at * 1000);
    const expires = $("expires");
    expires.dateTime = when.toISOString();
    expires.textContent = details.expires_at ? formatDate(when) : "—";
    $("relative").textContent = details.expires_at ? `(${relative(when)})` : "";
    $("expires-row").hidden = !details.expires_at;
    $("games-row").hidden = !details.games;
    $("games").textContent = details.games || "";
    $("games").classList.toggle("note", Boolean(details.gamesNote));
  }
  $("howto").hidden = !extra.howto;
  $("push").hidden = true; // offerPush() shows it again where it applies
  $("retry").hidden = !extra.retry;
  if (state !== "working" && state !== "checking") {
    $("title").focus({ preventScroll: true });
  }
}

function formatDate(d) {
  return new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" }).format(d);
}

function relative(d) {
  const seconds = (d.getTime() - Date.now()) / 1000;
  const rtf = new Intl.RelativeTimeFormat(undefined, { numeric: "auto" });
  if (Math.abs(seconds) >= 3 * 86400) return rtf.format(Math.round(seconds / 86400), "day");
  if (Math.abs(seconds) >= 2 * 3600) return rtf.format(Math.round(seconds / 3600), "hour");
  return rtf.format(Math.round(seconds / 60), "minute");
}

function gamesText(body) {
  if (!body.games || body.games.length === 0) return "No games yet: they will use this access once created.";
  const running = new Set(body.running || []);
  return body.games.map((g) => (running.has(g) ? `${g} (running)` : g)).join(", ");
}

async function apiBase() {
  const resp = await fetch("config.json", { cache: "no-store" });
  if (!resp.ok) throw new Error(`config.json: ${resp.status}`);
  const cfg = await resp.json();
  if (typeof cfg.api_url !== "string" || !cfg.api_url) throw new Error("config.json has no api_url");
  return cfg.api_url.replace(/\/+$/, "");
}

async function call(path, init) {
  const base = await apiBase();
  const resp = await fetch(base + path, {
    ...init,
    mode: "cors",
    credentials: "omit",
    cache: "no-store",
    referrerPolicy: "no-referrer",
  });
  let body = {};
  try {
    body = await resp.json();
  } catch {
    body = {};
  }
  return { status: resp.status, body, retryAfter: resp.headers.get("Retry-After") };
}

function showFailure(result, retryable) {
  const code = result.body && result.body.error && result.body.error.code;
  if (result.status === 403 && (code === "expired" || code === "used_up" || code === "invalid")) {
    show(code);
  } else if (result.status === 429) {
    const minutes = Math.max(1, Math.ceil(Number(result.retryAfter || 60) / 60));
    show("rate_limited", { message: `Please wait about ${minutes} minute${minutes === 1 ? "" : "s"}, then open the link again.` });
  } else if (result.status === 400 || result.status === 413) {
    show("invalid");
  } else {
    show("error", { retry: retryable });
  }
}

// The 200 answer's body, or null once the failure is shown (network errors and refusals alike).
async function answerOf(path, init) {
  let result;
  try {
    result = await call(path, init);
  } catch {
    show("error", { retry: true });
    return null;
  }
  if (result.status !== 200) {
    showFailure(result, true);
    return null;
  }
  return result.body;
}

async function authorize(token) {
  lastAction = () => authorize(token);
  show("working");
  const b = await answerOf("/ipauth/authorize", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ token }),
  });
  if (!b) return;
  const state = b.status === "already" ? "already" : b.status === "replaced" ? "replaced" : "success";
  show(state, {
    details: { address: b.address, expires_at: b.expires_at, games: gamesText(b), gamesNote: !b.games.length },
    howto: true,
  });
  memberToken = b.kind === "member" ? token : null;
  offerPush();
}

async function check() {
  lastAction = check;
  show("checking");
  const b = await answerOf("/ipauth/check", { method: "GET" });
  if (!b) return;
  if (!b.authorised) {
    show("checked-out", { details: { address: b.address, expires_at: 0 } });
    return;
  }
  const latest = b.grants[0];
  const count = b.grants.length;
  show("checked-in", {
    details: {
      address: b.address,
      expires_at: latest.expires_at,
      games: null,
    },
    message: `This IP address can reach the game servers of ${count} Discord server${count === 1 ? "" : "s"} using gangway.`,
    howto: true,
  });
  offerPush();
}

// -- web push: "authorise automatically next time" (issue 7) ------------------------------------------

function pushSupported() {
  return "serviceWorker" in navigator && "PushManager" in window && "Notification" in window;
}

function pushStatus(text, tone = "") {
  const el = $("push-status");
  el.textContent = text;
  el.dataset.tone = tone;
}

async function currentSubscription() {
  const reg = await navigator.serviceWorker.getRegistration();
  return reg ? reg.pushManager.getSubscription() : null;
}

function keyBytes(b64url) {
  const b64 = b64url.replace(/-/g, "+").replace(/_/g, "/") + "===".slice((b64url.length + 3) % 4);
  return Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
}

function sameKey(sub, key) {
  const current = sub.options && sub.options.applicationServerKey;
  if (!current) return false;
  const a = new Uint8Array(current);
  return a.length === key.length && a.every((v, i) => v === key[i]);
}

async function offerPush() {
  const section = $("push");
  if (!pushSupported()) return;
  let sub = null;
  try {
    sub = await currentSubscription();
  } catch {
    sub = null;
  }
  if (!memberToken && !sub) return;
  section.hidden = false;
  section.dataset.state = sub ? "on" : "off";
  $("push-choice").hidden = !memberToken;
  $("push-on").hidden = !memberToken;
  $("push-on").textContent = sub ? "Save" : "Turn on";
  $("push-off").hidden = !sub;
  pushStatus(sub ? "Automatic authorisation is on in this browser." : "", sub ? "ok" : "");
}

async function turnOn() {
  if (!memberToken) return;
  const button = $("push-on");
  button.disabled = true;
  pushStatus("Turning on…");
  try {
    const permission = await Notification.requestPermission();
    if (permission !== "granted") {
      pushStatus("Notifications are blocked for this site, so gangway can't reach this browser. Allow them in the browser's site settings, then try again.", "bad");
      return;
    }
    const reg = await navigator.serviceWorker.register("sw.js");
    await navigator.serviceWorker.ready;
    const keyAnswer = await call("/push/key", { method: "GET" });
    if (keyAnswer.status !== 200) throw new Error(`key: ${keyAnswer.status}`);
    const key = keyBytes(keyAnswer.body.public_key);
    let sub = await reg.pushManager.getSubscription();
    if (sub && !sameKey(sub, key)) {
      await sub.unsubscribe(); // made with an older key: the push service would refuse our pushes
      sub = null;
    }
    if (!sub) sub = await reg.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key });
    const preference = document.querySelector("input[name='push-pref']:checked").value;
    const saved = await call("/push/subscribe", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: memberToken, subscription: sub.toJSON(), preference }),
    });
    if (saved.status !== 200) {
      const message = saved.body && saved.body.error && saved.body.error.message;
      pushStatus(message || "gangway couldn't save this browser. Try again with a fresh /addip link.", "bad");
      return;
    }
    $("push").dataset.state = "on";
    $("push-off").hidden = false;
    button.textContent = "Save";
    const when = preference === "start" ? "/addip, and when a game you play starts" : "/addip";
    if (saved.body && saved.body.confirmed === false) {
      // A leaked link must not make someone else's browser a way in: its member confirms it in Discord.
      pushStatus(
        "Almost: in Discord, press Confirm automatic authorisation under your /addip reply. " +
          `Then, next time you run ${when}, this browser lets itself in.`,
        "ok",
      );
    } else {
      pushStatus(`On. Next time you run ${when}, this browser lets itself in.`, "ok");
    }
  } catch (err) {
    pushStatus("This browser couldn't subscribe to notifications. You can keep using links from /addip.", "bad");
  } finally {
    button.disabled = false;
  }
}

async function turnOff() {
  const button = $("push-off");
  button.disabled = true;
  try {
    const sub = await currentSubscription();
    if (sub) {
      const json = sub.toJSON();
      await call("/push/subscribe", {
        method: "DELETE",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ endpoint: json.endpoint, auth: json.keys.auth }),
      });
      await sub.unsubscribe();
    }
    $("push").dataset.state = "off";
    button.hidden = true;
    $("push-on").textContent = "Turn on";
    pushStatus("Off. gangway won't notify this browser; use /addip links.", "ok");
  } catch {
    pushStatus("Couldn't turn it off right now. Try again in a minute.", "bad");
  } finally {
    button.disabled = false;
  }
}

function route() {
  let raw;
  try {
    raw = decodeURIComponent(window.location.hash.replace(/^#/, ""));
  } catch {
    raw = "%"; // a broken escape: not a link we made
  }
  memberToken = null;
  if (raw) {
    // Keep the secret out of the address bar, the history and anything copied from them.
    history.replaceState(null, "", window.location.pathname + window.location.search);
  }
  if (!raw) {
    check();
  } else if (OLD_TOKEN.test(raw)) {
    show("expired");
  } else if (!TOKEN.test(raw)) {
    show("invalid");
  } else {
    authorize(raw);
  }
}

$("retry").addEventListener("click", () => lastAction && lastAction());
$("push-on").addEventListener("click", turnOn);
$("push-off").addEventListener("click", turnOff);
// A second link pasted into the same tab changes only the fragment: no reload, so listen for it.
window.addEventListener("hashchange", route);
route();
