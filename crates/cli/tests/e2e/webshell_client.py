# Clients of the web shell for the e2e tests (stdlib only; run inside the daemon's network
# namespace):
#   shell WS_URL TOKEN        authenticate, run `echo hi-$((6*7))`, print OK once `hi-42` arrives
#   hold WS_URL TOKEN         authenticate, print the first reply (MSG …), then CLOSE <code> at the end
#   browser PAGE_URL PNG      headless Chromium over the DevTools protocol: open the page, type the
#                             command, wait for `hi-42` in the terminal, save a screenshot, print
#                             READY, then wait until the page shows it was disconnected (REVOKED)
import base64, json, os, shutil, socket, struct, subprocess, sys, tempfile, time
import urllib.request
from urllib.parse import urlparse


class WS:
    def __init__(self, url, timeout=30):
        u = urlparse(url)
        self.s = socket.create_connection((u.hostname, u.port or 80), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        path = u.path + ("?" + u.query if u.query else "")
        self.s.sendall((
            f"GET {path} HTTP/1.1\r\nHost: {u.hostname}:{u.port}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode())
        head = b""
        while b"\r\n\r\n" not in head:
            c = self.s.recv(1)
            if not c:
                raise EOFError("closed during the handshake")
            head += c
        self.status = int(head.split(b" ", 2)[1])
        self.buf = b""

    def _read(self, n):
        while len(self.buf) < n:
            c = self.s.recv(65536)
            if not c:
                raise EOFError("connection closed")
            self.buf += c
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def send(self, data, op=2):
        if isinstance(data, str):
            data, op = data.encode(), 1
        mask = os.urandom(4)
        n = len(data)
        if n < 126:
            h = bytes([0x80 | op, 0x80 | n])
        elif n < 65536:
            h = bytes([0x80 | op, 0x80 | 126]) + struct.pack(">H", n)
        else:
            h = bytes([0x80 | op, 0x80 | 127]) + struct.pack(">Q", n)
        self.s.sendall(h + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(data)))

    def recv(self):
        """(opcode, payload) of the next data or close frame; pings are answered."""
        while True:
            b0, b1 = self._read(2)
            op, n = b0 & 15, b1 & 127
            if n == 126:
                n = struct.unpack(">H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self._read(8))[0]
            data = self._read(n)
            if op == 9:
                self.send(data, 10)
                continue
            if op == 10:
                continue
            return op, data


def auth(ws, token):
    ws.send(json.dumps({"type": "auth", "token": token}))
    op, data = ws.recv()
    if op == 8:
        return {"type": "closed"}
    return json.loads(data)


def cmd_shell(url, token):
    ws = WS(url)
    first = auth(ws, token)
    if first.get("type") != "connected":
        print("ERROR", json.dumps(first), flush=True)
        sys.exit(2)
    ws.send(b"echo hi-$((6*7))\r")
    out = b""
    deadline = time.time() + 30
    while time.time() < deadline:
        op, data = ws.recv()
        if op == 8:
            break
        if op == 2:
            out += data
            if b"hi-42" in out:
                print("OK", flush=True)
                return
    print("NO OUTPUT", repr(out[-500:]), flush=True)
    sys.exit(3)


def cmd_hold(url, token):
    ws = WS(url, timeout=120)
    first = auth(ws, token)
    print("MSG", json.dumps(first), flush=True)
    if first.get("type") != "connected":
        return
    while True:
        try:
            op, data = ws.recv()
        except (EOFError, OSError):
            print("CLOSE none", flush=True)
            return
        if op == 8:
            code = struct.unpack(">H", data[:2])[0] if len(data) >= 2 else 1005
            print("CLOSE", code, flush=True)
            return


class Browser:
    def __init__(self):
        exe = shutil.which("chromium") or shutil.which("chromium-browser")
        if not exe:
            raise SystemExit("chromium not installed")
        self.dir = tempfile.mkdtemp(prefix="bhatti-chromium-")
        env = dict(os.environ, HOME=self.dir)
        self.proc = subprocess.Popen(
            [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-dev-shm-usage", "--remote-debugging-port=0", "--window-size=1000,600",
             f"--user-data-dir={self.dir}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        port_file = os.path.join(self.dir, "DevToolsActivePort")
        deadline = time.time() + 60
        while not os.path.exists(port_file) or not open(port_file).read().strip():
            if time.time() > deadline or self.proc.poll() is not None:
                raise SystemExit("chromium did not start")
            time.sleep(0.1)
        port = int(open(port_file).read().split()[0])
        deadline = time.time() + 30
        while True:
            pages = json.load(urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list"))
            pages = [p for p in pages if p.get("type") == "page"]
            if pages or time.time() > deadline:
                break
            time.sleep(0.1)
        self.ws = WS(pages[0]["webSocketDebuggerUrl"], timeout=60)
        self.next_id = 0

    def call(self, method, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            op, data = self.ws.recv()
            msg = json.loads(data)
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def eval(self, expr):
        r = self.call("Runtime.evaluate", expression=expr, returnByValue=True)
        return r.get("result", {}).get("value")

    def wait_for(self, expr, what, secs=30):
        deadline = time.time() + secs
        while time.time() < deadline:
            v = self.eval(expr)
            if v:
                return v
            time.sleep(0.2)
        status = self.eval("document.getElementById('status') && document.getElementById('status').textContent")
        rows = self.eval("document.querySelector('.xterm-rows') && document.querySelector('.xterm-rows').innerText")
        raise SystemExit(f"timed out waiting for {what}; status={status!r} terminal={rows!r}")

    def type_text(self, text):
        for ch in text:
            self.call("Input.dispatchKeyEvent", type="keyDown", text=ch, key=ch, unmodifiedText=ch)
            self.call("Input.dispatchKeyEvent", type="keyUp", key=ch)
        self.call("Input.dispatchKeyEvent", type="keyDown", key="Enter", code="Enter",
                  windowsVirtualKeyCode=13, nativeVirtualKeyCode=13, text="\r")
        self.call("Input.dispatchKeyEvent", type="keyUp", key="Enter", code="Enter",
                  windowsVirtualKeyCode=13, nativeVirtualKeyCode=13)

    def close(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        shutil.rmtree(self.dir, ignore_errors=True)


def cmd_browser(page_url, png):
    b = Browser()
    try:
        b.call("Page.enable")
        b.call("Page.navigate", url=page_url)
        b.wait_for("document.getElementById('status') && document.getElementById('status').textContent === 'connected'", "connected")
        # The token left the address bar once the page read it.
        print("LOCATION", b.eval("location.href"), flush=True)
        b.type_text("echo hi-$((6*7))")
        b.wait_for("document.querySelector('.xterm-rows').innerText.includes('hi-42')", "hi-42 in the terminal")
        shot = b.call("Page.captureScreenshot", format="png")
        with open(png, "wb") as f:
            f.write(base64.b64decode(shot["data"]))
        print("READY", flush=True)
        b.wait_for("document.getElementById('status').textContent.startsWith('disconnected')", "the revoke", 60)
        print("REVOKED", flush=True)
    finally:
        b.close()


if __name__ == "__main__":
    mode = sys.argv[1]
    {"shell": cmd_shell, "hold": cmd_hold, "browser": cmd_browser}[mode](*sys.argv[2:])
