"""`sarai bench soak`: many turns into a real daemon, watching for leaks, losses and crossed turns.

A real `sarai run` daemon is started on PulseAudio test devices (a null sink is the room, its
monitor the microphone). Spoken questions (espeak-ng, English and Spanish, some short and
friendly, some asking for thought, so both tiers answer) are played into the room one after
another; every so often SARAi is talked over in the middle of an answer, and typed questions
arrive over the control socket at the same time as spoken ones. After every turn the daemon's
memory (RSS and RssAnon), open files and threads are read from /proc.

Reported: turns asked and answered, lost (asked but never answered), crashes (the daemon
died or restarted its voice loop), stuck (after a turn it did not come back to listening
within two minutes), cross-talk (a turn whose transcript is not what was asked
in it), the memory trend (RssAnon slope per 100 turns after the first fifth, the warm-up),
and end of speech → first answer audio.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from sarai.daemon.cli.bench_cmd import percentiles, report

QUESTIONS = (  # (language, espeak voice, text)
    ("en", "en-us", "Hello, how are you today?"),
    ("en", "en-us", "Please explain why the sky is blue, step by step."),
    ("es", "es", "Hola, ¿cómo estás hoy?"),
    ("en", "en-us", "What should I cook for dinner tonight?"),
    ("es", "es", "Explícame por qué llueve, paso a paso."),
    ("en", "en-us", "Thank you, that was very kind of you."),
    ("en", "en-us", "How do airplanes stay up in the air?"),
    ("es", "es", "¿Qué hora es en Madrid?"),
)
STORY = "Tell me a very long story about a dragon who lived in the mountains."
STOP = "Stop, please stop."
TYPED = "what is two plus two"
CONFIG = """\
assistant:
  spoken_max_sentences: 2
audio:
  asr:
    language: auto
models:
  omni_quality:
    residency: pinned
