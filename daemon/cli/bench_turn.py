"""`sarai bench turn`: when does a turn end? Ways of deciding it, on recorded human speech.

Each recording is played, 30 ms frame by 30 ms frame over a quiet room's noise, into SARAi's
own VAD segmenter. At every pause of `listen.speculate_pause_ms` — where the voice loop starts
answering speculatively — the utterance so far is transcribed with the configured Whisper
setup (is it a finished sentence? see sarai.daemon.conversation.endpoint) and heard by the
end-of-turn model (Smart Turn v3.2), each timed. Then each way of deciding is applied to every
pause:

- silence only: the turn ends after `audio.vad.end_silence_ms` of silence;
- words: after `listen.complete_silence_ms` if the transcript reads as finished, else the full
  silence;
- sound: the same, if Smart Turn gives at least `listen.turn_model_threshold`;
- words and sound: only if both say so;
- words and sound, then its answer (what SARAi does; with --with-compute): the same, but not
  before the answer has its first sound: the real assistant answers what Whisper heard there
  (model and voice, as configured), timed from the pause to its first piece of audio.

An early end can come no sooner than its verdict: the pause plus the time Whisper (and Smart
Turn, which runs beside it) took here — and never later than the full silence, which ends
the turn anyway. A pause inside a turn that lasts as long as a way's end is a premature cut;
at the true end, the delay is measured from the end of the last word (where the recording's
level falls away) to the moment the turn ends. Waiting for the answer delays the end, not
the answer: in either case it is heard when its first sound is ready.

Material (sarai.audio.speech_corpus): Asterisk's prompts read by Allison in English (`en`) and
Spanish (`es`), as recorded (pauses of 0.26–0.48 s between sentences) and with pauses of
0.30–0.65 s inserted (`en+pauses`, `es+pauses`): one at a sentence boundary where the prompt
has one, one in the middle of a sentence (a hesitation); the same prompts read by another
speaker in Colombian Spanish (`es-co`); five LibriVox clips (`librivox`); and 21 s of
spontaneous meeting speech (`chan3`, one recording: its cuts are counted, not per 100).
"""

from __future__ import annotations

import argparse
import random
import re
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field

import numpy as np

from sarai.audio.asr import Transcript
from sarai.audio.errors import AudioError
from sarai.audio.pcm import SAMPLE_RATE
from sarai.audio.settings import VadSettings
from sarai.audio.smart_turn import SmartTurn
from sarai.audio.speech_corpus import Recording
from sarai.audio.vad import SegmentKind, Utterance, UtteranceSegmenter
from sarai.daemon.app import Context, end_of_turn_model
from sarai.daemon.cli.bench_cmd import percentiles, report
from sarai.daemon.config import Config
from sarai.daemon.conversation.endpoint import looks_complete
from sarai.daemon.conversation.record import TurnRecord
from sarai.daemon.conversation.turn import Assistant
from sarai.models.backend import CancelToken

SETS = ("en", "es", "es-co", "librivox", "chan3", "en+pauses", "es+pauses")
NOISE_DBFS = -45.0
LEAD_S, TAIL_S = 1.0, 2.5
INSERTED_S = (0.30, 0.65)  # total silence of an inserted pause: shorter than the full silence
BOTH = "words and sound"
SHIPPED = "words and sound, then its answer"


