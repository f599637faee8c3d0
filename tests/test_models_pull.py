"""`sarai models pull` against a local HTTP server on loopback laid out like Hugging Face:
`/<repo>/resolve/<rev>/<file>` answers HEAD with the X-Linked-Etag / X-Linked-Size headers and
redirects GETs to a file route that honours Range requests."""

from __future__ import annotations

import hashlib
import os
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import gguf
import numpy as np
import pytest
import yaml

from sarai.models import pull
from sarai.models.chat_template import CHATML
from sarai.models.errors import ModelError

LFM2 = "/LiquidAI/LFM2-1.2B-GGUF/resolve/main/LFM2-1.2B-Q4_K_M.gguf"


def tiny_gguf(path: Path, mb: float = 3.0) -> bytes:
    """A small valid GGUF file (llama architecture, one tensor, a chat template like the real
    file's) written with the gguf package."""
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_chat_template(CHATML)
    w.add_block_count(2)
    w.add_context_length(4096)
    w.add_embedding_length(64)
    w.add_head_count(4)
    w.add_head_count_kv(2)
    w.add_file_type(gguf.LlamaFileType.ALL_F32)
    w.add_tensor("token_embd.weight",
                 np.arange(int(mb * 2**20 / 256) * 64, dtype=np.float32).reshape(-1, 64))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path.read_bytes()


class HubServer:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.announce: dict[str, str | None] = {}
        self.drop_after: dict[str, int] = {}  # first GET of this path stops after N bytes
        self.log: list[tuple[str, str, str | None]] = []
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def do_HEAD(self) -> None:
                hub.log.append(("HEAD", self.path, None))
                if self.path not in hub.files:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(302)
                self.send_header("Location", "/cdn" + self.path)
                sha = hub.announce.get(self.path)
                if sha:
                    self.send_header("X-Linked-Etag", f'"{sha}"')
                self.send_header("X-Linked-Size", str(len(hub.files[self.path])))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                rng = self.headers.get("Range")
                hub.log.append(("GET", self.path, rng))
                if not self.path.startswith("/cdn/"):
                    self.send_response(302 if self.path in hub.files else 404)
                    self.send_header("Location", "/cdn" + self.path)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                name = self.path.removeprefix("/cdn")
                data = hub.files[name]
                start = int(rng.removeprefix("bytes=").split("-")[0]) if rng else 0
                body = data[start:]
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                cut = hub.drop_after.pop(name, None)
                if cut is not None:
                    self.wfile.write(body[:cut])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def serve(self, path: str, data: bytes, *, announce: bool | str = True) -> None:
        self.files[path] = data
        self.announce[path] = (hashlib.sha256(data).hexdigest() if announce is True
                               else announce or None)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hub():
    h = HubServer()
    yield h
    h.close()


@pytest.fixture
def env(tmp_path, hub) -> dict[str, str]:
    e = dict(os.environ)
    e.update(XDG_CONFIG_HOME=str(tmp_path / "config"), XDG_DATA_HOME=str(tmp_path / "data"),
             XDG_STATE_HOME=str(tmp_path / "state"), SARAI_PULL_URL=hub.url)
    e.pop("SARAI_CONFIG", None)
    return e


def test_pull_downloads_verifies_and_binds_the_tier(tmp_path, hub, env, sarai):
    data = tiny_gguf(tmp_path / "src.gguf")
    hub.serve(LFM2, data)
    r = sarai("models", "pull", "lfm2-1.2b", env=env)
    assert r.code == 0, r.err
    target = tmp_path / "data" / "sarai" / "models" / "LFM2-1.2B-Q4_K_M.gguf"
    assert target.read_bytes() == data
    assert "sha256 ok" in r.out
    config = yaml.safe_load((tmp_path / "config" / "sarai" / "config.yaml").read_text())
    assert config["models"]["tiny"] == {"backend": "llamacpp", "model": target.name}
    # the tier now resolves to the pulled file, read from its GGUF header
    listing = sarai("models", "list", "--json", env=env)
    assert listing.code == 0, listing.err
    import json

    out = json.loads(listing.out)
    assert out["tiers"]["tiny"]["starter"] is False
    row = next(m for m in out["models"] if m["file"] == target.name)
    assert row["tiers"] == ["tiny"] and row["architecture"] == "llama"
    assert row["context_length"] == 4096 and row["quantization"] == "ALL_F32"
    # pulling again finds it installed and fetches nothing
    gets = sum(1 for m, _, _ in hub.log if m == "GET")
    again = sarai("models", "pull", "lfm2-1.2b", env=env)
    assert again.code == 0 and "already downloaded" in again.out
    assert sum(1 for m, _, _ in hub.log if m == "GET") == gets


