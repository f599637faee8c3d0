"""`sarai bench voice`: end of speech → first audio, through the real audio path.

Spoken utterances are played into a PulseAudio "room" while the voice loop (the same code as
`sarai run`) listens; each turn's first audio is measured from the moment speech ended until
its first sound was handed to the speaker. In the same run, a sequential baseline handles the
same utterances one stage after another, as a pipeline without the voice loop's latency work
would: wait for the end-of-speech silence, transcribe on Whisper's own 30 s window, generate
the whole reply, synthesise all of it. Barge-in is timed from the capture time of the first
voiced frame of the interruption to when the speaker went silent.
"""

from __future__ import annotations

import argparse
import contextlib
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from pathlib import Path

import psutil

from sarai.audio.pcm import read_audio
from sarai.audio.pulse import PulseRoom
from sarai.audio.speech_corpus import word_recall
from sarai.audio.vad import split_utterances
from sarai.daemon.app import Context, build_assistant
from sarai.daemon.cli.bench_cmd import percentiles, report
from sarai.daemon.conversation.harness import EventProbe
from sarai.daemon.conversation.turn import Assistant, ms_since
from sarai.daemon.conversation.voice_loop import VoiceLoop
from sarai.daemon.events import State
from sarai.models.backend import Message
from sarai.routing.router import TurnSignals

BUILT_IN = (
    ("en", "Hello, how are you today?"),
    ("en", "What is your name?"),
    ("en", "Good morning, I feel a bit tired."),
    ("en", "Can you tell me a joke?"),
    ("en", "Thank you, that was kind."),
    ("en", "What should I cook for dinner?"),
    ("en", "Is it going to rain tomorrow?"),
    ("en", "I am happy to talk to you."),
    ("es", "Hola, ¿cómo estás hoy?"),
    ("es", "¿Cómo te llamas?"),
    ("es", "Buenos días, estoy un poco cansado."),
    ("es", "¿Me cuentas un chiste?"),
    ("es", "Gracias, eres muy amable."),
    ("es", "¿Qué puedo cocinar para la cena?"),
    ("es", "¿Va a llover mañana?"),
    ("es", "Me alegra hablar contigo."),
)
ESPEAK_VOICES = {"en": "en-us", "es": "es"}
TEXTS = "texts.tsv"
BARGE_QUESTION = "Tell me a very long story about a dragon who lived in the mountains."
BARGE_WORDS = "Stop, please stop."
GOALS = {"first_answer_audio_p50_ms": 800, "first_answer_audio_p90_ms": 1200, "speedup": 2.5,
         "barge_in_stop_p90_ms": 200, "idle_cpu_percent": 2.0}


def register(bsub: argparse._SubParsersAction) -> None:
    p = bsub.add_parser(
        "voice",
        help="end of speech → first audio through the real audio path, vs. a sequential baseline",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--input-dir", type=Path, metavar="DIR",
                   help="use these WAV recordings (one utterance each) instead of the built-in"
                        f" set; a {TEXTS} beside them (tab-separated, no header: the WAV's name"
                        " without .wav, its language code, what is said) adds word recall and"
                        " figures per language")
    p.add_argument("--barge-in-trials", type=int, default=3, metavar="N")
    p.add_argument("--idle-s", type=float, default=10.0, metavar="S",
                   help="seconds of silence over which idle CPU is measured (once the"
                   " speaker, with nothing to play, has stopped its stream)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--plot", type=Path, metavar="FILE.png",
                   help="also draw each turn's stages as a waterfall (PNG, SVG or PDF)")
    p.set_defaults(func=_bench)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Said:
    language: str
    text: str


def _built_in(folder: Path) -> tuple[list[Path], dict[str, Said]]:
    """English and Spanish questions spoken by espeak-ng, with what each says."""
    wavs, said = [], {}
    for i, (lang, text) in enumerate(BUILT_IN):
        wav = folder / f"utt{i:02d}-{lang}.wav"
        subprocess.run(["espeak-ng", "-v", ESPEAK_VOICES[lang], "-s", "150", "-w", str(wav),
                        text], check=True)
        wavs.append(wav)
        said[wav.stem] = Said(lang, text)
    return wavs, said


