"""What the SDK's public API cannot reach, through envd's wire protocol directly (Connect,
JSON codec): SIGTERM vs SIGKILL, lookup by tag, and clean errors for unsupported calls."""

import base64
import http.client
import json
import os
import struct
import threading
import time
import urllib.parse

import pytest
from e2b import CommandExitException


def _conn():
    u = urllib.parse.urlparse(os.environ["E2B_SANDBOX_URL"])
    return http.client.HTTPConnection(u.hostname, u.port, timeout=30)


def _headers(sbx, content_type):
    return {
        "Content-Type": content_type,
        "E2b-Sandbox-Id": sbx.sandbox_id,
        "E2b-Sandbox-Port": "49983",
        "X-Access-Token": sbx._envd_access_token,
    }


def unary(sbx, path, body):
    c = _conn()
    c.request("POST", path, json.dumps(body), _headers(sbx, "application/json"))
    r = c.getresponse()
    data = r.read()
    return r.status, json.loads(data) if data else None


def stream(sbx, path, body):
    """Sends one enveloped message; yields the response messages (the last one is the
    end-of-stream JSON)."""
    c = _conn()
    payload = json.dumps(body).encode()
    c.request("POST", path, struct.pack(">BI", 0, len(payload)) + payload,
              _headers(sbx, "application/connect+json"))
    r = c.getresponse()
    assert r.status == 200
    while True:
        head = r.read(5)
        if len(head) < 5:
            return
        flags, n = struct.unpack(">BI", head)
        yield flags, json.loads(r.read(n))
        if flags & 2:
            return


def test_sigterm_is_not_sigkill(sbx):
    h = sbx.commands.run(
        "trap 'echo got-term; exit 7' TERM; while true; do sleep 0.1; done", background=True
    )
    time.sleep(0.5)
    status, _ = unary(sbx, "/process.Process/SendSignal",
                      {"process": {"pid": h.pid}, "signal": "SIGNAL_SIGTERM"})
    assert status == 200
    with pytest.raises(CommandExitException) as ei:
        h.wait()
    assert ei.value.exit_code == 7
    assert "got-term" in ei.value.stdout


def test_start_with_tag_list_and_connect_by_tag(sbx):
    events = []

    def run():
        for flags, msg in stream(sbx, "/process.Process/Start", {
            "process": {"cmd": "/bin/sh", "args": ["-c", "sleep 1; echo tagged-out"]},
            "tag": "my-tag",
        }):
            events.append((flags, msg))

    t = threading.Thread(target=run)
    t.start()
    deadline = time.time() + 5
    procs = []
    while time.time() < deadline:
        _, body = unary(sbx, "/process.Process/List", {})
        procs = [p for p in body["processes"] if p.get("tag") == "my-tag"]
        if procs:
            break
        time.sleep(0.1)
    assert procs and procs[0]["config"]["cmd"] == "/bin/sh"
    attached = list(stream(sbx, "/process.Process/Connect", {"process": {"tag": "my-tag"}}))
    t.join(10)
    out = b"".join(
        base64.b64decode(m["event"]["data"]["stdout"])
        for _, m in attached if "data" in m.get("event", {})
    )
    assert out == b"tagged-out\n"
    assert attached[-1] == (2, {})
    assert any("end" in m.get("event", {}) for _, m in events)


def test_errors_are_connect_errors(sbx):
    status, body = unary(sbx, "/filesystem.Filesystem/Stat", {"path": "/no/such"})
    assert status == 404 and body["code"] == "not_found"
    status, body = unary(sbx, "/process.Process/SendSignal",
                         {"process": {"pid": 999999}, "signal": "SIGNAL_SIGKILL"})
    assert status == 404 and body["code"] == "not_found"
    status, body = unary(sbx, "/process.Process/StreamInput", {})
    assert status == 501 and body["code"] == "unimplemented"
    status, body = unary(sbx, "/nope.Service/Method", {})
    assert status == 501 and body["code"] == "unimplemented"
    # A stream's error arrives in its end-of-stream message.
    msgs = list(stream(sbx, "/process.Process/Connect", {"process": {"pid": 999999}}))
    assert msgs[-1][0] & 2 and msgs[-1][1]["error"]["code"] == "not_found"


def test_bad_token_is_refused(sbx):
    c = _conn()
    h = _headers(sbx, "application/json")
    h["X-Access-Token"] = "wrong"
    c.request("POST", "/filesystem.Filesystem/ListDir", json.dumps({"path": "/"}), h)
    r = c.getresponse()
    assert r.status == 401
    assert json.loads(r.read())["code"] == "unauthenticated"


