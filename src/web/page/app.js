// The achat web client: the protocol of docs/PROTOCOL.md over a WebSocket
// on /ws, one text frame per line. No framework and no build step.
//
// Everything the server or another user sends is put on the page with
// textContent, never as HTML: a message "<img src=x onerror=alert(1)>"
// shows those characters. (The page's Content-Security-Policy forbids
// inline scripts as well.)
"use strict";

const $ = (id) => document.getElementById(id);

// The protocol has no join or leave notices: the who list is refreshed by
// asking /who now and then, and whenever someone we did not know writes.
const WHO_EVERY_MS = 10000;
// Reconnecting waits 1 s, then twice as long each time, up to 30 s.
const RETRY_FIRST_MS = 1000;
const RETRY_MAX_MS = 30000;

const state = {
  socket: null,
  name: "",       // the name we log in with (again, after a reconnect)
  online: false,  // welcomed by the server
  quitting: false, // we sent /quit: no reconnecting
  retryMs: RETRY_FIRST_MS,
  whoTimer: null,
  // /who answers we asked for ourselves are not shown as messages:
  // how many are still to come, and the lines left of the current one.
  quietWho: 0,
  whoLinesLeft: 0,
  whoShown: false,
  whoNames: [],
  chosen: new Set(), // names clicked in the who list: the recipients
  askedPassword: false,
};

function setStatus(text, lost) {
  $("status").textContent = text;
  $("status").classList.toggle("lost", Boolean(lost));
}

function time() {
  const now = new Date();
  const el = document.createElement("time");
  el.dateTime = now.toISOString();
  el.textContent = now.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
  return el;
}

// Appends one message to the conversation: `kind` is "message", "mine",
// "server" or "error"; `sender` may be empty.
function show(kind, sender, text) {
  const list = $("messages");
  const atBottom = list.scrollHeight - list.scrollTop - list.clientHeight < 40;
  const item = document.createElement("li");
  item.className = kind;
  item.appendChild(time());
  if (sender) {
    const who = document.createElement("span");
    who.className = "sender";
    who.textContent = sender;
    item.appendChild(who);
  }
  const body = document.createElement("span");
  body.className = "text";
  body.textContent = text;
  item.appendChild(body);
  list.appendChild(item);
  if (atBottom) item.scrollIntoView({ block: "end" });
}

function send(line) {
  if (state.socket && state.socket.readyState === WebSocket.OPEN) {
    state.socket.send(line);
    return true;
  }
  return false;
}

function askWho() {
  if (state.online && send("/who")) state.quietWho += 1;
}

// --- Lines from the server ------------------------------------------------

function onLine(line) {
  if (!state.online) return onLoginLine(line);
  if (onWhoLine(line)) return;
  if (line.startsWith("from ")) {
    const colon = line.indexOf(": ");
    const sender = colon > 5 ? line.slice(5, colon) : "?";
    const text = colon > 5 ? line.slice(colon + 2) : line.slice(5);
    show("message", sender + ":", text);
    if (!state.whoNames.includes(sender)) askWho();
  } else if (line.startsWith("error: ")) {
    show("error", "", line);
  } else {
    show("server", "", line);
    if (line === "server: bye") state.quitting = true;
  }
}

function onLoginLine(line) {
  if (line.startsWith("server: welcome ")) {
    state.online = true;
    state.retryMs = RETRY_FIRST_MS;
    state.askedPassword = false;
    $("login-form").hidden = true;
    $("chat").hidden = false;
    $("name").type = "text";
    setStatus("online as " + state.name);
    show("server", "", line);
    askWho();
    clearInterval(state.whoTimer);
    state.whoTimer = setInterval(askWho, WHO_EVERY_MS);
    $("input").focus();
  } else if (line.endsWith("is registered: send its password")) {
    // The name is registered: the next thing typed is its password.
    state.askedPassword = true;
    $("login-error").textContent = line.replace(/^server: /, "");
    $("name").value = "";
    $("name").type = "password";
    $("name").focus();
  } else if (line.startsWith("error: ")) {
    // Taken, invalid, wrong password...: the connection stays at the
    // login, the next name is another attempt.
    state.askedPassword = false;
    $("name").type = "text";
    $("login-error").textContent = line;
    $("login-form").hidden = false;
    $("chat").hidden = true;
    $("name").focus();
    setStatus("connected, not logged in");
  } else {
    $("login-error").textContent = line;
  }
}

