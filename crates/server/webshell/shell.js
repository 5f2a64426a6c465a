// The web shell page's client: reads the share token from the URL fragment, authenticates over
// the WebSocket next to this page, and wires the socket to an xterm.js terminal.
// Protocol: client → {"type":"auth","token":…} first; server → {"type":"connected",…} or
// {"type":"error","error":…}; then terminal output as binary messages, keystrokes as binary
// messages and {"type":"resize","rows":R,"cols":C} as text.
(function () {
  "use strict";
  var statusEl = document.getElementById("status");
  var nameEl = document.getElementById("sandbox");
  function status(text, cls) {
    statusEl.textContent = text;
    statusEl.className = cls || "";
  }

  // The token travels in the fragment, which browsers never send to servers (no logs, no
  // Referer). It is moved to this tab's sessionStorage and removed from the address bar so it
  // does not end up in screenshots, history or copied links; a reload still works.
  var key = "bhatti-shell-token:" + location.pathname;
  var m = /(?:^#|&)token=([0-9a-fA-F]+)/.exec(location.hash);
  var token = m ? m[1] : sessionStorage.getItem(key);
  if (m) {
    sessionStorage.setItem(key, token);
    history.replaceState(null, "", location.pathname + location.search);
  }

  var term = new Terminal({
    cursorBlink: true,
    fontFamily: "ui-monospace, 'DejaVu Sans Mono', Menlo, Consolas, monospace",
    fontSize: 14,
    scrollback: 5000,
  });
  var fit = new FitAddon.FitAddon();
  term.loadAddon(fit);
  term.open(document.getElementById("terminal"));
  fit.fit();
  window.addEventListener("resize", function () { fit.fit(); });

  if (!token) {
    status("no share token in the link (ask for a new one with `bhatti share`)", "err");
    return;
  }

  var scheme = location.protocol === "https:" ? "wss:" : "ws:";
  var path = location.pathname.replace(/\/+$/, "") + "/ws";
  var ws = new WebSocket(scheme + "//" + location.host + path);
  ws.binaryType = "arraybuffer";
  var connected = false;
  var encoder = new TextEncoder();

  function sendResize() {
    if (connected && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify({ type: "resize", rows: term.rows, cols: term.cols }));
    }
  }

  ws.onopen = function () {
    ws.send(JSON.stringify({ type: "auth", token: token }));
  };
  ws.onmessage = function (ev) {
    if (typeof ev.data !== "string") {
      term.write(new Uint8Array(ev.data));
      return;
    }
    var msg;
    try { msg = JSON.parse(ev.data); } catch (e) { term.write(ev.data); return; }
    if (msg.type === "connected") {
      connected = true;
      nameEl.textContent = msg.sandbox || "";
      status("connected", "ok");
      sendResize();
      term.focus();
    } else if (msg.type === "error") {
      status("error: " + msg.error, "err");
    }
  };
  ws.onclose = function (ev) {
    connected = false;
    var why = ev.reason ? " (" + ev.reason + ")" : "";
    if (statusEl.className !== "err") status("disconnected" + why, "err");
    term.write("\r\n\x1b[90m[disconnected" + why + "]\x1b[0m\r\n");
  };
  // Keystrokes go as binary so that typed text is never mistaken for a control message.
  term.onData(function (d) {
    if (connected && ws.readyState === WebSocket.OPEN) ws.send(encoder.encode(d));
  });
  term.onBinary(function (d) {
    if (!connected || ws.readyState !== WebSocket.OPEN) return;
    var b = new Uint8Array(d.length);
    for (var i = 0; i < d.length; i++) b[i] = d.charCodeAt(i) & 255;
    ws.send(b);
  });
  term.onResize(sendResize);
})();