def test_interrupted_pull_resumes_with_a_range_request(tmp_path, hub, env, sarai):
    data = tiny_gguf(tmp_path / "src.gguf", mb=3)
    hub.serve(LFM2, data)
    hub.drop_after[LFM2] = 1_000_000
    first = sarai("models", "pull", "lfm2-1.2b", env=env)
    assert first.code == 1
    assert "run the same pull again to resume" in first.err
    assert "Traceback" not in first.err
    models = tmp_path / "data" / "sarai" / "models"
    partial = models / "LFM2-1.2B-Q4_K_M.gguf.partial"
    kept = partial.stat().st_size
    assert 0 < kept < len(data)
    second = sarai("models", "pull", "lfm2-1.2b", env=env)
    assert second.code == 0, second.err
    ranges = [rng for m, p, rng in hub.log if m == "GET" and p.startswith("/cdn")]
    assert ranges == [None, f"bytes={kept}-"]
    assert (models / "LFM2-1.2B-Q4_K_M.gguf").read_bytes() == data
    assert not partial.exists()


def test_checksum_mismatch_deletes_the_download_and_binds_nothing(tmp_path, hub, env, sarai):
    data = tiny_gguf(tmp_path / "src.gguf", mb=0.5)
    hub.serve(LFM2, data, announce=hashlib.sha256(b"another file").hexdigest())
    r = sarai("models", "pull", "lfm2-1.2b", env=env)
    assert r.code == 1
    assert "checksum mismatch for LFM2-1.2B-Q4_K_M.gguf" in r.err
    models = tmp_path / "data" / "sarai" / "models"
    assert not list(models.glob("LFM2*"))
    assert not (tmp_path / "config" / "sarai" / "config.yaml").exists()


def test_pinned_checksum_wins_over_what_the_server_announces(tmp_path, hub, env, sarai):
    item = pull.CATALOGUE["qwen2.5-omni-3b"].model
    path = f"/{item.repo}/resolve/{item.revision}/{item.name}"
    hub.serve(path, b"GGUF" + b"\0" * 4096)  # announces its own (different) SHA-256
    r = sarai("models", "pull", "qwen2.5-omni-3b", env=env)
    assert r.code == 1 and "announces a different file" in r.err
    assert not [m for m, p, _ in hub.log if m == "GET" and p.startswith("/cdn")]


def test_any_repo_file_needs_a_checksum_and_binds_to_the_given_tier(tmp_path, hub, env, sarai):
    data = tiny_gguf(tmp_path / "src.gguf", mb=0.2)
    hub.serve("/me/models/resolve/main/mine.gguf", data, announce=False)
    r = sarai("models", "pull", "me/models/mine.gguf", "--tier", "expert", env=env)
    assert r.code == 1 and "no checksum is known for mine.gguf" in r.err
    sha = hashlib.sha256(data).hexdigest()
    r = sarai("models", "pull", "me/models/mine.gguf", "--tier", "expert", "--sha256", sha,
              env=env)
    assert r.code == 0, r.err
    config = yaml.safe_load((tmp_path / "config" / "sarai" / "config.yaml").read_text())
    assert config["models"]["expert"] == {"backend": "llamacpp", "model": "mine.gguf"}


def test_unknown_name_and_missing_file_are_one_sentence(tmp_path, hub, env, sarai):
    r = sarai("models", "pull", "gpt-5", env=env)
    assert r.code == 1 and r.err.startswith("sarai: error: unknown model 'gpt-5'")
    with pytest.raises(ModelError, match="does not exist"):
        pull.download(pull.PullFile("nobody/nothing", "x.gguf"), tmp_path, hub.url)


def test_existing_config_keeps_its_other_keys(tmp_path, hub, env, sarai):
    cfg = tmp_path / "config" / "sarai" / "config.yaml"
    cfg.parent.mkdir(parents=True)
    cfg.write_text("assistant:\n  history_turns: 2\nmodels:\n  tiny:\n    n_ctx: 1024\n")
    hub.serve(LFM2, tiny_gguf(tmp_path / "src.gguf", mb=0.2))
    r = sarai("models", "pull", "lfm2-1.2b", env=env)
    assert r.code == 0, r.err
    config = yaml.safe_load(cfg.read_text())
    assert config["assistant"] == {"history_turns": 2}
    assert config["models"]["tiny"] == {"n_ctx": 1024, "backend": "llamacpp",
                                        "model": "LFM2-1.2B-Q4_K_M.gguf"}
    assert cfg.with_name("config.yaml.bak").read_text().startswith("assistant:")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-q"]))


def test_pull_on_a_terminal_draws_a_bar(tmp_path, hub, env):
    """stderr a terminal (a pty here): the progress line redraws in place with a bar."""
    import pty
    import subprocess

    from conftest import REPO

    hub.serve(LFM2, tiny_gguf(tmp_path / "src.gguf", mb=12.0))
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "sarai.daemon.cli", "models", "pull",
                             "lfm2-1.2b", "--no-bind"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=secondary, text=True)
    os.close(secondary)
    seen = b""
    while True:
        try:
            chunk = os.read(primary, 65536)
        except OSError:  # the other end closed
            break
        if not chunk:
            break
        seen += chunk
    out, _ = proc.communicate(timeout=120)
    os.close(primary)
    assert proc.returncode == 0, seen.decode(errors="replace")
    text = seen.decode(errors="replace")
    assert "\r  LFM2-1.2B-Q4_K_M.gguf  [" in text and "#" in text
    assert "100%" in text and "MB/s" in text
    assert "checking SHA-256" in text and "sha256 ok" in out
