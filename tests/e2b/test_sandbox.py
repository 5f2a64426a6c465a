import os
import time
import urllib.error
import urllib.request

import pytest
from e2b import Sandbox, SandboxQuery, SandboxState, NotFoundException


def test_list_get_info_metadata():
    tag = f"t{os.getpid()}"
    s = Sandbox.create(metadata={"suite": tag, "kind": "a"}, timeout=300)
    other = Sandbox.create(metadata={"suite": tag, "kind": "b"}, timeout=300)
    try:
        info = s.get_info()
        assert info.sandbox_id == s.sandbox_id
        assert info.metadata == {"suite": tag, "kind": "a"}
        assert info.template_id == "base"
        assert info.state == SandboxState.RUNNING
        found = Sandbox.list(query=SandboxQuery(metadata={"suite": tag})).next_items()
        assert {x.sandbox_id for x in found} == {s.sandbox_id, other.sandbox_id}
        only_a = Sandbox.list(query=SandboxQuery(metadata={"suite": tag, "kind": "a"})).next_items()
        assert [x.sandbox_id for x in only_a] == [s.sandbox_id]
        # Paging: one per page.
        pager = Sandbox.list(query=SandboxQuery(metadata={"suite": tag}), limit=1)
        ids = []
        while pager.has_next:
            ids += [x.sandbox_id for x in pager.next_items()]
        assert sorted(ids) == sorted([s.sandbox_id, other.sandbox_id])
    finally:
        s.kill()
        other.kill()
    assert not s.is_running()


def test_kill_and_missing():
    s = Sandbox.create(timeout=300)
    assert Sandbox.kill(s.sandbox_id) is True
    assert Sandbox.kill(s.sandbox_id) is False
    with pytest.raises(Exception):
        Sandbox.get_info(s.sandbox_id)


def test_set_timeout_kills_at_expiry():
    s = Sandbox.create(timeout=300)
    s.set_timeout(2)
    end = s.get_info().end_at.timestamp()
    assert end - time.time() < 5
    deadline = time.time() + 15
    while s.is_running() and time.time() < deadline:
        time.sleep(0.5)
    assert not s.is_running()
    ids = [x.sandbox_id for x in Sandbox.list().next_items()]
    assert s.sandbox_id not in ids


def test_create_timeout_kills_at_expiry():
    s = Sandbox.create(timeout=2)
    assert s.is_running()
    deadline = time.time() + 15
    while s.is_running() and time.time() < deadline:
        time.sleep(0.5)
    assert not s.is_running()


def test_pause_and_connect_keep_files_and_processes(sbx):
    sbx.files.write("/tmp/keep.txt", "kept")
    bg = sbx.commands.run("sleep 600", background=True)
    assert sbx.pause() is True
    assert Sandbox.get_info(sbx.sandbox_id).state == SandboxState.PAUSED
    resumed = Sandbox.connect(sbx.sandbox_id)
    assert Sandbox.get_info(sbx.sandbox_id).state == SandboxState.RUNNING
    assert resumed.files.read("/tmp/keep.txt") == "kept"
    assert bg.pid in [p.pid for p in resumed.commands.list()]
    assert resumed.commands.run("echo alive").stdout == "alive\n"


def test_get_host_reaches_a_server(sbx):
    sbx.files.write("/tmp/www/index.html", "served by the sandbox")
    sbx.commands.run("cd /tmp/www && exec python3 -m http.server 8000", background=True)
    host = sbx.get_host(8000)
    assert host.startswith(f"8000-{sbx.sandbox_id}.")
    api = os.environ["E2B_API_URL"]
    token = sbx.traffic_access_token
    assert token
    body = None
    deadline = time.time() + 20
    while time.time() < deadline:
        req = urllib.request.Request(
            api + "/index.html", headers={"Host": host, "e2b-traffic-access-token": token}
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as r:
                body = r.read().decode()
                break
        except Exception:
            time.sleep(0.3)
    assert body == "served by the sandbox"
    # Without the sandbox's traffic token its ports are not reachable.
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(urllib.request.Request(api + "/index.html", headers={"Host": host}), timeout=5)
    assert ei.value.code == 403
    # A port of a sandbox that does not exist: E2B's 502 "... was not found".
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(urllib.request.Request(
            api + "/", headers={"Host": "8000-ffffffffffffffff." + os.environ["E2B_DOMAIN"]}), timeout=5)
    assert ei.value.code == 502


def test_unsupported_calls_fail_cleanly(sbx):
    with pytest.raises(Exception) as ei:
        sbx.get_metrics()
    assert "not" in str(ei.value).lower()
    with pytest.raises(Exception):
        Sandbox.create(template="no-such-template-image")


def test_timeout_with_on_timeout_pause_pauses():
    s = Sandbox.create(timeout=2, lifecycle={"on_timeout": "pause"})
    try:
        s.files.write("/tmp/auto.txt", "still here")
        deadline = time.time() + 15
        while Sandbox.get_info(s.sandbox_id).state != SandboxState.PAUSED and time.time() < deadline:
            time.sleep(0.5)
        assert Sandbox.get_info(s.sandbox_id).state == SandboxState.PAUSED
        back = Sandbox.connect(s.sandbox_id, timeout=60)
        assert Sandbox.get_info(s.sandbox_id).state == SandboxState.RUNNING
        assert back.files.read("/tmp/auto.txt") == "still here"
    finally:
        Sandbox.kill(s.sandbox_id)
