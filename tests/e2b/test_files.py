import time

from e2b import FileType, FilesystemEventType, NotFoundException
import pytest


def test_write_read_text_and_bytes(sbx):
    info = sbx.files.write("/tmp/hello.txt", "hello world")
    assert info.path == "/tmp/hello.txt"
    assert sbx.files.read("/tmp/hello.txt") == "hello world"
    blob = bytes(range(256)) * 100
    sbx.files.write("/tmp/blob.bin", blob)
    assert bytes(sbx.files.read("/tmp/blob.bin", format="bytes")) == blob
    # Relative paths are in the user's home.
    sbx.files.write("rel.txt", "in home")
    assert sbx.commands.run("cat /home/user/rel.txt").stdout == "in home"


def test_read_missing_raises(sbx):
    with pytest.raises(NotFoundException):
        sbx.files.read("/tmp/nope.txt")


def test_exists_list_make_dir(sbx):
    assert not sbx.files.exists("/tmp/d")
    assert sbx.files.make_dir("/tmp/d/sub") is True
    assert sbx.files.make_dir("/tmp/d/sub") is False
    assert sbx.files.exists("/tmp/d/sub")
    sbx.files.write("/tmp/d/a.txt", "a")
    sbx.files.write("/tmp/d/sub/b.txt", "bb")
    top = sbx.files.list("/tmp/d")
    assert sorted(e.name for e in top) == ["a.txt", "sub"]
    by_name = {e.name: e for e in top}
    assert by_name["sub"].type == FileType.DIR
    assert by_name["a.txt"].type == FileType.FILE
    assert by_name["a.txt"].size == 1
    deep = sbx.files.list("/tmp/d", depth=2)
    assert sorted(e.path for e in deep) == ["/tmp/d/a.txt", "/tmp/d/sub", "/tmp/d/sub/b.txt"]


def test_stat_owner_permissions_symlink(sbx):
    sbx.files.write("/tmp/f.txt", "x")
    sbx.commands.run("chmod 640 /tmp/f.txt; ln -s /tmp/f.txt /tmp/link")
    i = sbx.files.get_info("/tmp/f.txt")
    assert i.permissions == "-rw-r-----"
    assert i.mode & 0o777 == 0o640
    assert i.owner == sbx.commands.run("id -un").stdout.strip()
    l = sbx.files.get_info("/tmp/link")
    assert l.symlink_target == "/tmp/f.txt"


def test_rename_and_remove(sbx):
    sbx.files.write("/tmp/old.txt", "data")
    e = sbx.files.rename("/tmp/old.txt", "/tmp/new.txt")
    assert e.path == "/tmp/new.txt"
    assert not sbx.files.exists("/tmp/old.txt")
    assert sbx.files.read("/tmp/new.txt") == "data"
    sbx.files.make_dir("/tmp/tree/a/b")
    sbx.files.remove("/tmp/tree")
    assert not sbx.files.exists("/tmp/tree")
    sbx.files.remove("/tmp/new.txt")
    assert not sbx.files.exists("/tmp/new.txt")


def test_watch_dir(sbx):
    sbx.files.make_dir("/tmp/w")
    w = sbx.files.watch_dir("/tmp/w")
    sbx.files.write("/tmp/w/created.txt", "x")
    sbx.commands.run("rm /tmp/w/created.txt")
    events = []
    deadline = time.time() + 10
    while time.time() < deadline:
        events += w.get_new_events()
        types = {(e.name, e.type) for e in events}
        if ("created.txt", FilesystemEventType.REMOVE) in types:
            break
        time.sleep(0.2)
    w.stop()
    types = {(e.name, e.type) for e in events}
    assert ("created.txt", FilesystemEventType.CREATE) in types
    assert ("created.txt", FilesystemEventType.REMOVE) in types


def test_signed_urls_with_the_host_form(sbx):
    import os
    import urllib.error
    import urllib.parse
    import urllib.request

    sbx.files.write("/tmp/s.txt", "signed")
    # Plain HTTP clients (a browser) carry no headers: the sandbox is named by the Host.
    host = f"49983-{sbx.sandbox_id}.{os.environ['E2B_DOMAIN']}"
    base = os.environ["E2B_API_URL"]

    def fetch(url, data=None):
        u = urllib.parse.urlparse(url)
        req = urllib.request.Request(f"{base}{u.path}?{u.query}", data=data, headers={"Host": host})
        if data is not None:
            req.add_header("Content-Type", "application/octet-stream")
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.read()

    assert fetch(sbx.download_url("/tmp/s.txt")) == b"signed"
    fetch(sbx.upload_url("/tmp/up.txt"), data=b"uploaded")
    assert sbx.files.read("/tmp/up.txt") == "uploaded"
    with pytest.raises(urllib.error.HTTPError) as ei:
        fetch(sbx.download_url("/tmp/s.txt").replace("signature=v1_", "signature=v1_x"))
    assert ei.value.code == 401
    expired = sbx.download_url("/tmp/s.txt", use_signature_expiration=-10)
    with pytest.raises(urllib.error.HTTPError) as ei:
        fetch(expired)
    assert ei.value.code == 401


def test_signed_upload_url_writes_only_its_own_path(sbx):
    import os
    import urllib.error
    import urllib.parse
    import urllib.request

    host = f"49983-{sbx.sandbox_id}.{os.environ['E2B_DOMAIN']}"
    u = urllib.parse.urlparse(sbx.upload_url("/tmp/granted.txt"))
    boundary = "----bhattiSignedScope"
    body = b""
    for name, data in [("/tmp/granted.txt", b"ok"), ("/tmp/not-granted.txt", b"sneaked")]:
        body += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; "
                 f"filename=\"{name}\"\r\n\r\n").encode() + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    req = urllib.request.Request(
        f"{os.environ['E2B_API_URL']}{u.path}?{u.query}", data=body,
        headers={"Host": host, "Content-Type": f"multipart/form-data; boundary={boundary}"})
    with pytest.raises(urllib.error.HTTPError) as ei:
        urllib.request.urlopen(req, timeout=10)
    assert ei.value.code == 403
    assert not sbx.files.exists("/tmp/not-granted.txt")
    assert not sbx.files.exists("/tmp/granted.txt")
