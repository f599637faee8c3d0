"""`sarai bench room`: SARAi's own voice and a person's, through simulated rooms.

Each room is a shoebox simulated with pyroomacoustics (image sources, absorption from Sabine's
formula): a small office (RT60 ≈ 0.3 s, the speaker 0.7 m from the microphone) and a living
room (RT60 ≈ 0.6 s, the speaker 1 m away). The device-free voice harness runs SARAi's real
voice loop in virtual time — the front end with the WebRTC AEC3 echo canceller, webrtcvad
and Silero, the conversation core, Whisper, the sentence splitter and the Piper voice — with
the speaker's sound reaching the microphone through the room's impulse response (convolved as
a stream), 30 ms later than the device timestamps say, over the room's noise; the speaker
plays at its voice's rate with the real speaker's 80 ms buffer. SARAi's voice reaches the
microphone at -20 dBFS.

What SARAi says: fixed English texts (a few paragraphs each), written out by a fixed-answer
model and spoken by the configured Piper voice through the real speech path. The language
models are not part of what this measures, and a fixed text makes every run speak the same.

1. SARAi alone: answers one after another (with pauses between them) until at least
   --speech-min minutes of its voice were heard. Every barge-in pause or interruption meanwhile
   is a self-interruption, every turn started from what the microphone heard a false turn.
   The echo reduction is the echo's energy over the canceller's output, on these answers.
2. Barge-in: while SARAi answers, a recorded person (Asterisk's prompts, read by Allison:
   Mexican Spanish by default) talks over it from across the room, at the echo's level and
   10 dB below it, alternately. Recall: the share of those that interrupted the answer while
   they spoke; stop: from the first voiced 30 ms of the person's speech at the microphone
   (webrtcvad on their voice alone, as `sarai bench voice` times it) until the speaker went
   silent, its 80 ms buffer played out (also reported from their first sound).

The barge-in thresholds (listen.barge_in_*) were tuned on the English prompts with other
texts; the Spanish ones were kept apart for this measurement (--prompts en measures on the
tuning set).
"""

from __future__ import annotations

import argparse
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import webrtcvad
from scipy.signal import fftconvolve

from sarai.audio.devices import SpeakerSink
from sarai.audio.echo import EchoCanceller, EchoTiming
from sarai.audio.pcm import SAMPLE_RATE, read_audio
from sarai.audio.room import (
    ROOMS,
    RoomEcho,
    RoomSpec,
    echo_gain,
    impulse_responses,
    scaled_to,
)
from sarai.daemon.app import Context, asr_model_dirs, voice_bank
from sarai.daemon.cli.bench_cmd import percentiles, report
from sarai.daemon.conversation.harness import ScriptedModels, SpeakerWatch, VoiceHarness
from sarai.daemon.conversation.memory import Conversation
from sarai.daemon.conversation.requests import typed
from sarai.daemon.conversation.speech import SpokenLimits
from sarai.daemon.conversation.turn import Assistant
from sarai.daemon.events import EventKind
from sarai.models import memory
from sarai.routing.router import Router

PROMPTS = {"en": Path("/usr/share/asterisk/sounds/en_US_f_Allison"),
           "es": Path("/usr/share/asterisk/sounds/es_MX_f_Allison")}
PROMPT_PACKAGES = {"en": "asterisk-core-sounds-en-wav", "es": "asterisk-core-sounds-es-wav"}
ECHO_DBFS = -20.0  # SARAi's voice at the microphone (active level)
DEVICE_DELAY_S = 0.03  # how much later the echo arrives than the device timestamps say
GOALS = {"self_interruptions_per_min": 0, "false_turns": 0, "barge_in_recall_0db": 0.9,
         "barge_in_recall_m10db": 0.7, "barge_in_stop_p50_ms": 200, "echo_reduction_db": 25}

