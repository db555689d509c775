"""`shared/files.py`: hashes, atomic writes, and downloads from a real HTTP server on 127.0.0.1.

The server runs in a thread for the module's tests; it serves one body, answers Range requests with
206 and the rest (416 when nothing is left), and can be told to ignore Range, to drop the connection
after some bytes, or to answer 404. Nothing leaves the machine.
"""

from __future__ import annotations

import ast
import hashlib
import os
import re
import socket
import stat
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from shared import files
from shared.files import (
    atomic_path,
    atomic_write_bytes,
    atomic_write_text,
    check_sha256,
    download,
    read_shipped_file,
    sha256_of,
    sha256_of_bytes,
)

BODY = bytes(range(256)) * 40  # 10,240 bytes
BODY_SHA256 = hashlib.sha256(BODY).hexdigest()

# ---------------------------------------------------------------------------------------------
# Hashes
# ---------------------------------------------------------------------------------------------


def test_sha256_of_a_file_and_of_bytes(tmp_path):
    path = tmp_path / "body.bin"
    path.write_bytes(BODY)
    assert sha256_of(path) == sha256_of(path, chunk_size=7) == sha256_of_bytes(BODY) == BODY_SHA256


def test_check_sha256_accepts_a_match_in_either_case(tmp_path):
    path = tmp_path / "body.bin"
    path.write_bytes(BODY)
    assert check_sha256(path, BODY_SHA256.upper()) == BODY_SHA256
    assert check_sha256(BODY, f" {BODY_SHA256}\n") == BODY_SHA256


def test_check_sha256_names_the_file_both_hashes_and_the_fix(tmp_path):
    path = tmp_path / "body.bin"
    path.write_bytes(BODY[:-1])
    actual = hashlib.sha256(BODY[:-1]).hexdigest()
    with pytest.raises(ValueError) as info:
        check_sha256(path, BODY_SHA256)
    message = str(info.value)
    assert message.startswith(f"{path} has SHA-256 {actual[:12]}..., not the expected {BODY_SHA256[:12]}...: ")
    assert "Delete it and get it again" in message and actual not in message  # short hashes, a fix
    with pytest.raises(ValueError, match=r"^the rank file has SHA-256 .*: restore it\.$"):
        check_sha256(BODY[:-1], BODY_SHA256, "the rank file", fix="restore it.")
    with pytest.raises(ValueError, match="^the data has SHA-256"):
        check_sha256(b"", BODY_SHA256)
    with pytest.raises(ValueError, match="'abc' is not a SHA-256: pass the 64 hex digits"):
        check_sha256(BODY, "abc")


# ---------------------------------------------------------------------------------------------
# Atomic writes
# ---------------------------------------------------------------------------------------------


def test_atomic_writes_leave_the_file_and_nothing_else(tmp_path):
    target = tmp_path / "sub" / "out.txt"
    assert atomic_write_text(target, "first\n") == target
    assert atomic_write_bytes(target, b"second") == target
    assert target.read_bytes() == b"second"
    assert os.listdir(target.parent) == ["out.txt"]
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask  # a new file's mode, not mkstemp's 0o600


def test_atomic_path_is_a_hidden_temporary_beside_the_target(tmp_path):
    target = tmp_path / "model.safetensors"
    with atomic_path(target) as tmp:
        assert tmp.parent == tmp_path and re.fullmatch(r"\.model\.safetensors\.[0-9a-f]+\.tmp", tmp.name)
        tmp.write_bytes(b"whole")
        assert not target.exists()  # nothing under the final name until the block ends
    assert target.read_bytes() == b"whole" and not tmp.exists()


@pytest.mark.parametrize("error", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path, error):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old and whole")
    with pytest.raises(type(error)):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half of the ne")
            raise error
    assert target.read_bytes() == b"old and whole"
    assert os.listdir(tmp_path) == ["out.bin"]


