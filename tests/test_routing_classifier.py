"""The empathy/complexity classifier and the labelled data set it is trained on."""

from __future__ import annotations

import numpy as np
import pytest

from sarai.models.settings import Tier
from sarai.routing import classifier, dataset
from sarai.routing.classifier import TextScorer, load_or_train
from sarai.routing.dataset import Split
from sarai.routing.errors import DatasetError


@pytest.fixture(scope="module")
def rows():
    return {s: dataset.load(s) for s in Split}


def test_training_and_evaluation_sets_are_separate_and_bilingual(rows):
    train = {r.text.lower() for r in rows[Split.TRAIN]}
    evaluation = {r.text.lower() for r in rows[Split.EVAL]}
    assert not train & evaluation
    for split in Split:
        langs = {r.lang for r in rows[split]}
        tiers = {r.tier for r in rows[split]}
        assert langs == {"en", "es"} and tiers == {Tier.OMNI_FAST, Tier.OMNI_QUALITY}
    backgrounds = {(r.lang, r.background) for r in rows[Split.EVAL] if r.background}
    assert backgrounds == {("en", "music"), ("en", "noise"), ("es", "music"), ("es", "noise")}


@pytest.mark.parametrize(("obj", "message"), [
    ([1, 2], "must be a JSON object"),
    ({"text": "hi", "lang": "en", "tier": "omni_fast", "empathy": 1}, "missing field 'complex'"),
    ({"text": "hi", "lang": "fr", "tier": "omni_fast", "empathy": 1, "complex": 0}, "lang must"),
    ({"text": "hi", "lang": "en", "tier": "huge", "empathy": 1, "complex": 0}, "huge"),
    ({"text": " ", "lang": "en", "tier": "tiny", "empathy": 1, "complex": 0}, "non-empty"),
    ({"text": "hi", "lang": "en", "tier": "tiny", "empathy": 3, "complex": 0}, "0 or 1"),
    ({"text": "hi", "lang": "en", "tier": "tiny", "empathy": 0, "complex": 0,
      "background": "jazz"}, "background must"),
])
def test_a_malformed_row_is_reported_with_its_place(obj, message):
    with pytest.raises(DatasetError, match=message) as err:
        dataset._row(obj, "routing/data/train.jsonl:7")
    assert str(err.value).startswith("routing/data/train.jsonl:7: ")


@pytest.fixture(scope="module")
def scorer() -> TextScorer:
    return load_or_train()


@pytest.mark.parametrize(("text", "empathetic", "complex_"), [
    ("I'm so sad, my cat died this morning.", True, False),
    ("Hoy me siento fatal, nadie me entiende.", True, False),
    ("Write a function that sorts a list of dates and explain its complexity.", False, True),
    ("Explícame cómo funciona la fotosíntesis paso a paso.", False, True),
    ("Set a timer for twenty minutes.", False, False),
    ("Pon una alarma a las ocho.", False, False),
])
def test_scores_separate_feelings_from_hard_questions(scorer, text, empathetic, complex_):
    s = scorer.score(text)
    assert (s.empathy >= 0.5) is empathetic, s
    assert (s.complexity >= 0.5) is complex_, s


# Everyday requests and their translations, none of them in the training set: Spanish is full
# of small words ("para", "hay", "dos") that the hard questions it was trained on also use.
_EVERYDAY = [
    ("Dame dos ideas para cenar.", "Give me two ideas for dinner."),
    ("Pon una alarma para las siete.", "Set an alarm for seven."),
    ("¿Hay leche en la nevera?", "Is there milk in the fridge?"),
    ("Recuérdame comprar pan para mañana.", "Remind me to buy bread for tomorrow."),
    ("Pon música para relajarme.", "Play some music to relax."),
    ("¿Tienes un minuto para mí?", "Do you have a minute for me?"),
    ("¿Cuánto falta para el viernes?", "How long until Friday?"),
    ("¿Hay algo para comer?", "Is there anything to eat?"),
    ("Necesito un nombre para mi gato.", "I need a name for my cat."),
    ("Busca una canción para bailar.", "Find a song to dance to."),
    ("Pon un temporizador de dos minutos.", "Set a two minute timer."),
    ("¿Hay reuniones hoy en mi agenda?", "Are there meetings in my calendar today?"),
]


def test_an_everyday_request_is_as_simple_in_spanish_as_in_english(scorer, rows):
    """Sent to the quality tier (a 7B model loaded on demand) only for what it asks, not for
    the language it is asked in."""
    train = {r.text for r in rows[Split.TRAIN]}
    assert not train & {t for pair in _EVERYDAY for t in pair}
    es = [scorer.score(s).complexity for s, _ in _EVERYDAY]
    en = [scorer.score(e).complexity for _, e in _EVERYDAY]
    assert sum(c >= 0.5 for c in es) <= 1 and sum(c >= 0.5 for c in en) <= 1, (es, en)


def test_evidence_quotes_meaningful_words(scorer):
    s = scorer.score("Please explain why volcanoes erupt, step by step.")
    assert s.evidence["complexity"]
    assert all(w not in {"the", "a", "to", "why do"} for w in s.evidence["complexity"])
    assert set(" ".join(s.evidence["complexity"]).split()) & {"explain", "step", "why", "by"}


def test_text_with_no_known_words_gets_the_prior(scorer):
    s = scorer.score("zzzq xxyv")
    assert 0.0 < s.empathy < 1.0 and 0.0 < s.complexity < 1.0
    assert s.evidence == {"empathy": (), "complexity": ()}


def test_scores_agree_with_labels_on_held_out_rows(rows):
    """Trained on the training split, judged on the evaluation split it never saw."""
    s = TextScorer.train(rows[Split.TRAIN])
    held = [r for r in rows[Split.EVAL] if r.rule is None and r.background is None]
    acc = np.mean([(s.score(r.text).complexity >= 0.5) == bool(r.complex) for r in held])
    assert acc >= 0.85


def test_saved_model_scores_exactly_like_the_trained_one(scorer, tmp_path):
    path = tmp_path / "m.npz"
    scorer.save(path)
    again = TextScorer.load(path)
    assert again.fingerprint == scorer.fingerprint
    assert again.vocabulary_size == scorer.vocabulary_size
    for text in ("hola, ¿qué tal?", "Explain entropy.", "I miss you"):
        assert again.score(text) == scorer.score(text)


def test_disk_cache_is_written_reused_and_survives_corruption(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(classifier, "_memo", {})
    first = load_or_train(tmp_path)
    (cached,) = tmp_path.glob("router-scorer-*.npz")
    assert first.fingerprint[:16] in cached.name

    monkeypatch.setattr(classifier, "_memo", {})
    trained: list[int] = []
    real_train = TextScorer.train.__func__

    def counting_train(cls, *a, **kw):
        trained.append(1)
        return real_train(cls, *a, **kw)

    monkeypatch.setattr(TextScorer, "train", classmethod(counting_train))
    again = load_or_train(tmp_path)
    assert trained == [] and again.score("hi") == first.score("hi")  # from the disk cache

    monkeypatch.setattr(classifier, "_memo", {})
    cached.write_bytes(b"not a model")
    fixed = load_or_train(tmp_path)
    assert trained == [1] and fixed.score("hi") == first.score("hi")
    assert "ignoring unreadable routing model cache" in caplog.text


def test_cache_is_keyed_by_the_training_data(monkeypatch):
    fp = classifier.training_fingerprint()
    monkeypatch.setattr(classifier, "RECIPE", classifier.RECIPE + "-changed")
    assert classifier.training_fingerprint() != fp