ANSWERS = (
    "The river starts as a thin stream high in the hills, fed by snow that melts slowly "
    "through the spring. By the time it reaches the valley it is wide and calm, and "
    "fishermen wait on its banks from early morning. Further down, it turns the wheels of "
    "two old mills that still grind flour for the village bakery. In the autumn the water "
    "rises, and the meadows on both sides become a shallow lake for a few weeks. Birds "
    "stop there on their way south, and children count them from the bridge.",
    "A good vegetable soup needs very little. Chop an onion, two carrots and a stick of "
    "celery, and let them soften in a little olive oil for ten minutes. Add a potato, a "
    "handful of green beans and whatever is left in the fridge. Cover everything with water "
    "or stock, season it with salt, pepper and a bay leaf, and let it simmer for half an "
    "hour. A spoonful of pesto or some grated cheese on top makes it a meal. It keeps well "
    "for three days and tastes even better on the second.",
    "The first trains ran on wooden rails and were pulled by horses. Steam engines arrived "
    "at the beginning of the nineteenth century, and within fifty years railways crossed "
    "whole continents. Towns grew around the stations, clocks were set to railway time, and "
    "a journey that had taken a week could be done in a day. Today high speed trains travel "
    "at more than three hundred kilometres an hour, while many small lines have been turned "
    "into paths for walkers and cyclists.",
    "If you want to sleep better, keep the same hours every day, even at the weekend. Stop "
    "drinking coffee after lunch, and keep the bedroom cool, dark and quiet. Screens keep "
    "the brain awake, so put the phone away an hour before bed and read a paper book "
    "instead. A short walk in daylight in the morning helps the body clock too. If you "
    "cannot fall asleep after twenty minutes, get up, do something calm in dim light, and "
    "go back to bed when you feel tired.",
    "Honey bees live in colonies of tens of thousands. The queen lays the eggs, the workers "
    "build the comb, feed the young, guard the entrance and collect nectar and pollen, and "
    "the drones have a single task. A worker that finds a good patch of flowers returns to "
    "the hive and dances, and the angle and length of the dance tell the others where to "
    "fly. In winter the bees cluster together and shiver to keep the colony warm, living on "
    "the honey they stored in summer.",
    "The old market opens before dawn. Farmers arrive with vans full of tomatoes, peppers "
    "and melons, and the fish stalls are covered in ice. By seven the first customers walk "
    "between the tables, tasting cheese and asking about prices. Around noon the noise "
    "reaches its peak, with sellers calling out their best offers. In the afternoon the "
    "stalls close one by one, the streets are washed, and only the smell of oranges stays "
    "in the air until the next morning.",
)
REPLY_TO_USER = "All right, I stopped. Go ahead."