def test_a_failed_write_of_a_new_file_leaves_nothing(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with atomic_path(tmp_path / "new.bin") as tmp:
            with open(tmp, "wb") as f:
                f.write(b"half")
                raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------------
# Downloads from a local server
# ---------------------------------------------------------------------------------------------


class Handler(BaseHTTPRequestHandler):
    """Serves `server.body` at any path but /missing; HTTP/1.0, so each response ends the connection."""

    def do_GET(self) -> None:
        server = self.server
        byte_range = self.headers.get("Range")
        server.requests.append(byte_range)
        if self.path == "/missing":
            self.send_error(404, "Not Found")
            return
        body, status, start = server.body, 200, 0
        if byte_range and server.honour_range:
            start = int(byte_range.removeprefix("bytes=").removesuffix("-"))
            if start >= len(body):
                self.send_response(416, "Range Not Satisfiable")
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            status = 206
        self.send_response(status)
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        drop_after, server.drop_after = server.drop_after, None  # drop once, then serve normally
        self.wfile.write(body[start:] if drop_after is None else body[start:start + drop_after])

    def log_message(self, *args) -> None:  # keep pytest's output clean
        pass


@pytest.fixture(scope="module")
def http_server():
    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


@pytest.fixture
def server(http_server, monkeypatch):
    """The module's server, reset: serving BODY, honouring Range, no requests yet; no proxy in the way."""
    monkeypatch.setenv("no_proxy", "127.0.0.1")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    http_server.body, http_server.honour_range, http_server.drop_after = BODY, True, None
    http_server.requests = []
    http_server.url = f"http://127.0.0.1:{http_server.server_address[1]}/files/body.bin"
    return http_server


def test_a_download_is_checked_and_renamed_into_place(server, tmp_path):
    path = download(server.url, tmp_path / "body.bin", sha256=BODY_SHA256, size=len(BODY), progress=False)
    assert path == tmp_path / "body.bin" and path.read_bytes() == BODY
    assert os.listdir(tmp_path) == ["body.bin"] and server.requests == [None]


def test_a_partial_download_is_resumed_with_a_range_request(server, tmp_path):
    (tmp_path / "body.bin.part").write_bytes(BODY[:1000])
    assert download(server.url, tmp_path / "body.bin", sha256=BODY_SHA256, progress=False).read_bytes() == BODY
    assert server.requests == ["bytes=1000-"] and os.listdir(tmp_path) == ["body.bin"]


def test_a_dropped_connection_keeps_the_part_file_and_the_next_call_resumes(server, tmp_path):
    server.drop_after = 3000
    with pytest.raises(ConnectionError) as info:
        download(server.url, tmp_path / "body.bin", progress=False)
    assert "the connection closed after 3,000 of 10,240 bytes" in str(info.value)
    assert "stays in body.bin.part; running again resumes it" in str(info.value)
    assert (tmp_path / "body.bin.part").read_bytes() == BODY[:3000] and not (tmp_path / "body.bin").exists()

    assert download(server.url, tmp_path / "body.bin", size=len(BODY), progress=False).read_bytes() == BODY
    assert server.requests == [None, "bytes=3000-"]


def test_a_complete_part_file_is_finished_without_new_bytes(server, tmp_path):
    (tmp_path / "body.bin.part").write_bytes(BODY)
    assert download(server.url, tmp_path / "body.bin", sha256=BODY_SHA256, progress=False).read_bytes() == BODY
    assert server.requests == [f"bytes={len(BODY)}-"]  # answered 416: nothing left to send


def test_a_server_that_ignores_range_restarts_the_file(server, tmp_path):
    server.honour_range = False
    (tmp_path / "body.bin.part").write_bytes(b"stale bytes from another file")
    assert download(server.url, tmp_path / "body.bin", sha256=BODY_SHA256, progress=False).read_bytes() == BODY


def test_resume_false_starts_afresh(server, tmp_path):
    (tmp_path / "body.bin.part").write_bytes(b"stale bytes from another file")
    assert download(server.url, tmp_path / "body.bin", progress=False, resume=False).read_bytes() == BODY
    assert server.requests == [None]


def refuse(part: Path) -> None:
    raise ValueError("no header")


@pytest.mark.parametrize("check, detail", [
    ({"sha256": "0" * 64}, f"has SHA-256 {BODY_SHA256[:12]}..., not the expected 000000000000..."),
    ({"size": len(BODY) + 1}, f"has {len(BODY):,} bytes, not the expected {len(BODY) + 1:,}."),
    ({"verify": refuse}, "Details: no header"),
])
def test_a_download_that_fails_its_check_is_deleted(server, tmp_path, check, detail):
    (tmp_path / "body.bin").write_bytes(b"an older, good file")
    with pytest.raises(ValueError) as info:
        download(server.url, tmp_path / "body.bin", progress=False, **check)
    message = str(info.value)
    assert message.startswith(f"the download of {server.url} is corrupt and was deleted; run again to retry.")
    assert detail in message
    assert os.listdir(tmp_path) == ["body.bin"]  # no .part left, and the older file untouched
    assert (tmp_path / "body.bin").read_bytes() == b"an older, good file"


def test_the_verify_callback_sees_the_finished_part_file(server, tmp_path):
    seen = []
    download(server.url, tmp_path / "body.bin", progress=False, verify=lambda part: seen.append(part.read_bytes()))
    assert seen == [BODY]


def test_an_http_error_names_the_host_and_the_way_by_hand(server, tmp_path):
    url = server.url.replace("/files/body.bin", "/missing")
    with pytest.raises(ConnectionError) as info:
        download(url, tmp_path / "data.json", progress=False)
    message = str(info.value)
    assert message.startswith(f"127.0.0.1 answered 404 Not Found for {url}.")
    assert f"download data.json by hand from {url} into {tmp_path}/" in message
    assert os.listdir(tmp_path) == []


def test_an_unreachable_host_says_what_to_do(server, tmp_path):
    with socket.socket() as s:  # a port that nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/model.safetensors"
    with pytest.raises(ConnectionError) as info:
        download(url, tmp_path / "gpt2" / "model.safetensors", progress=False)
    message = str(info.value)
    assert message.startswith("could not reach 127.0.0.1: ")
    assert f"If you are offline, download model.safetensors by hand from {url} into {tmp_path / 'gpt2'}/" in message


# ---------------------------------------------------------------------------------------------
# Shipped files, and the module's place at the bottom
# ---------------------------------------------------------------------------------------------


def test_a_shipped_file_is_read_checked_and_an_unlisted_one_is_named():
    assert read_shipped_file("austen/persuasion.txt").startswith(b"Persuasion")
    with pytest.raises(KeyError, match="no line in .*SHA256SUMS"):
        read_shipped_file("austen/ulysses.txt")


def test_read_shipped_file_reads_data_dir_at_call_time(tmp_path, monkeypatch):
    (tmp_path / "austen").mkdir()
    (tmp_path / "austen" / "emma.txt").write_text("Emma, abridged.")
    (tmp_path / "SHA256SUMS").write_text((files.DATA_DIR / "SHA256SUMS").read_text())
    monkeypatch.setattr(files, "DATA_DIR", tmp_path)
    with pytest.raises(ValueError, match=f"^{re.escape(str(tmp_path / 'austen' / 'emma.txt'))} has SHA-256"):
        read_shipped_file("austen/emma.txt")


def test_files_imports_nothing_from_shared():
    tree = ast.parse(Path(files.__file__).read_text())
    imported = [alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names]
    imported += [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module]
    assert not [name for name in imported if name == "shared" or name.startswith("shared.")]