def read_texts(folder: Path) -> dict[str, Said]:
    """`texts.tsv` in `folder`: recording name → what is said in it, in which language.
    ValueError names the line that cannot be read."""
    path = folder / TEXTS
    if not path.is_file():
        return {}
    out = {}
    for n, line in enumerate(path.read_text("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        if len(parts) != 3 or not all(p.strip() for p in parts):
            raise ValueError(f"{path}:{n}: expected 3 tab-separated fields (name, language, "
                             f"text), got {len(parts)}")
        name, lang, text = (p.strip() for p in parts)
        out[name.removesuffix(".wav")] = Said(lang, text)
    return out


class _Listener:
    """Runs the voice loop (the same code as `sarai run`) and watches its events."""

    def __init__(self, ctx: Context, assistant: Assistant) -> None:
        self.events = EventProbe()
        self.loop = VoiceLoop(ctx.config.audio, assistant, self.events,
                              listen=ctx.config.listen)

    def turn(self, timeout: float = 120) -> dict | None:
        try:
            return self.events.turn(timeout)
        except AssertionError:
            return None

    def settle(self, timeout: float = 30) -> None:
        """Wait until the loop is listening again, its own echo has died away and the models
        have read the system prompt (which takes a core for a moment after the start)."""
        deadline = time.monotonic() + timeout
        with contextlib.suppress(FutureTimeout):
            self.loop.warmed.result(timeout)
        while time.monotonic() < deadline and (
            self.loop.state is not State.LISTENING or self.loop.speaker.playing
            or not self.loop.mic_live
        ):
            time.sleep(0.05)
        time.sleep(0.8)

    def speaker_asleep(self) -> None:
        """Wait until the speaker's stream has stopped for want of anything to play, as it
        does `SLEEP_AFTER_S` after the last sound: listening for a turn, which is what SARAi
        does nearly all the time, is that state."""
        speaker = self.loop.speaker
        deadline = time.monotonic() + speaker.SLEEP_AFTER_S + 5
        while not speaker.asleep and time.monotonic() < deadline:
            time.sleep(0.05)


def _idle_cpu(seconds: float) -> float:
    proc = psutil.Process()
    before, t = proc.cpu_times(), time.perf_counter()
    time.sleep(seconds)
    after, wall = proc.cpu_times(), time.perf_counter() - t
    used = (after.user - before.user) + (after.system - before.system)
    return round(100 * used / wall, 2)


def _baseline(assistant: Assistant, wav: Path, ctx: Context) -> dict | None:
    """One recording handled one stage after another, with none of the voice loop's latency
    work: wait out the end-of-turn silence, transcribe on Whisper's own 30 s window, write
    the whole reply, synthesise all of it. Returns the stage times and the total (ms from
    end of speech to the moment the first audio could play)."""
    utts = split_utterances(read_audio(wav).samples, ctx.config.audio.vad)
    if not utts:
        return None
    utt = utts[0]
    stages = {"silence": float(ctx.config.audio.vad.end_silence_ms)}
    t = time.perf_counter()
    tr = assistant.transcriber.transcribe(utt.samples, fit_window=False)
    stages["asr"] = ms_since(t)
    t = time.perf_counter()
    tier = assistant.router.decide(TurnSignals(tr.text, audio_s=utt.duration_s)).tier
    backend = assistant.registry.backend(tier)
    ts = assistant.registry.settings(tier)
    messages = [Message("system", ctx.config.assistant.system_prompt), Message("user", tr.text)]
    reply = "".join(backend.stream(messages, max_tokens=ts.max_tokens,
                                   temperature=ts.temperature))
    stages["reply"] = ms_since(t)
    if not reply.strip():
        return None
    t = time.perf_counter()
    assistant.voices.voice(tr.language).synthesize(reply)
    stages["tts"] = ms_since(t)
    return {"first_audio_ms": round(sum(stages.values()), 1), "stages_ms": stages}


def _bench(args: argparse.Namespace, ctx: Context) -> int:
    if args.plot is not None:
        from sarai.daemon.cli.plot import output_problem

        problem = output_problem(args.plot)
        if problem:
            _say(f"sarai: error: {problem}")
            return 1
    room = PulseRoom.create()
    room.use_in_this_process()
    try:
        return _run(args, ctx, room)
    finally:
        room.close()


def _run(args: argparse.Namespace, ctx: Context, room: PulseRoom) -> int:
    with tempfile.TemporaryDirectory(prefix="sarai-bench-") as tmp:
        if args.input_dir:
            wavs = sorted(args.input_dir.glob("*.wav"))
            try:
                said = read_texts(args.input_dir)
            except (ValueError, OSError, UnicodeDecodeError) as exc:
                _say(f"sarai: error: {exc}")
                return 1
        else:
            wavs, said = _built_in(Path(tmp))
        if not wavs:
            _say(f"sarai: error: no .wav files in {args.input_dir}")
            return 1
        barge = _built_in_one(Path(tmp), "barge", BARGE_WORDS)
        _say(f"Loading models and the voice loop ({len(wavs)} utterances)…")
        from sarai.models import memory

        memory.for_a_long_run()  # the allocator as `sarai run` sets it up
        assistant = build_assistant(ctx, hear=True, speak=True)
        assistant.registry.preload_pinned()
        listener = _Listener(ctx, assistant)
        listener.loop.start()
        try:
            listener.settle()
            memory.settle()  # as `sarai run` does once it is listening
            _say("Waiting for the speaker to go idle…")
            listener.speaker_asleep()
            _say(f"Measuring idle CPU for {args.idle_s:g} s…")
            idle = _idle_cpu(args.idle_s)
            turns = []
            for i, wav in enumerate(wavs, 1):
                room.play(wav).wait(60)
                rec = listener.turn()
                t = rec["timings"] if rec else {}
                fa, faa = t.get("first_audio"), t.get("first_answer_audio")
                turns.append({"input": wav.name, "transcript": rec and rec["transcript"],
                              "language": rec and rec["language"],
                              "reply": rec and rec["reply"], "error": rec and rec["error"],
                              "tier": rec and rec["tier"], "first_audio_ms": fa,
                              "first_answer_audio_ms": faa,
                              "timings": rec and rec["timings"], "stages": rec and rec["stages"]})
                _score(turns[-1], said.get(wav.stem))
                _say(f"  [{i}/{len(wavs)}] first answer audio {faa} ms — "
                     f"{rec and rec['transcript']!r}")
                listener.settle()
            barge_ms = _barge_in_trials(args.barge_in_trials, listener, room, barge)
        finally:
            speaker = listener.loop.speaker
            underflows = speaker.underflows if speaker is not None else None
            listener.loop.stop()
        _say("Sequential baseline on the same recordings…")
        for turn, wav in zip(turns, wavs, strict=True):
            base = _baseline(assistant, wav, ctx)
            turn["baseline_first_audio_ms"] = base and base["first_audio_ms"]
            turn["baseline_stages_ms"] = base and base["stages_ms"]
        assistant.registry.close()
    fa = [t["first_audio_ms"] for t in turns if t["first_audio_ms"] is not None]
    faa = [t["first_answer_audio_ms"] for t in turns if t["first_answer_audio_ms"] is not None]
    base = [t["baseline_first_audio_ms"] for t in turns if t["baseline_first_audio_ms"]]
    result = {
        "turns": turns,
        "first_audio_ms": percentiles(fa, 50, 90),
        "first_answer_audio_ms": percentiles(faa, 50, 90),
        "baseline_first_audio_ms": percentiles(base, 50, 90),
        "speedup": None,
        "barge_in_stop_ms": percentiles(barge_ms, 50, 90),
        "idle_cpu_percent": idle,
        # Gaps in SARAi's voice: blocks the speaker played before they were ready.
        "speaker_underflows": underflows,
        "heard": f"{len(faa)}/{len(turns)}",
        "languages": _per_language(turns),
        "cpu_count": psutil.cpu_count(),
        "goals": GOALS,
    }
    if result["first_answer_audio_ms"]["p50"] and result["baseline_first_audio_ms"]["p50"]:
        result["speedup"] = round(result["baseline_first_audio_ms"]["p50"]
                                  / result["first_answer_audio_ms"]["p50"], 2)
    status = report(ctx.paths.bench_dir, "voice", result, args.json, _print)
    if args.plot is not None:  # after the figures are saved: a plot that fails loses nothing
        from sarai.daemon.cli.plot import plot_turns

        _say(f"{plot_turns(turns, args.plot)}: the stages of each turn")
    return status


def _score(turn: dict, said: Said | None) -> None:
    """What was said, and how much of it was heard (word recall)."""
    if said is None:
        return
    turn["said"], turn["said_language"] = said.text, said.language
    if turn["transcript"] is not None:
        hits, n = word_recall(said.text, turn["transcript"], said.language)
        turn["word_recall"] = round(hits / n, 3) if n else None
        turn["_words"] = (hits, n)


def _per_language(turns: list[dict]) -> dict[str, dict]:
    """Per language (as said, or else as heard): turns, first-audio figures, word recall
    (all words found in order / all words said) and how often the language was heard right."""
    out: dict[str, dict] = {}
    for lang in sorted({t.get("said_language") or t["language"] or "?" for t in turns}):
        mine = [t for t in turns if (t.get("said_language") or t["language"] or "?") == lang]
        words = [t.pop("_words") for t in mine if "_words" in t]
        scored = [t for t in mine if "said_language" in t and t["language"]]
        out[lang] = {
            "turns": len(mine),
            "heard": sum(t["first_answer_audio_ms"] is not None for t in mine),
            "first_answer_audio_ms": percentiles(
                [t["first_answer_audio_ms"] for t in mine
                 if t["first_answer_audio_ms"] is not None], 50, 90),
            "first_audio_ms": percentiles(
                [t["first_audio_ms"] for t in mine if t["first_audio_ms"] is not None], 50, 90),
            "word_recall": round(sum(h for h, _ in words) / sum(n for _, n in words), 3)
            if words and sum(n for _, n in words) else None,
            "language_right": round(sum(t["language"] == lang for t in scored) / len(scored), 3)
            if scored else None,
        }
    return out


def _built_in_one(folder: Path, name: str, text: str) -> Path:
    wav = folder / f"{name}.wav"
    subprocess.run(["espeak-ng", "-v", "en-us", "-s", "150", "-w", str(wav), text], check=True)
    return wav


def _barge_in_trials(n: int, listener: _Listener, room: PulseRoom, words: Path) -> list[float]:
    out: list[float] = []
    for i in range(n):
        asker = threading.Thread(target=listener.loop.ask, args=(BARGE_QUESTION,), daemon=True)
        asker.start()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not listener.loop.speaker.playing:
            time.sleep(0.02)
        time.sleep(0.5)
        room.play(words).wait(30)
        rec = listener.turn()  # the interrupted answer
        asker.join(60)
        stop = rec and rec["timings"].get("barge_in_stop")
        if stop is not None:
            out.append(stop)
        _say(f"  barge-in {i + 1}/{n}: playback stopped {stop} ms after speech began")
        listener.turn(timeout=60)  # the interruption is answered as a turn of its own
        listener.settle()
    return out


def _print(r: dict, path: Path) -> None:
    def fmt(d: dict) -> str:
        return f"p50 {d['p50']} ms, p90 {d['p90']} ms"

    print(f"end of speech → first answer audio: {fmt(r['first_answer_audio_ms'])}"
          "  (goal p50 ≤ 800 ms, p90 ≤ 1200 ms)")
    print(f"end of speech → first audio:  {fmt(r['first_audio_ms'])}  (a filler included)")
    print(f"sequential baseline:          {fmt(r['baseline_first_audio_ms'])}"
          "  (end silence, 30 s-window ASR, whole reply, whole speech)")
    print(f"speedup (p50):                {r['speedup']}×  (goal ≥ 2.5×)")
    print(f"barge-in stop:                {fmt(r['barge_in_stop_ms'])}  (goal ≤ 200 ms)")
    print(f"idle CPU while listening:     {r['idle_cpu_percent']} % of one core  (goal ≤ 2 %)")
    print(f"turns heard:                  {r['heard']}")
    print(f"speaker underflows:           {r['speaker_underflows']}  (gaps in SARAi's voice)")
    for lang, v in r["languages"].items():
        recall = "" if v["word_recall"] is None else f", word recall {v['word_recall']:.2f}"
        right = "" if v["language_right"] is None else \
            f", language heard right {100 * v['language_right']:.0f} %"
        print(f"  {lang}: {v['heard']}/{v['turns']} turns, first answer audio "
              f"{fmt(v['first_answer_audio_ms'])}{recall}{right}")
    print(f"saved: {path}")