def test_control_plane_errors_are_e2b_style():
    c = _conn()
    key = os.environ["E2B_API_KEY"]
    for method, path, want in [
        ("GET", "/sandboxes/ffffffffffffffff", 404),
        ("GET", "/sandboxes/ffffffffffffffff/metrics", 501),
        ("POST", "/templates", 501),
    ]:
        c.request(method, path, headers={"X-API-KEY": key})
        r = c.getresponse()
        body = json.loads(r.read())
        assert r.status == want, (path, r.status, body)
        assert body["code"] == want and body["message"]
    c.request("GET", "/v2/sandboxes", headers={"X-API-KEY": "bad"})
    r = c.getresponse()
    assert r.status == 401 and json.loads(r.read())["code"] == 401


def test_polled_watchers_are_capped(sbx):
    ids = []
    # 16: each holds one of lohar's 50 connections, which the sandbox needs for the rest.
    for _ in range(16):
        status, body = unary(sbx, "/filesystem.Filesystem/CreateWatcher", {"path": "/tmp"})
        assert status == 200, body
        ids.append(body["watcherId"])
    status, body = unary(sbx, "/filesystem.Filesystem/CreateWatcher", {"path": "/tmp"})
    assert status == 429 and body["code"] == "resource_exhausted"
    for i in ids:
        assert unary(sbx, "/filesystem.Filesystem/RemoveWatcher", {"watcherId": i})[0] == 200
    status, _ = unary(sbx, "/filesystem.Filesystem/CreateWatcher", {"path": "/tmp"})
    assert status == 200
    # The sandbox still answers everything else.
    assert sbx.commands.run("echo still-here").stdout == "still-here\n"


def test_bad_input_is_a_client_error_not_a_500(sbx):
    def get(path):
        c = _conn()
        c.request("GET", path, headers=_headers(sbx, "application/json"))
        r = c.getresponse()
        return r.status, json.loads(r.read())

    for path in ["/files?path=/tmp", "/files", "/files?path=/dev/zero"]:
        status, body = get(path)
        assert status == 400, (path, status, body)
    status, body = unary(sbx, "/filesystem.Filesystem/Stat", {"path": "/tmp/a\u0000b"})
    assert status == 400 and body["code"] == "invalid_argument", body
    status, body = unary(sbx, "/filesystem.Filesystem/Remove", {"path": "/proc/1"})
    assert status == 403 and body["code"] == "permission_denied", body
    c = _conn()
    key = os.environ["E2B_API_KEY"]
    for body in [b"[]", b'{"templateID": 5}']:
        c.request("POST", "/sandboxes", body, {"X-API-KEY": key, "Content-Type": "application/json"})
        r = c.getresponse()
        assert r.status == 400 and json.loads(r.read())["code"] == 400, body


def test_an_upload_declared_too_large_is_refused_before_its_body(sbx):
    c = _conn()
    c.putrequest("POST", "/files?path=/tmp/huge")
    for k, v in _headers(sbx, "application/octet-stream").items():
        c.putheader(k, v)
    c.putheader("Content-Length", str(200 * 1024 * 1024))
    c.endheaders()
    r = c.getresponse()
    assert r.status == 413 and json.loads(r.read())["code"] == 413


def test_watch_streams_count_against_the_watcher_cap(sbx):
    payload = json.dumps({"path": "/tmp"}).encode()
    held = []
    for _ in range(16):
        c = _conn()
        c.request("POST", "/filesystem.Filesystem/WatchDir", struct.pack(">BI", 0, len(payload)) + payload,
                  _headers(sbx, "application/connect+json"))
        r = c.getresponse()
        assert r.status == 200
        flags, n = struct.unpack(">BI", r.read(5))
        assert flags == 0 and "start" in json.loads(r.read(n))
        held.append(c)
    msgs = list(stream(sbx, "/filesystem.Filesystem/WatchDir", {"path": "/tmp"}))
    assert msgs[-1][1]["error"]["code"] == "resource_exhausted", msgs
    status, body = unary(sbx, "/filesystem.Filesystem/CreateWatcher", {"path": "/tmp"})
    assert status == 429, body
    for c in held:
        c.close()
    # The slots come back once the streams are gone (noticed at the next event or keepalive).
    sbx.files.write("/tmp/wake-watchers", "x")
    deadline = time.time() + 30
    while time.time() < deadline:
        status, body = unary(sbx, "/filesystem.Filesystem/CreateWatcher", {"path": "/tmp"})
        if status == 200:
            break
        time.sleep(0.5)
    assert status == 200, body
    assert sbx.commands.run("echo ok").stdout == "ok\n"
