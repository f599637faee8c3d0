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
