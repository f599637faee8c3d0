"""The token stream is cut into sentences as soon as each one is complete."""

from sarai.audio.sentences import SentenceSplitter, sentences


def test_sentence_is_emitted_when_the_next_one_starts():
    sp = SentenceSplitter()
    assert sp.feed("Hello there") == []
    assert sp.feed(". How") == ["Hello there."]
    assert sp.feed(" are you?") == []
    assert sp.flush() == ["How are you?"]


def test_numbers_and_abbreviation_dots_do_not_split():
    assert list(sentences(["Pi is 3.14 roughly", ". Done"])) == ["Pi is 3.14 roughly.", "Done"]


def test_spanish_and_newlines():
    got = list(sentences(["¡Hola! ¿Qué tal", " estás?\nBien"]))
    assert got == ["¡Hola!", "¿Qué tal estás?", "Bien"]


def test_long_clause_is_cut_at_a_comma():
    long = "This is a rather long opening clause that keeps going and going without end, "
    got = SentenceSplitter().feed(long + "and then some more")
    assert got and got[0].endswith(",")


def test_punctuation_only_is_not_spoken():
    assert list(sentences(["...", " ", "!!"])) == []


def test_first_clause_is_spoken_early_later_ones_wait_for_the_sentence():
    sp = SentenceSplitter()
    assert sp.feed("Well, that is a lovely question, and") == ["Well, that is a lovely question,"]
    assert sp.feed(" I think, honestly, it depends") == []
    assert sp.flush() == ["and I think, honestly, it depends"]


def test_a_short_first_clause_is_a_piece_of_its_own():
    sp = SentenceSplitter()
    assert sp.feed("I'm sorry, but as an AI, I") == ["I'm sorry,"]
    assert sp.feed(" cannot. It") == ["but as an AI, I cannot."]
    assert SentenceSplitter().feed("Well, that") == []  # one short word waits for more


def test_a_run_on_reply_without_punctuation_is_cut_between_words():
    """A small model can ramble for hundreds of characters without a comma; spoken at once,
    the voice would need hundreds of MB for it, and its first sound would wait for all of it."""
    run_on = " ".join(["de la mesa y la casa en el campo"] * 20)
    streamed = list(sentences(run_on[i:i + 7] for i in range(0, len(run_on), 7)))
    assert all(len(p) <= 120 for p in streamed) and len(streamed) == 6
    assert " ".join(streamed) == run_on  # every word, in order, none cut in two
    whole = list(sentences(["Hola. ", run_on, " Adiós."]))
    assert whole[0] == "Hola." and whole[-1].endswith("Adiós.")
    assert all(len(p) <= 120 for p in whole)
