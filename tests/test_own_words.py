"""The last check against SARAi hearing itself: is a transcript its own last words?"""

from sarai.daemon.conversation.own_words import said_again

ANSWER = "The sea is deep and blue, and the sky above it is wide. Good night."


def test_its_last_words_are_recognised_with_an_asr_slip_or_two():
    assert said_again("Good night.", ANSWER)
    assert said_again("the sky above it is wide", ANSWER)
    assert said_again("sky above it was wide good night", ANSWER)  # one word heard wrong


def test_what_the_user_says_is_not_taken_for_its_words():
    assert not said_again("What time is it?", ANSWER)
    assert not said_again("Good morning.", ANSWER)
    assert not said_again("Tell me more about the sea and the sky.", ANSWER)
    # one word is too little to tell: "yes" or "no" after a question is the user's answer
    assert not said_again("blue", ANSWER)
    assert not said_again("Good night.", "")


def test_only_the_end_of_a_long_answer_counts():
    long = "The sea is deep. " + "Waves roll in and out all day long. " * 6 + "Sleep well."
    assert not said_again("The sea is deep.", long)
    assert said_again("in and out all day long sleep well", long)


def test_a_question_like_the_opening_of_the_last_answer_is_the_users():
    # The answer repeated the last question, then went on; the next question is much like it.
    said = ("To decrease the audio volume from other participants, you can adjust the volume "
            "setting of the recording device to the setting for the person who recorded the "
            "event.")
    assert not said_again("Do increase the audio volume from other participants?", said)
    assert said_again("the person who recorded the event", said)
