"""A typed turn's language, from its words alone (py3langid, restricted to English and Spanish)."""

import pytest

from sarai.audio.text_language import TextLanguage


@pytest.fixture(scope="module")
def text_language():
    return TextLanguage()


@pytest.mark.parametrize(("text", "language"), [
    ("¿Qué hora es?", "es"),
    ("What time is it?", "en"),
    ("explica la fotosíntesis", "es"),
    ("Explain photosynthesis", "en"),
    ("piénsalo bien: ¿por qué el cielo es azul?", "es"),
    ("think it through: why is the sky blue?", "en"),
    ("describe esta imagen", "es"),
    ("Describe this picture", "en"),
    ("muchas gracias", "es"),
    ("thanks a lot", "en"),
    # Undecided: one word, or nothing to read; the turn keeps the configured language.
    ("Hola", None),
    ("Gracias", None),
    ("2 + 2", None),
    ("", None),
])
def test_the_words_say_the_language(text_language, text, language):
    assert text_language.guess(text) == language


def test_one_language_needs_no_guess():
    assert TextLanguage(["es"]).guess("What time is it?") == "es"


def test_typed_turns_and_transcripts_are_read_by_one_model(models_dir, tmp_path):
    """The daemon loads py3langid once (~0.7 s and ~80 MB while it is cut down), not once for
    transcripts and again for typed turns; without a transcriber it still reads typed turns."""
    from sarai.daemon.app import Context, build_assistant
    from sarai.daemon.config import load_config
    from sarai.daemon.paths import Paths

    cfg = tmp_path / "config.yaml"
    cfg.write_text("")
    ctx = Context(load_config(cfg), Paths.from_env())
    hearing = build_assistant(ctx, hear=True, speak=False)
    typing = build_assistant(ctx, hear=False, speak=False)
    try:
        assert hearing.text_language is hearing.transcriber.text_language
        assert typing.transcriber is None
        assert typing.text_language.guess("¿Qué hora es?") == "es"
    finally:
        hearing.registry.close()
        typing.registry.close()