def register(bsub: argparse._SubParsersAction) -> None:
    p = bsub.add_parser(
        "room",
        help="echo cancellation and barge-in through simulated rooms (device-free)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--room", action="append", choices=sorted(ROOMS),
                   help="only this room (repeatable); default: all")
    p.add_argument("--speech-min", type=float, default=3.0, metavar="MIN",
                   help="minutes of SARAi's own voice per room (default 3)")
    p.add_argument("--trials", type=int, default=20, metavar="N",
                   help="barge-in trials per level per room (default 20)")
    p.add_argument("--prompts", choices=sorted(PROMPTS), default="es",
                   help="the person's recorded prompts (default es; en was used for tuning)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_bench)


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# --- what SARAi says ----------------------------------------------------------------------

def _fixed_answer(question: str) -> str:
    """What SARAi answers: ANSWERS[N] to "answer N", a short acknowledgement to anything
    else (see the module comment)."""
    words = question.split()
    if len(words) == 2 and words[0] == "answer" and words[1].isdigit():
        return ANSWERS[int(words[1]) % len(ANSWERS)]
    return REPLY_TO_USER


def _assistant(ctx: Context) -> Assistant:
    from sarai.audio.asr import Transcriber

    cfg = ctx.config
    transcriber = Transcriber(cfg.audio.asr, asr_model_dirs(ctx))
    transcriber.preload()
    voices = voice_bank(ctx)
    voices.preload()
    return Assistant(
        system_prompt=cfg.assistant.system_prompt,
        registry=ScriptedModels(reply=_fixed_answer, name="fixed answers",  # type: ignore[arg-type]
                                max_tokens=4096),
        router=Router(cfg.routing, cache_dir=ctx.paths.state_dir / "router"),
        memory=Conversation(cfg.assistant.history_turns, cfg.assistant.history_tokens),
        transcriber=transcriber,
        voices=voices,
        language="en",
        spoken=SpokenLimits(0, 0.0),  # answers are spoken whole
    )


# --- the person ---------------------------------------------------------------------------

def _prompts(lang: str) -> list[tuple[str, np.ndarray]]:
    """Recorded prompts of 1-4 s (leading and trailing silence cut), in name order."""
    out = []
    for wav in sorted(PROMPTS[lang].glob("*.wav")):
        x = read_audio(wav).samples.astype(np.float64)
        loud = np.flatnonzero(np.abs(x) > 300)
        if not len(loud):
            continue
        x = x[loud[0] : loud[-1] + 1]
        if 1.0 <= len(x) / SAMPLE_RATE <= 4.0:
            out.append((wav.name, x))
    return out


# --- measuring ----------------------------------------------------------------------------

class _Measured(EchoCanceller):
    """The real canceller, keeping what went in and out of it and the CPU time it took."""

    def __init__(self, timing: EchoTiming) -> None:
        super().__init__(timing)
        self.frames: list[tuple[np.ndarray, np.ndarray]] = []
        self.cpu = {"speaking": 0.0, "idle": 0.0}
        self.audio_s = {"speaking": 0.0, "idle": 0.0}

    def clean(self, frame: np.ndarray, captured_at: float | None = None) -> np.ndarray:
        t = time.process_time()
        out = super().clean(frame, captured_at)
        state = "speaking" if self._engaged else "idle"
        self.cpu[state] += time.process_time() - t
        self.audio_s[state] += len(frame) / SAMPLE_RATE
        self.frames.append((frame, out))
        return out


def _silence(s: float) -> np.ndarray:
    return np.zeros(int(round(s * SAMPLE_RATE)), np.int16)


def _settle(h: VoiceHarness, watch: SpeakerWatch, idle_s: float, limit_s: float = 120.0) -> None:
    """Feed silence until every turn is over and the speaker is quiet, then `idle_s` more."""
    waited = 0.0
    while (h.core.busy or h.speaker.playing) and waited < limit_s:
        h.feed(_silence(0.3), on_frame=watch)
        waited += 0.3
    h.feed(_silence(idle_s), on_frame=watch)


def _voice_turns(h: VoiceHarness) -> set[int]:
    h.probe.drain()
    return {e.data["turn"] for e in h.probe.seen
            if e.kind is EventKind.PHASE and e.data.get("source") in ("voice", "push")}


def _erle(frames: list[tuple[np.ndarray, np.ndarray]], echo: list[np.ndarray],
          skip_s: float = 0.0) -> float | None:
    """Echo energy over output energy where SARAi's echo is within 30 dB of its level."""
    n = min(len(frames), len(echo))
    if not n:
        return None
    e = np.array([float(np.mean(echo[i] ** 2)) for i in range(n)])
    o = np.array([float(np.mean(frames[i][1].astype(np.float64) ** 2)) for i in range(n)])
    act = e > (32768.0 * 10 ** ((ECHO_DBFS - 30) / 20)) ** 2
    act[: int(skip_s * SAMPLE_RATE / len(frames[0][0]))] = False
    if not act.any():
        return None
    return round(10 * np.log10(e[act].sum() / max(o[act].sum(), 1e-9)), 1)


def _run_room(spec: RoomSpec, ctx: Context, assistant: Assistant, args: argparse.Namespace,
              prompts: list[tuple[str, np.ndarray]], rng: np.random.Generator) -> dict:
    cfg = ctx.config
    _say(f"[{spec.name}] impulse responses…")
    rirs = impulse_responses(spec)
    voice = assistant.voices.voice("en")  # type: ignore[union-attr]
    gain = echo_gain(rirs.speaker, voice.synthesize(ANSWERS[0].split(". ")[0] + "."),
                     voice.sample_rate, ECHO_DBFS)
    path = RoomEcho(rirs.speaker, gain, delay_s=DEVICE_DELAY_S, noise_db=spec.noise_dbfs,
                    seed=args.seed)
    canceller = _Measured(EchoTiming(warmup_s=cfg.listen.echo_warmup_s,
                                     deaf_s=cfg.listen.echo_deaf_s))
    assistant.forget()
    h = VoiceHarness(assistant, cfg.listen, cfg.audio.vad, echo_path=path,
                     canceller=canceller, speaker_rate=voice.sample_rate,
                     speaker_latency_s=SpeakerSink.LATENCY_S, second_opinion=True)
    watch = SpeakerWatch(h)

    # 1. SARAi alone.
    h.feed(_silence(1.0), on_frame=watch)
    k = 0
    while _heard_s(h) < args.speech_min * 60:
        h.core.ask(typed(f"answer {k}"))
        h.core.pump()
        _settle(h, watch, idle_s=float(rng.uniform(1.0, 4.0)))
        k += 1
        _say(f"[{spec.name}] SARAi alone: {_heard_s(h) / 60:.1f} of {args.speech_min:g} min")
    alone_min = _heard_s(h) / 60
    alone_frames = len(canceller.frames)
    self_interruptions = len(watch.pauses) + len(watch.stops)
    false_turns = len(_voice_turns(h))
    alone = canceller.frames[:alone_frames], path.echo[:alone_frames]
    erle = _erle(*alone)
    erle_settled = _erle(*alone, skip_s=10.0)
    cpu = {state: round(100 * canceller.cpu[state] / canceller.audio_s[state], 2)
           if canceller.audio_s[state] else None for state in canceller.cpu}

    # 2. Barge-in.
    offset = int(np.argmax(np.abs(rirs.user))) / SAMPLE_RATE  # the direct sound's delay
    vad = webrtcvad.Vad(cfg.audio.vad.aggressiveness)
    results: dict[str, list[tuple[bool, float | None, float | None]]] = {"0": [], "-10": []}
    early_pauses = 0
    for t in range(2 * args.trials):
        rel = 0.0 if t % 2 == 0 else -10.0
        name, prompt = prompts[(t * 7 + args.seed) % len(prompts)]
        user = fftconvolve(prompt, rirs.user)[: len(prompt) + len(rirs.user) // 4]
        user = scaled_to(user, ECHO_DBFS + rel)
        h.core.ask(typed(f"answer {k}"))
        k += 1
        h.core.pump()
        pauses_before = len(watch.pauses)
        h.feed(_silence(float(rng.uniform(1.0, 4.0))), on_frame=watch)
        early_pauses += len(watch.pauses) - pauses_before
        stops_before = len(watch.stops)
        onset = h.now + offset
        words = np.clip(np.round(user), -32768, 32767).astype(np.int16)
        voiced = h.now + _first_voiced(vad, words)
        h.feed(words, on_frame=watch)
        h.feed(_silence(0.3), on_frame=watch)
        stop = next((s for s in watch.stops[stops_before:]
                     if onset <= s <= onset + len(prompt) / SAMPLE_RATE + 0.3), None)
        stopped_at = h.speaker.stopped_at
        ms = from_sound = None
        if stop is not None and stopped_at is not None:
            from_sound = round((stopped_at - onset) * 1000, 1)
            ms = max(0.0, round((stopped_at - voiced) * 1000, 1))
            if from_sound < 0:
                # Paused by its own echo just before the person spoke, and held by them: a
                # self-interruption, not a stop time.
                early_pauses += 1
                ms = from_sound = None
        results[f"{rel:g}"].append((stop is not None, ms, from_sound))
        _say(f"[{spec.name}] barge-in {t + 1}/{2 * args.trials} at {rel:+g} dB ({name}): "
             + (f"stopped {ms} ms after the first voiced frame, {from_sound} ms after the "
                "first sound" if stop is not None else "not interrupted"))
        _settle(h, watch, idle_s=2.0)

    stops = [ms for r in results.values() for hit, ms, _ in r if hit and ms is not None]
    from_sound = [ms for r in results.values() for hit, _, ms in r if hit and ms is not None]
    return {
        "name": spec.name,
        "rt60_s": rirs.rt60_s,
        "speech_min": round(alone_min, 2),
        "self_interruptions_per_min": round(self_interruptions / alone_min, 3),
        "false_turns": false_turns,
        "barge_in_recall_0db": _recall(results["0"]),
        "barge_in_recall_m10db": _recall(results["-10"]),
        "barge_in_stop_ms": percentiles(stops, 50, 90),
        "echo_reduction_db": erle,
        "barge_in_stop_from_first_sound_ms": percentiles(from_sound, 50, 90),
        "self_interruptions": self_interruptions,
        "echo_reduction_after_10s_db": erle_settled,
        "pauses_before_the_person_spoke": early_pauses,
        "trials_per_level": args.trials,
        "speaker_distance_m": round(spec.speaker_distance_m, 2),
        "user_distance_m": round(spec.user_distance_m, 2),
        "canceller_cpu_percent": cpu,
        "canceller_restarts": canceller.restarts,
        "frames_alone": alone_frames,
    }


def _heard_s(h: VoiceHarness) -> float:
    return sum(len(b) for _, b in h.speaker.heard) / h.speaker.rate


def _recall(trials: list[tuple[bool, float | None, float | None]]) -> float | None:
    return round(sum(hit for hit, _, _ in trials) / len(trials), 3) if trials else None


def _first_voiced(vad: webrtcvad.Vad, words: np.ndarray) -> float:
    """Where (s) the person's own speech has its first voiced 30 ms frame: the barge-in stop
    is timed from there, as `sarai bench voice` times it from the first voiced frame."""
    n = SAMPLE_RATE * 30 // 1000
    for i in range(0, len(words) - n + 1, n):
        if vad.is_speech(words[i : i + n].tobytes(), SAMPLE_RATE):
            return i / SAMPLE_RATE
    return 0.0


def _bench(args: argparse.Namespace, ctx: Context) -> int:
    if args.speech_min <= 0 or args.trials < 0:
        _say("sarai: error: --speech-min must be positive and --trials at least 0")
        return 2
    prompts = _prompts(args.prompts) if PROMPTS[args.prompts].is_dir() else []
    if not prompts:
        _say(f"sarai: error: no recorded prompts in {PROMPTS[args.prompts]} (install "
             f"{PROMPT_PACKAGES[args.prompts]}; `make setup` does)")
        return 1
    try:
        import pyroomacoustics  # noqa: F401
    except ImportError as exc:
        _say(f"sarai: error: the room simulation needs pyroomacoustics ({exc})")
        return 1
    _say("Loading Whisper and the voice…")
    assistant = _assistant(ctx)
    memory.settle()  # as `sarai run` does once it is listening
    rng = np.random.default_rng(args.seed)
    rooms = [ROOMS[name] for name in (args.room or sorted(ROOMS, reverse=True))]
    t0 = time.perf_counter()
    result = {
        "rooms": [_run_room(spec, ctx, assistant, args, prompts, rng) for spec in rooms],
        "prompts": args.prompts,
        "tuned_on": "en",
        "echo_dbfs": ECHO_DBFS,
        "speech": "fixed English texts spoken by the configured Piper voice",
        "listen": {k: v for k, v in ctx.config.listen.model_dump(mode="json").items()
                   if k.startswith(("barge_in", "echo"))},
        "goals": GOALS,
        "seconds": round(time.perf_counter() - t0, 1),
        "run": uuid.uuid4().hex[:8],
    }
    return report(ctx.paths.bench_dir, "room", result, args.json, _print)


def _print(r: dict, path: Path) -> None:
    print(f"Prompts: {r['prompts']} (thresholds tuned on {r['tuned_on']}); SARAi's voice at "
          f"{r['echo_dbfs']:g} dBFS at the microphone.")
    for room in r["rooms"]:
        stop = room["barge_in_stop_ms"]
        print(f"\n{room['name']} (RT60 {room['rt60_s']} s, speaker "
              f"{room['speaker_distance_m']} m, person {room['user_distance_m']} m)")
        print(f"  SARAi alone:           {room['speech_min']} min, "
              f"{room['self_interruptions']} self-interruptions, "
              f"{room['false_turns']} false turns  (goal 0 and 0)")
        print(f"  echo reduction:        {room['echo_reduction_db']} dB  (goal ≥ 25 dB; "
              f"{room['echo_reduction_after_10s_db']} dB after the first 10 s)")
        print(f"  barge-in recall:       {room['barge_in_recall_0db']} at 0 dB (goal ≥ 0.9), "
              f"{room['barge_in_recall_m10db']} at -10 dB (goal ≥ 0.7)")
        print(f"  stop:                  p50 {stop['p50']} ms, p90 {stop['p90']} ms  "
              f"(goal p50 ≤ 200 ms)")
        print(f"  canceller CPU:         {room['canceller_cpu_percent']} % of one core")
    print(f"\nsaved: {path}")
