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
    long = ("This is a rather long later clause that keeps going and going and going without "
            "any end in sight, ")
    got = SentenceSplitter().feed("Sure. " + long + "and then some more")
    assert got == ["Sure.", long.strip()]


def test_a_first_clause_that_runs_on_is_cut_before_a_phrase():
    """The first sound of an answer does not wait for a long first clause: it is cut
    between words, before a word that opens a phrase where there is one, as it streams in."""
    reply = ("You can set your speaking volume to the default level by going to your "
             "control panel and looking at the volume settings.")
    streamed = list(sentences(reply[i:i + 3] for i in range(0, len(reply), 3)))
    assert streamed == ["You can set your speaking volume",
                        "to the default level by going to your control panel and looking at "
                        "the volume settings."]
    # No phrase to cut before: the last whole word within the limit.
    sp = SentenceSplitter()
    assert sp.feed("Photosynthesis converts sunlight water carbon dioxide") == \
        ["Photosynthesis converts sunlight water"]
    # Spanish too, and a clause that ends soon enough is not cut at all.
    assert SentenceSplitter().feed("Para dejar un mensaje por favor entre un número de buzón") \
        == ["Para dejar un mensaje"]
    assert SentenceSplitter().feed("I'm sorry for the misunderstanding, but as") == \
        ["I'm sorry for the misunderstanding,"]
    # Half a word is never cut: it waits for the space after it.
    assert SentenceSplitter().feed("Thermodynamicsisafieldofphysicsaboutheat") == []


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
    assert all(len(p) <= 120 for p in streamed) and len(streamed) == 7
    assert len(streamed[0]) <= 40  # the first piece is cut short, so it is heard sooner
    assert " ".join(streamed) == run_on  # every word, in order, none cut in two
    whole = list(sentences(["Hola. ", run_on, " Adiós."]))
    assert whole[0] == "Hola." and whole[-1].endswith("Adiós.")
    assert all(len(p) <= 120 for p in whole)
