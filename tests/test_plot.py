"""`sarai history --plot`: the stage waterfall, drawn with matplotlib and checked by its pixels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO
from sarai.daemon.cli.plot import COLORS, plot_turns, read_turn_log, with_stages


def spoken(transcript: str, asr: float, load: float | None, first: float, done: float,
           barge: tuple[float, float] | None = None) -> dict:
    stages = {"end_of_speech": [0, 0], "asr": [0, asr], "route": [asr, asr + 2]}
    t = asr + 2
    if load is not None:
        stages["model_load"] = [t, t + load]
        t += load
    stages.update(first_token=[t + 80, t + 80], first_audio=[first, first],
                  first_answer_audio=[first + 40, first + 40], done=[done, done])
    if barge is not None:
        stages["barge_in"] = list(barge)
    return {"transcript": transcript, "tier": "omni_fast", "source": "voice", "stages": stages}


TURNS = [
    spoken("Hello, how are you today?", 180, None, 640, 2100),
    spoken("Please explain why the sky is blue, step by step.", 420, 900, 1750, 4800,
           barge=(3900, 4100)),
    {"transcript": "an old turn", "tier": "tiny", "timings": {"total": 900}},  # no stages
    {"transcript": "typed", "tier": "omni_fast", "source": "text",
     "stages": {"request": [0, 0], "route": [0, 1], "first_token": [150, 150],
                "done": [700, 700]}},
]


def hex_rgb(color: str) -> np.ndarray:
    return np.array([int(color[i:i + 2], 16) for i in (1, 3, 5)])


def pixels(img: np.ndarray, color: str, tol: int = 40) -> int:
    return int((np.abs(img[:, :, :3].astype(int) - hex_rgb(color)).max(axis=2) <= tol).sum())


def test_the_waterfall_draws_spans_and_moments_and_skips_old_records(tmp_path):
    kept, skipped = with_stages(TURNS)
    assert len(kept) == 3 and skipped == 1
    path = plot_turns(TURNS, tmp_path / "turns.png")
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[1] > 1000 and img.shape[0] > 250
    for stage in ("asr", "model_load", "barge_in", "first_audio"):
        assert pixels(img, COLORS[stage]) > 30, stage
    # Only the second turn loaded a model: its magenta bar sits lower than the first row.
    rows = np.nonzero((np.abs(img.astype(int) - hex_rgb(COLORS["model_load"])).max(axis=2)
                       <= 40).any(axis=1))[0]
    asr_rows = np.nonzero((np.abs(img.astype(int) - hex_rgb(COLORS["asr"])).max(axis=2)
                           <= 40).any(axis=1))[0]
    assert rows.min() > asr_rows.min()


def test_history_plot_from_the_turn_log_when_sarai_is_not_running(sarai_env, tmp_path):
    log = Path(sarai_env["XDG_STATE_HOME"]) / "sarai" / "turns.jsonl"
    log.parent.mkdir(parents=True)
    log.write_text("".join(json.dumps(t) + "\n" for t in TURNS) + "not json\n")
    assert len(read_turn_log(log, 10)) == 4
    out = tmp_path / "plot.png"
    env = {**sarai_env, "XDG_RUNTIME_DIR": str(tmp_path)}
    r = subprocess.run([sys.executable, "-m", "sarai.daemon.cli", "history", "--plot", str(out)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{out}: the stages of 3 turn(s) from {log}"
    assert "1 turn(s) recorded without stage timings" in r.stderr
    assert Image.open(out).size[0] > 1000
    log.write_text(json.dumps(TURNS[2]) + "\n")
    r = subprocess.run([sys.executable, "-m", "sarai.daemon.cli", "history", "--plot", str(out)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and "no turn with stage timings" in r.stderr


def test_history_plot_of_a_real_daemons_turn(sarai_env, pulse, tmp_path):
    from daemon_harness import start_daemon, stop_daemon

    d = start_daemon({**sarai_env, **pulse.env})
    try:
        turn = d.call("ask", text="What is the capital of France?", speak=False)["turn"]
        if not turn.get("stages"):
            pytest.skip("this daemon's turn records carry no stages")
        out = tmp_path / "real.png"
        env = {**sarai_env, "XDG_RUNTIME_DIR": str(d.runtime)}
        r = subprocess.run([sys.executable, "-m", "sarai.daemon.cli", "history", "--plot",
                            str(out)], cwd=REPO, env=env, capture_output=True, text=True,
                           timeout=120)
    finally:
        stop_daemon(d)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == f"{out}: the stages of 1 turn(s) from the running SARAi"
    img = np.asarray(Image.open(out).convert("RGB"))
    assert pixels(img, COLORS["route"]) + pixels(img, COLORS["first_token"]) > 20