def register(bsub: argparse._SubParsersAction) -> None:
    p = bsub.add_parser(
        "turn",
        help="end of turn: silence, words, Smart Turn, both — delay and premature cuts on"
             " recorded speech",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--sets", default=",".join(SETS), metavar="LIST",
                   help=f"comma-separated, from: {', '.join(SETS)} (default: all)")
    p.add_argument("--limit", type=int, default=40, metavar="N",
                   help="at most N turns per set, chosen at random with --seed (0: all)")
    p.add_argument("--min-words", type=int, default=3, metavar="N",
                   help="prompts of at least N words (default 3)")
    p.add_argument("--max-words", type=int, default=0, metavar="N",
                   help="…and at most N (0: no limit)")
    p.add_argument("--seed", type=int, default=1, help="which prompts, and where pauses go")
    p.add_argument("--with-compute", action="store_true",
                   help="an early end also waits for Whisper and Smart Turn as timed in this"
                        " run, and the shipped way for the real answer's first sound (loads"
                        " the models; default: the silences alone, the same on any machine)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=_bench)


# --- turns ----------------------------------------------------------------------------------

@dataclass
class Turn:
    name: str
    set: str
    language: str
    audio: np.ndarray  # int16, 16 kHz, as the speaker said it (no room noise)
    last_word_s: float  # where its last word ends
    inserted: list[tuple[float, float, str]] = field(default_factory=list)  # start, end, kind


def _frame_db(samples: np.ndarray, hop: int = 160) -> np.ndarray:
    frames = samples[: len(samples) // hop * hop].astype(np.float64).reshape(-1, hop)
    return 20 * np.log10(np.sqrt((frames**2).mean(axis=1)) / 32768 + 1e-9)


def speech_span(samples: np.ndarray, floor_db: float = -40.0) -> tuple[int, int]:
    """First and last sample of the 10 ms frames louder than `floor_db` dBFS."""
    loud = np.flatnonzero(_frame_db(samples) > floor_db)
    if not len(loud):
        return 0, 0
    return int(loud[0]) * 160, (int(loud[-1]) + 1) * 160


def _gaps(samples: np.ndarray, on: int, off: int) -> list[tuple[int, int]]:
    """Quiet stretches (≥ 30 ms, 30 dB under the loudest frame) between words."""
    db = _frame_db(samples)
    quiet = db < db.max() - 30
    out, start = [], None
    for i in range(on // 160 + 1, off // 160 - 1):
        if quiet[i] and start is None:
            start = i
        elif not quiet[i] and start is not None:
            if i - start >= 3:
                out.append((start * 160, i * 160))
            start = None
    return out


def _sentence_ends_inside(text: str) -> int:
    return len(re.findall(r"[^.][.?!]\s+\S", text.strip()))


def natural(rec: Recording, set_name: str) -> Turn | None:
    audio = rec.samples()
    on, off = speech_span(audio)
    if off <= on:
        return None
    return Turn(rec.name, set_name, rec.language, audio, off / SAMPLE_RATE)


def with_pauses(rec: Recording, set_name: str, rng: random.Random) -> Turn | None:
    """The recording with two pauses made longer: at a sentence boundary (the prompt's
    longest gaps, as many as it has sentence ends inside) and in the middle of a sentence."""
    audio = rec.samples()
    on, off = speech_span(audio)
    gaps = _gaps(audio, on, off)
    if off <= on or not gaps:
        return None
    k = min(_sentence_ends_inside(rec.text or ""), len(gaps))
    by_length = sorted(gaps, key=lambda g: g[1] - g[0], reverse=True)
    sentence, rest = by_length[:k], by_length[k:]
    chosen = ([(rng.choice(sentence), "sentence")] if sentence else []) + \
             ([(rng.choice(rest), "mid-sentence")] if rest else [])
    if not chosen:
        return None
    pieces, at, inserted, shift = [], 0, [], 0
    for (g0, g1), kind in sorted(chosen):
        total = rng.uniform(*INSERTED_S)
        extra = max(0, int(total * SAMPLE_RATE) - (g1 - g0))
        mid = (g0 + g1) // 2
        pieces += [audio[at:mid], np.zeros(extra, np.int16)]
        inserted.append(((g0 + shift) / SAMPLE_RATE, (g1 + shift + extra) / SAMPLE_RATE, kind))
        shift += extra
        at = mid
    pieces.append(audio[at:])
    return Turn(rec.name, set_name, rec.language, np.concatenate(pieces),
                (off + shift) / SAMPLE_RATE, inserted)


def build_turns(set_name: str, *, limit: int, seed: int, min_words: int = 3,
                max_words: int = 0) -> list[Turn]:
    """The turns of one set (see the module comment)."""
    from sarai.audio import speech_corpus as corpus

    rng = random.Random(f"{seed}:{set_name}")
    lang = set_name.split("+")[0]

    def wanted(text: str | None) -> bool:
        if not text:
            return False
        n = len(text.split())
        closed = bool(re.search(r"[^.][.?!]$", text)) and not text.endswith("...")
        return closed and n >= min_words and (not max_words or n <= max_words)

    if set_name in ("en", "es", "en+pauses", "es+pauses"):
        recs = [r for r in corpus.asterisk(lang) if wanted(r.text)]
    elif set_name == "es-co":
        # No texts of its own: the prompts whose Mexican reading is a finished sentence.
        texts = corpus.asterisk_texts("es")
        recs = [Recording(r.name, r.language, r.path, texts[r.name], r.speaker)
                for r in corpus.colombian() if wanted(texts.get(r.name))]
    elif set_name == "librivox":
        recs = corpus.librivox()
    elif set_name == "chan3":
        recs = [corpus.chan3()]
    else:
        raise ValueError(f"unknown set {set_name!r}; known: {', '.join(SETS)}")
    rng.shuffle(recs)
    turns: list[Turn] = []
    for rec in recs:
        if limit and len(turns) >= limit:
            break
        try:
            turn = with_pauses(rec, set_name, rng) if "+pauses" in set_name \
                else natural(rec, set_name)
        except AudioError as exc:  # one damaged file in a package
            print(f"  {rec.name}: skipped ({exc})", file=sys.stderr)
            continue
        if turn is not None and len(turn.audio) / SAMPLE_RATE <= 25:
            turns.append(turn)
    return turns


# --- what each check says at each pause -----------------------------------------------------

@dataclass
class Pause:
    turn: str
    set: str
    kind: str  # final (the true end), natural, sentence, mid-sentence
    silence_ms: float  # how long it lasted (inf at the end)
    words: bool  # the transcript so far reads as a finished sentence
    p: float | None  # Smart Turn's probability that the turn is over
    asr_ms: float
    st_ms: float
    delay_base_ms: float  # final: from the end of the last word to the VAD's end of speech
    text: str
    answer_ms: float | None = None  # from the pause to the first sound of its answer (timed)


class Checks:
    """The configured recogniser and end-of-turn model, as the voice loop uses them; with
    `answer`, what times the answer to a pause that may end the turn."""

    def __init__(self, transcribe: Callable[[np.ndarray], Transcript],
                 smart_turn: SmartTurn | None, vad: VadSettings, pause_ms: int,
                 threshold: float, answer: AnswerClock | None = None) -> None:
        self.transcribe = transcribe
        self.smart_turn = smart_turn
        self.vad = vad
        self.pause_ms = pause_ms
        self.threshold = threshold
        self.answer = answer


class _FirstSound:
    """A sink that notes when the first piece of audio comes, and stops the answer there."""

    def __init__(self, cancel: CancelToken) -> None:
        self.at: float | None = None
        self._cancel = cancel

    def play(self, samples: np.ndarray, sample_rate: int, on_heard=None) -> None:  # noqa: ARG002
        if self.at is None:
            self.at = time.perf_counter()
            self._cancel.cancel()

    def finish(self) -> None:
        pass


class AnswerClock:
    """The real assistant (models and voice as configured), timing how long the answer to
    a transcript takes to have its first sound — as the held answer of a speculative start."""

    def __init__(self, assistant: Assistant) -> None:
        self.assistant = assistant

    def first_sound_ms(self, utt: Utterance, tr: Transcript) -> float | None:
        cancel = CancelToken()
        sink = _FirstSound(cancel)
        rec = TurnRecord(transcript=tr.text, language=tr.language,
                         audio_s=round(utt.duration_s, 2))
        t0 = time.perf_counter()
        self.assistant.voice_turn(utt, sink, cancel, rec=rec, remember=False)
        return None if sink.at is None else round((sink.at - t0) * 1000, 1)


def hears_end(p: float | None, threshold: float) -> bool:
    """Smart Turn takes the pause for the end of the turn."""
    return p is not None and p >= threshold


def listen(turn: Turn, checks: Checks, rng: np.random.Generator) -> list[Pause]:
    """Play one turn into the segmenter; every pause with what each check said."""
    fl = SAMPLE_RATE * checks.vad.frame_ms // 1000
    lead, tail = int(LEAD_S * SAMPLE_RATE), int(TAIL_S * SAMPLE_RATE)
    audio = turn.audio.astype(np.float64)
    noise = rng.standard_normal(lead + len(audio) + tail) * 32768 * 10 ** (NOISE_DBFS / 20)
    stream = noise
    stream[lead : lead + len(audio)] += audio
    stream = np.clip(stream, -32768, 32767).astype(np.int16)
    seg = UtteranceSegmenter(
        checks.vad.model_copy(update={"end_silence_ms": 600_000, "second_opinion": "none",
                                      "max_utterance_s": 600.0}),
        pause_ms=checks.pause_ms)
    pauses: list[Pause] = []
    cur: Pause | None = None
    silence = 0.0
    for i in range(0, len(stream) - fl + 1, fl):
        now = (i + fl) / SAMPLE_RATE
        for ev in seg.push_events(stream[i : i + fl]):
            if ev.kind is SegmentKind.PAUSE and ev.utterance is not None:
                samples = ev.utterance.samples
                t0 = time.perf_counter()
                tr = checks.transcribe(samples)
                asr_ms = (time.perf_counter() - t0) * 1000
                p, st_ms = None, 0.0
                if checks.smart_turn is not None:
                    t0 = time.perf_counter()
                    p = checks.smart_turn.probability(samples)
                    st_ms = (time.perf_counter() - t0) * 1000
                speech_end = now - checks.pause_ms / 1000 - LEAD_S
                words = looks_complete(tr.text)
                cur = Pause(turn.name, turn.set, _kind(turn, speech_end), 0.0,
                            words, p, round(asr_ms, 1), round(st_ms, 1),
                            round((speech_end - turn.last_word_s) * 1000, 1), tr.text)
                if checks.answer is not None and words and hears_end(p, checks.threshold):
                    # A pause that may end the turn: when would its answer have a sound?
                    # (Whisper's time, then the answer's; Smart Turn runs beside them.)
                    first = checks.answer.first_sound_ms(ev.utterance, tr)
                    if first is not None:
                        cur.answer_ms = round(asr_ms + first, 1)
                pauses.append(cur)
            elif ev.kind is SegmentKind.RESUME and cur is not None:
                cur.silence_ms = silence
                cur = None
        if cur is not None:
            silence = seg.silence_ms
    if cur is not None:
        cur.silence_ms = float("inf")
        cur.kind = "final"
    return pauses


def _kind(turn: Turn, speech_end_s: float) -> str:
    for start, end, kind in turn.inserted:
        if start - 0.3 <= speech_end_s <= end:
            return kind
    return "natural"


# --- ways of deciding -----------------------------------------------------------------------

Policy = Callable[[Pause], float]


def policies(cfg: Config, *, compute: bool = False) -> dict[str, Policy]:
    """Each way of deciding: the silence (ms) after which it ends the turn at a pause.
    With `compute`, an early end also waits for its verdict: the pause, then the time the
    checks took in this run (which depends on how busy the machine was)."""
    full = float(cfg.audio.vad.end_silence_ms)
    early = float(cfg.listen.complete_silence_ms)
    pause = float(cfg.listen.speculate_pause_ms)
    threshold = cfg.listen.turn_model_threshold

    def sound(e: Pause) -> bool:
        return hears_end(e.p, threshold)

    def ends(says: Callable[[Pause], bool], ready: Callable[[Pause], float]) -> Policy:
        if not compute:
            return lambda e: early if early and says(e) else full
        return lambda e: min(full, max(early, pause + ready(e))) if early and says(e) else full

    def answered(e: Pause) -> float:
        # No sound at all (an empty answer): the turn ends when the answer is written, which
        # is not timed here; the full silence is the honest bound.
        return max(e.asr_ms, e.st_ms, e.answer_ms if e.answer_ms is not None else full)

    ways = {
        "silence only": lambda e: full,
        "words": ends(lambda e: e.words, lambda e: e.asr_ms),
        "sound": ends(sound, lambda e: e.st_ms),
        BOTH: ends(lambda e: e.words and sound(e), lambda e: max(e.asr_ms, e.st_ms)),
    }
    if compute:
        ways[SHIPPED] = ends(lambda e: e.words and sound(e), answered)
    return ways


def evaluate(pauses: Iterable[Pause], policy: Policy) -> dict:
    """Premature cuts (per 100 turns, by kind of pause) and delays of one way of deciding."""
    by_turn: dict[str, list[Pause]] = {}
    for e in pauses:
        by_turn.setdefault(e.turn, []).append(e)
    turns = [es for es in by_turn.values() if any(e.kind == "final" for e in es)]
    cuts = {"natural": 0, "sentence": 0, "mid-sentence": 0}
    delays = []
    for es in turns:
        for e in es:
            end = policy(e)
            if e.kind == "final":
                delays.append(e.delay_base_ms + end)
            elif e.silence_ms >= end:
                cuts[e.kind] += 1
    n = len(turns)
    return {"turns": n, "cuts": sum(cuts.values()), "cuts_by_kind": cuts,
            "cuts_per_100": round(100 * sum(cuts.values()) / n, 1) if n else None,
            "delay_ms": percentiles(delays, 50, 90)}


# --- the command ----------------------------------------------------------------------------

def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _bench(args: argparse.Namespace, ctx: Context) -> int:
    cfg = ctx.config
    sets = [s.strip() for s in args.sets.split(",") if s.strip()]
    unknown = [s for s in sets if s not in SETS]
    if unknown:
        _say(f"sarai: error: unknown set(s) {', '.join(unknown)}; known: {', '.join(SETS)}")
        return 2
    from sarai.audio.asr import Transcriber
    from sarai.daemon.app import asr_model_dirs, build_assistant
    from sarai.models.registry import ModelRegistry

    answer: AnswerClock | None = None
    if args.with_compute:
        _say("loading the models, to time each answer…")
        assistant = build_assistant(ctx, hear=True, speak=True)
        answer = AnswerClock(assistant)
        smart_turn, asr = assistant.end_of_turn, assistant.transcriber
        assert asr is not None
    else:
        registry = ModelRegistry(cfg.models, ctx.models_dir, residency=cfg.residency)
        smart_turn = end_of_turn_model(ctx, registry)
        asr = Transcriber(cfg.audio.asr, asr_model_dirs(ctx))
        asr.preload()
    if smart_turn is None:
        _say("sarai: the end-of-turn model is not available (listen.turn_model, "
             "'sarai setup'); only the silence and the words are compared")
    checks = Checks(asr.transcribe, smart_turn, cfg.audio.vad, cfg.listen.speculate_pause_ms,
                    cfg.listen.turn_model_threshold, answer)
    ways = policies(cfg, compute=args.with_compute)
    rng = np.random.default_rng(args.seed)
    all_pauses: list[Pause] = []
    missing: dict[str, str] = {}
    for set_name in sets:
        try:
            turns = build_turns(set_name, limit=args.limit, seed=args.seed,
                                min_words=args.min_words, max_words=args.max_words)
        except AudioError as exc:
            missing[set_name] = str(exc)
            _say(f"  {set_name}: skipped — {exc}")
            continue
        _say(f"{set_name}: {len(turns)} turns…")
        for j, turn in enumerate(turns, 1):
            all_pauses += listen(turn, checks, rng)
            if j % 10 == 0:
                _say(f"  {j}/{len(turns)}")
    table = {s: {name: evaluate([e for e in all_pauses if e.set == s], pol)
                 for name, pol in ways.items()} for s in sets if s not in missing}
    # Verdicts later than complete_silence_ms delay an early end (see --with-compute).
    budget = cfg.listen.complete_silence_ms - cfg.listen.speculate_pause_ms
    both = [max(e.asr_ms, e.st_ms) for e in all_pauses]
    timing = {
        "asr_ms": percentiles([e.asr_ms for e in all_pauses], 50, 90),
        "smart_turn_ms": percentiles([e.st_ms for e in all_pauses if e.p is not None], 50, 90),
        "answer_ms": percentiles([e.answer_ms for e in all_pauses if e.answer_ms is not None],
                                 50, 90),
        "verdicts_late_percent": round(100 * sum(t > budget for t in both) / len(both), 1)
        if both else None,
    }
    result = {
        "table": table,
        "timing": timing,
        "settings": {"end_silence_ms": cfg.audio.vad.end_silence_ms,
                     "complete_silence_ms": cfg.listen.complete_silence_ms,
                     "speculate_pause_ms": cfg.listen.speculate_pause_ms,
                     "turn_model": cfg.listen.turn_model if smart_turn else "none",
                     "turn_model_threshold": cfg.listen.turn_model_threshold,
                     "asr_language": cfg.audio.asr.language},
        "args": {"sets": sets, "limit": args.limit, "seed": args.seed,
                 "min_words": args.min_words, "max_words": args.max_words,
                 "with_compute": args.with_compute},
        "skipped": missing,
        "pauses": [asdict(e) | {"silence_ms": None if e.silence_ms == float("inf")
                                else e.silence_ms} for e in all_pauses],
    }
    return report(ctx.paths.bench_dir, "turn", result, args.json, _print)


def _print(r: dict, path) -> None:
    print(f"{'set':10s} {'way of deciding':32s} {'turns':>5s} {'delay p50':>9s} {'p90':>6s} "
          f"{'cuts/100':>8s}  cuts at pauses: natural / sentence / mid-sentence")
    for s, rows in r["table"].items():
        for name, v in rows.items():
            per100 = "—" if v["cuts_per_100"] is None else f"{v['cuts_per_100']:.1f}"
            if s == "chan3":
                per100 = f"{v['cuts']} cuts"
            k = v["cuts_by_kind"]
            d = v["delay_ms"]
            print(f"{s:10s} {name:32s} {v['turns']:5d} {_ms(d['p50']):>9s} {_ms(d['p90']):>6s} "
                  f"{per100:>8s}  {k['natural']} / {k['sentence']} / {k['mid-sentence']}")
    t = r["timing"]
    print(f"delay: from the end of the last word to the end of the turn"
          f"{' (with this run’s compute)' if r['args']['with_compute'] else ''}; cuts: pauses"
          " inside a turn taken for its end")
    print(f"Whisper at a pause: p50 {t['asr_ms']['p50']} ms, p90 {t['asr_ms']['p90']} ms; "
          f"Smart Turn: p50 {t['smart_turn_ms']['p50']} ms, p90 {t['smart_turn_ms']['p90']} ms"
          f" (run one after the other; verdicts later than the early end: "
          f"{t['verdicts_late_percent']} %)")
    if t["answer_ms"]["p50"] is not None:
        print(f"first sound of the answer after the pause: p50 {t['answer_ms']['p50']} ms, "
              f"p90 {t['answer_ms']['p90']} ms")
    print(f"saved: {path}")


def _ms(v: float | None) -> str:
    return "—" if v is None else f"{v:.0f}"