"""
# Barge-in turns ask for a long answer; the rest keep answers short so the run stays short.
BARGE_EVERY = 10
TYPED_EVERY_S = 12.0


def register(bsub: argparse._SubParsersAction) -> None:
    p = bsub.add_parser(
        "soak",
        help="many spoken and typed turns into a real daemon: losses, crossed turns, leaks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--turns", type=int, default=200, metavar="N",
                   help="spoken turns to play (default 200; typed ones come on top)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_bench)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _espeak(folder: Path, name: str, voice: str, text: str) -> Path:
    wav = folder / f"{name}.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(wav), text], check=True)
    return wav


def _words(text: str) -> set[str]:
    return {w for w in re.findall(r"\w+", text.lower()) if len(w) > 2}


def _same_question(heard: str, asked: str) -> bool:
    """Whisper may mishear a word or two; a turn that heard another question shares little."""
    want = _words(asked)
    return bool(want) and len(_words(heard) & want) >= max(1, len(want) // 2)


def _proc_figures(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)

    def kb(key: str) -> float:
        return round(int(fields[key].split()[0]) / 1024, 1)

    return {"rss_mb": kb("VmRSS"), "rss_anon_mb": kb("RssAnon"),
            "fds": len(os.listdir(f"/proc/{pid}/fd")), "threads": int(fields["Threads"])}


def _slope_per_100(values: list[float]) -> float | None:
    """Least-squares slope of `values` (one per turn) per 100 turns, after the first fifth."""
    import numpy as np

    start = len(values) // 5
    ys = np.asarray(values[start:], dtype=float)
    if len(ys) < 5:
        return None
    xs = np.arange(len(ys), dtype=float)
    return round(float(np.polyfit(xs, ys, 1)[0]) * 100, 2)


def _same_models_slope(samples: list[dict]) -> dict[str, Any]:
    from collections import Counter

    import numpy as np

    after = [(i, s) for i, s in enumerate(samples) if i >= len(samples) // 5 and s.get("models")]
    if not after:
        return {}
    common, _ = Counter(tuple(s["models"]) for _, s in after).most_common(1)[0]
    same = [(i, s["rss_anon_mb"]) for i, s in after if tuple(s["models"]) == common]
    slope = None
    if len(same) >= 5:
        xs, ys = np.array([i for i, _ in same], float), np.array([v for _, v in same], float)
        slope = round(float(np.polyfit(xs, ys, 1)[0]) * 100, 2)
    return {"resident_models": [s.get("models") for s in samples],
            "same_models": {"models": list(common), "samples": len(same),
                            "rss_anon_slope_mb_per_100_turns": slope}}


class _Daemon:
    """`sarai run` of the bench's own, on the room's devices, with a private runtime dir."""

    def __init__(self, room, home: Path) -> None:
        from sarai.daemon.control.wire import socket_path

        self.runtime = Path(tempfile.mkdtemp(prefix="sarai-soak-", dir="/tmp"))
        os.chmod(self.runtime, 0o700)
        config = home / "config.yaml"
        config.write_text(CONFIG)
        env = {**os.environ, **room.env, "XDG_RUNTIME_DIR": str(self.runtime),
               "XDG_STATE_HOME": str(home / "state"), "XDG_CONFIG_HOME": str(home / "cfg")}
        env.pop("NOTIFY_SOCKET", None)
        self.log = open(home / "daemon.out", "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "sarai.daemon.cli", "--config", str(config), "run"],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        self.sock = socket_path(self.runtime / "sarai")

    def call(self, cmd: str, timeout: float = 600, **args: Any) -> dict[str, Any]:
        from sarai.daemon.control.client import ControlClient

        with ControlClient(self.sock, timeout) as c:
            return c.call(cmd, **args)

    def wait_state(self, want: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return False
            try:
                if self.call("status", timeout=10)["state"] == want:
                    return True
            except Exception:  # still starting: the socket is not there yet
                pass
            time.sleep(0.2)
        return False

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()
        shutil.rmtree(self.runtime, ignore_errors=True)


def _bench(args: argparse.Namespace, ctx) -> int:
    from sarai.audio.pulse import PulseRoom

    room = PulseRoom.create()
    try:
        with tempfile.TemporaryDirectory(prefix="sarai-soak-") as tmp:
            result = _run(args, Path(tmp), room)
    finally:
        room.close()
    return report(ctx.paths.bench_dir, "soak", result, args.json, _print)


def _run(args: argparse.Namespace, home: Path, room) -> dict[str, Any]:
    wavs = [(lang, text, _espeak(home, f"q{i}", voice, text))
            for i, (lang, voice, text) in enumerate(QUESTIONS)]
    story = _espeak(home, "story", "en-us", STORY)
    stop = _espeak(home, "stop", "en-us", STOP)
    _say("Starting a daemon on the room's devices…")
    d = _Daemon(room, home)
    samples: list[dict[str, float]] = []
    asked: list[tuple[str, str]] = []  # (what was said, kind) for each spoken turn asked
    typed: list[dict] = []
    typed_failed: list[str] = []
    stop_typing = threading.Event()
    crashes = 0
    stuck = 0
    try:
        if not d.wait_state("listening", 600):
            raise SystemExit(f"sarai: error: the daemon did not start (see {d.log.name})")
        pid = d.proc.pid

        def type_questions() -> None:
            while not stop_typing.wait(TYPED_EVERY_S):
                try:
                    typed.append(d.call("ask", text=TYPED, speak=False)["turn"])
                except Exception as exc:
                    typed_failed.append(str(exc))

        typist = threading.Thread(target=type_questions, daemon=True)
        typist.start()
        def sample() -> None:
            """Memory, files and threads once the last turn is over (a turn in progress holds
            buffers it gives back), with the tier models resident at that moment."""
            figures = _proc_figures(pid)
            try:
                ps = d.call("models", timeout=10, action="ps")
                figures["models"] = sorted(m["tier"] for m in ps["models"] if m["resident"])
            except Exception:  # noqa: BLE001 - a figure missing is not a failed soak
                figures["models"] = None
            samples.append(figures)
            if len(samples) % 10 == 0:
                _say(f"  {len(samples)}/{args.turns} spoken turns, RssAnon "
                     f"{figures['rss_anon_mb']} MB, {figures['threads']} threads")

        for n in range(args.turns):
            if d.proc.poll() is not None:
                crashes += 1
                break
            if not d.wait_state("listening", 120) and d.proc.poll() is None:
                stuck += 1
                _say(f"  not listening two minutes after turn {n}: stuck")
            if n:
                try:
                    sample()
                except OSError:  # it is gone: counted as a crash at the top of the loop
                    continue
            time.sleep(0.6)  # the last answer's echo dies away
            if n % BARGE_EVERY == BARGE_EVERY - 1:
                room.play(story).wait(60)
                asked.append((STORY, "barge-in"))
                if d.wait_state("speaking", 120):
                    time.sleep(1.0)
                    room.play(stop).wait(30)
                    asked.append((STOP, "interruption"))
            else:
                lang, text, wav = wavs[n % len(wavs)]
                room.play(wav).wait(60)
                asked.append((text, lang))
        d.wait_state("listening", 300)
        if d.proc.poll() is None:
            sample()
        stop_typing.set()
        typist.join(600)
        time.sleep(2)
        status = d.call("status") if d.proc.poll() is None else {}
        crashes += int(status.get("restarts") or 0) + (0 if status else 1)
    finally:
        stop_typing.set()
        d.close()
    # Every turn, from the daemon's turn log (its history keeps only the last few).
    log = home / "state" / "sarai" / "turns.jsonl"
    history = [json.loads(line) for line in log.read_text().splitlines() if line.strip()] \
        if log.exists() else []
    return _summarise(asked, history, typed, typed_failed, samples, crashes, stuck)


def _summarise(asked, history, typed, typed_failed, samples, crashes,
               stuck) -> dict[str, Any]:
    spoken = [t for t in history if t["source"] == "voice"]
    texts = [t for t in history if t["source"] != "voice"]
    # Cross-talk: a spoken turn that holds the typed question, or a typed turn that holds
    # anything else. A spoken question Whisper misheard is not cross-talk: it is counted as
    # misheard (it matches none of the questions asked).
    typed_words = _words(TYPED)
    cross = sum(1 for t in spoken if typed_words <= _words(t["transcript"]))
    cross += sum(1 for t in texts if t["transcript"] != TYPED)
    misheard = sum(1 for t in spoken
                   if not any(_same_question(t["transcript"], q) for q, _ in asked))
    spoken_answered = sum(1 for t in spoken if t.get("reply") or t.get("interrupted"))
    typed_answered = sum(1 for t in typed if t.get("reply"))
    lost = max(0, len(asked) - spoken_answered) + (len(typed) - typed_answered) \
        + len(typed_failed)
    faa = [t["timings"]["first_answer_audio"] for t in spoken
           if "first_answer_audio" in t.get("timings", {})]
    return {
        "turns": len(asked) + len(typed) + len(typed_failed),
        "spoken_asked": len(asked),
        "typed_asked": len(typed) + len(typed_failed),
        "answered": spoken_answered + typed_answered,
        "lost": lost,
        "crashes": crashes,
        "stuck": stuck,
        "cross_talk": cross,
        "misheard": misheard,
        "interrupted": sum(1 for t in spoken if t.get("interrupted")),
        "rss_mb": [s["rss_mb"] for s in samples],
        "rss_anon_mb": [s["rss_anon_mb"] for s in samples],
        "rss_anon_slope_mb_per_100_turns": _slope_per_100([s["rss_anon_mb"] for s in samples]),
        # Models load and unload (an idle timeout, the RAM budget): the same slope over only
        # the samples taken with the set of tier models most often resident after warm-up.
        **_same_models_slope(samples),
        "fds": [s["fds"] for s in samples],
        "threads": [s["threads"] for s in samples],
        "first_answer_audio_ms": percentiles(faa, 50, 90),
        "typed_failures": typed_failed[:10],
        "goals": {"lost": 0, "crashes": 0, "stuck": 0, "cross_talk": 0,
                  "rss_anon_slope_mb_per_100_turns": 5.0},
    }


def _print(r: dict[str, Any], path: Path) -> None:
    def span(xs: list[float]) -> str:
        return f"{xs[0]} → {xs[-1]} (min {min(xs)}, max {max(xs)})" if xs else "-"

    print(f"turns:           {r['turns']} ({r['spoken_asked']} spoken, {r['typed_asked']} typed)")
    print(f"answered:        {r['answered']}   lost: {r['lost']}   crashes: {r['crashes']}"
          f"   stuck: {r['stuck']}   cross-talk: {r['cross_talk']}   (goal 0 each);"
          f" misheard: {r['misheard']}")
    print(f"RssAnon slope:   {r['rss_anon_slope_mb_per_100_turns']} MB per 100 turns after "
          "warm-up (goal ≤ 5)")
    same = r.get("same_models")
    if same:
        print(f"  with the same models resident ({', '.join(same['models'])}; "
              f"{same['samples']} samples): {same['rss_anon_slope_mb_per_100_turns']} MB "
              "per 100 turns")
    print(f"RSS MB:          {span(r['rss_mb'])}")
    print(f"open files:      {span(r['fds'])}")
    print(f"threads:         {span(r['threads'])}")
    faa = r["first_answer_audio_ms"]
    print(f"first answer audio: p50 {faa['p50']} ms, p90 {faa['p90']} ms")
    print(f"saved: {path}")
