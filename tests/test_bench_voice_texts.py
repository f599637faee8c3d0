"""`sarai bench voice --input-dir` with a texts.tsv: word recall and figures per language."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from recordings import PROMPTS

from sarai.audio.speech_corpus import asterisk_texts, word_recall
from sarai.daemon.cli.bench_voice import read_texts
from sarai.daemon.cli.plot import COLORS


def test_texts_tsv_is_read_and_a_bad_line_is_named(tmp_path):
    (tmp_path / "texts.tsv").write_text("a\ten\tHello there.\n\nb.wav\tes\t¿Qué tal?\n")
    said = read_texts(tmp_path)
    assert said["a"].language == "en" and said["a"].text == "Hello there."
    assert said["b"].language == "es" and said["b"].text == "¿Qué tal?"
    (tmp_path / "texts.tsv").write_text("a\ten\tHello.\nb es ¿Qué tal?\n")
    with pytest.raises(ValueError, match=r"texts.tsv:2: expected 3 tab-separated fields"):
        read_texts(tmp_path)


def test_word_recall_counts_the_words_said_that_were_heard_in_order():
    assert word_recall("Press 1 now, please.", "press one now please", "en") == (4, 4)
    assert word_recall("Marque el número uno.", "Marque el numero 1", "es") == (4, 4)
    assert word_recall("a b c d", "a c x d", "en") == (3, 4)
    assert word_recall("hello there", "", "en") == (0, 2)


def test_bench_voice_reports_recall_and_first_audio_per_language(sarai, tmp_path, pulse):  # noqa: ARG001
    """Two recorded prompts, one per language, through the real voice loop."""
    folder = tmp_path / "rec"
    folder.mkdir()
    lines = []
    for lang, name in (("en", "vm-instructions"), ("es", "vm-instructions")):
        shutil.copy(PROMPTS[lang] / f"{name}.wav", folder / f"{lang}-{name}.wav")
        lines.append(f"{lang}-{name}\t{lang}\t{asterisk_texts(lang)[name]}")
    (folder / "texts.tsv").write_text("\n".join(lines) + "\n")
    plot = tmp_path / "stages.png"
    r = sarai("bench", "voice", "--json", "--input-dir", str(folder), "--barge-in-trials", "0",
              "--idle-s", "1", "--plot", str(plot), timeout=900)
    assert r.code == 0, r.err
    out = json.loads(r.out)
    assert set(out["first_answer_audio_ms"]) == {"p50", "p90"}
    assert set(out["languages"]) == {"en", "es"}
    for lang in ("en", "es"):
        v = out["languages"][lang]
        turn = next(t for t in out["turns"] if t["said_language"] == lang)
        assert turn["language"] == lang and turn["said"] and turn["transcript"], turn
        assert v["turns"] == 1 and v["language_right"] == 1.0, v
        assert v["word_recall"] == turn["word_recall"] >= 0.5, (v, turn)
        # The starter models answer some questions with nothing to say; an answered turn's
        # first audio is its language's figure.
        heard = turn["first_answer_audio_ms"]
        assert v["heard"] == (heard is not None), (v, turn)
        assert v["first_answer_audio_ms"]["p50"] == heard, (v, turn)
    assert sum(v["heard"] for v in out["languages"].values()) >= 1
    # The waterfall: one row per turn, each with its speech recognition bar (the legend's
    # patch of that colour is much lower than a row's bar).
    img = np.asarray(Image.open(plot).convert("RGB")).astype(int)
    blue = np.array([int(COLORS["asr"][i:i + 2], 16) for i in (1, 3, 5)])
    rows = (np.abs(img - blue).max(axis=2) <= 40).sum(axis=1) >= 10
    edges = np.flatnonzero(np.diff(np.concatenate([[0], rows.astype(int), [0]])))
    heights = edges[1::2] - edges[::2]
    assert np.count_nonzero(heights >= 20) == len(out["turns"]) == 2, heights


def test_a_plot_that_cannot_be_written_is_refused_before_any_work(sarai, tmp_path):
    for cmd in (("bench", "voice"), ("history",)):
        r = sarai(*cmd, "--plot", str(tmp_path / "stages.txt"))
        assert r.code == 1, (cmd, r.err)
        assert r.err.strip() == (f"sarai: error: {tmp_path / 'stages.txt'}: a plot is written as"
                                 " .png, .svg, .pdf (by the file's suffix)"), r.err