// A /who answer: "server: <n> online:" then the names, 50 to a line
// ("server: alice, bob"), maybe "server: list cut: ..." at the end.
// Returns whether the line was part of one.
function onWhoLine(line) {
  const head = /^server: (\d+) online:?$/.exec(line);
  if (head) {
    const count = Number(head[1]);
    state.whoShown = state.quietWho === 0;
    if (!state.whoShown) state.quietWho -= 1;
    state.whoLinesLeft = Math.ceil(Math.min(count, 500) / 50);
    state.pendingNames = [];
    $("who-count").textContent = "(" + count + ")";
    if (state.whoShown) show("server", "", line);
    if (state.whoLinesLeft === 0) renderWho([]);
    return true;
  }
  if (state.whoLinesLeft > 0 && line.startsWith("server: ")) {
    state.whoLinesLeft -= 1;
    const names = line.slice("server: ".length).split(", ");
    state.pendingNames.push(...names);
    if (state.whoShown) show("server", "", line);
    if (state.whoLinesLeft === 0) renderWho(state.pendingNames);
    return true;
  }
  if (line.startsWith("server: list cut:")) {
    if (state.whoShown) show("server", "", line);
    return true;
  }
  return false;
}

function renderWho(names) {
  state.whoNames = names;
  const list = $("who");
  list.replaceChildren();
  for (const name of names) {
    const item = document.createElement("li");
    item.textContent = name;
    if (name === state.name) {
      item.className = "me";
      item.title = "you";
    } else {
      item.tabIndex = 0;
      item.classList.toggle("chosen", state.chosen.has(name));
      item.addEventListener("click", () => choose(name));
      item.addEventListener("keydown", (e) => {
        if (e.key === "Enter" || e.key === " ") {
          e.preventDefault();
          choose(name);
        }
      });
    }
    list.appendChild(item);
  }
}

// Toggles a name among the recipients; none chosen means everyone.
function choose(name) {
  if (state.chosen.has(name)) state.chosen.delete(name);
  else state.chosen.add(name);
  $("to").value = state.chosen.size ? [...state.chosen].join(", ") : "*";
  renderWho(state.whoNames);
  $("input").focus();
}

// --- The connection -------------------------------------------------------

function connect() {
  const scheme = location.protocol === "https:" ? "wss:" : "ws:";
  const socket = new WebSocket(scheme + "//" + location.host + "/ws");
  state.socket = socket;
  setStatus("connecting...");
  socket.addEventListener("open", () => {
    setStatus("connected, logging in");
    send(state.name);
  });
  socket.addEventListener("message", (event) => {
    if (typeof event.data === "string") onLine(event.data);
  });
  socket.addEventListener("close", () => {
    if (state.socket !== socket) return;
    const wasOnline = state.online;
    state.online = false;
    clearInterval(state.whoTimer);
    if (state.quitting) {
      setStatus("left the chat");
      $("chat").hidden = true;
      $("login-form").hidden = false;
      $("login-error").textContent = "";
      $("name").focus();
      return;
    }
    const wait = state.retryMs;
    state.retryMs = Math.min(state.retryMs * 2, RETRY_MAX_MS);
    setStatus("connection lost, reconnecting in " + Math.round(wait / 1000) + " s", true);
    if (wasOnline) show("error", "", "connection lost; reconnecting...");
    setTimeout(() => {
      if (state.socket === socket) {
        connect();
      }
    }, wait);
  });
}

$("login-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const value = $("name").value.trim();
  if (!value) return;
  $("login-error").textContent = "";
  if (state.askedPassword) {
    // A password is sent as it is, and never kept.
    send(value);
    $("name").value = state.name;
    $("name").type = "text";
    state.askedPassword = false;
    return;
  }
  state.name = value;
  state.quitting = false;
  if (state.socket && state.socket.readyState === WebSocket.OPEN) {
    send(value);
  } else {
    connect();
  }
});

$("send-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const input = $("input");
  const text = input.value;
  if (!text.trim()) return;
  let line;
  if (text.startsWith("/")) {
    line = text; // a command, as typed
    if (text.trim() === "/who") state.whoShown = true;
    if (text.trim() === "/quit") state.quitting = true;
  } else {
    const to = $("to").value.trim() || "*";
    line = to + ": " + text;
  }
  if (!send(line)) {
    show("error", "", "not connected; the message was not sent");
    return;
  }
  if (!text.startsWith("/")) show("mine", "you → " + ($("to").value.trim() || "*") + ":", text);
  input.value = "";
  input.focus();
});
