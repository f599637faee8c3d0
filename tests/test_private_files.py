"""What SARAi writes about its user is for that user only: the daemon log (also after it
rotates), the turn log, benchmark results and the router's cache are 0600 files in 0700
folders, with the usual umask (022), and looser ones left from before are tightened."""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

import pytest

from sarai.daemon.cli.bench_cmd import save_result
from sarai.daemon.paths import private_dir, write_private
from sarai.daemon.service.logs import setup_logging
from sarai.daemon.service.turn_log import TurnLog
from sarai.routing.classifier import TextScorer, load_or_train


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture(autouse=True)
def usual_umask():
    old = os.umask(0o022)  # what a desktop session has: new files 0644, folders 0755
    yield
    os.umask(old)


@pytest.fixture
def root_logging():
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for h in list(root.handlers):
        root.removeHandler(h)
        h.close()
    for h in handlers:
        root.addHandler(h)
    root.setLevel(level)


def test_the_daemon_log_stays_owner_only_after_it_rotates(tmp_path, root_logging):
    state = tmp_path / "state" / "sarai"
    log_file = state / "daemon.log"
    setup_logging(logging.INFO, journal=False, log_file=log_file)
    assert mode(state) == 0o700 and mode(state.parent) == 0o700  # created by SARAi
    assert mode(log_file) == 0o600
    log = logging.getLogger("sarai.test")
    for i in range(2500):  # ~1.2 MB: over the 1 MB limit, so the file rotates once
        log.info("turn %d: what the user said, which nobody else may read %s", i, "x" * 400)
    backup = state / "daemon.log.1"
    assert backup.exists(), "the log did not rotate"
    assert log_file.stat().st_size < 1_000_000  # a fresh file after the rotation …
    assert mode(log_file) == 0o600 and mode(backup) == 0o600  # … as private as the first
    assert "turn 2499" in log_file.read_text()


def test_looser_logs_from_before_are_tightened(tmp_path, root_logging):
    state = tmp_path / "sarai"
    state.mkdir(mode=0o755)
    for name in ("daemon.log", "daemon.log.1", "daemon.log.2"):
        (state / name).write_text("an old transcript\n")
        os.chmod(state / name, 0o644)
    setup_logging(logging.INFO, journal=False, log_file=state / "daemon.log")
    assert mode(state) == 0o700
    assert [mode(state / n) for n in ("daemon.log", "daemon.log.1", "daemon.log.2")] == \
        [0o600] * 3


def test_the_turn_log_is_owner_only(tmp_path):
    state = tmp_path / "sarai"
    state.mkdir(mode=0o755)
    old = state / "turns.jsonl"
    old.write_text('{"transcript": "from before"}\n')
    os.chmod(old, 0o644)
    TurnLog(old).append({"transcript": "hello", "reply": "hi"})
    assert mode(state) == 0o700 and mode(old) == 0o600
    assert [r["transcript"] for r in TurnLog(old).read()] == ["from before", "hello"]
    fresh = tmp_path / "new" / "sarai" / "turns.jsonl"
    TurnLog(fresh).append({"transcript": "hello"})
    assert mode(fresh) == 0o600 and mode(fresh.parent) == 0o700


def test_bench_results_are_owner_only(tmp_path):
    state = tmp_path / "sarai"
    state.mkdir(mode=0o755)
    path = save_result(state / "bench", "voice", {"turns": [{"transcript": "secret"}]})
    assert path.parent == state / "bench"
    assert mode(path) == 0o600 and mode(path.parent) == 0o700 and mode(state) == 0o700
    assert "secret" in path.read_text()


def test_the_router_cache_is_owner_only(tmp_path):
    scorer: TextScorer = load_or_train(None)
    path = tmp_path / "state" / "sarai" / "router" / "router-scorer.npz"
    scorer.save(path)
    assert mode(path) == 0o600
    assert [mode(p) for p in (path.parent, path.parent.parent, path.parent.parent.parent)] == \
        [0o700] * 3
    os.chmod(path.parent, 0o755)  # a folder an older version made
    scorer.save(path)
    assert mode(path.parent) == 0o700
    assert TextScorer.load(path).fingerprint == scorer.fingerprint


def test_private_helpers_leave_other_peoples_folders_alone(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    write_private(shared / "mine" / "f.txt", "x")
    assert mode(shared / "mine") == 0o700 and mode(shared / "mine" / "f.txt") == 0o600
    assert mode(shared) == 0o755  # a parent that existed is not SARAi's to change
    if os.getuid() == 0:  # a folder of another user's is never changed, even by root
        os.chown(shared, 65534, 65534)
        private_dir(shared)
        assert mode(shared) == 0o755
