"""Omni turns on llama.cpp + libmtmd, on a tiny random-weight Qwen2.5-Omni built for the tests.

The tiny model's answers are noise; what is checked is that the media reach it: the prompt's
audio tokens grow with the clip's length, an image adds image tokens, the projector's memory
appears when it is loaded and is given back when it is freed.
"""

from __future__ import annotations

import time

import psutil
import pytest
from omni_fixtures import tiny, write_speech, write_video  # noqa: F401
from PIL import Image

from sarai.audio.asr import Transcriber
from sarai.audio.settings import AsrSettings
from sarai.models import starter
from sarai.models.attachments import MediaKind, MediaLimits, load
from sarai.models.backend import Message
from sarai.models.errors import ModelError
from sarai.models.mtmd import OmniBackend
from sarai.models.multimodal import MediaMessage, prepare_user_turn
from sarai.models.projector import Projector, ProjectorState

SYSTEM = Message("system", "You are a helpful assistant.")
LIMITS = MediaLimits()


@pytest.fixture(scope="module")
def omni(tiny):  # noqa: F811
    b = OmniBackend(tiny.gguf, mmproj=tiny.mmproj, n_ctx=4096, threads=2)
    yield b
    b.close()


def _ask(media, text="What is this?"):
    return [SYSTEM, MediaMessage("user", text, tuple(media))]


def _prompt(omni, messages):
    """The token counts of the prompt a media turn really sent (one token generated)."""
    "".join(omni.stream(messages, max_tokens=1, temperature=0))
    return omni.last_prompt


def _text_tokens(omni, messages) -> int:
    """Tokens of the same conversation with no attachment, in the model's template."""
    prompt = omni.template.render([m.as_dict() for m in messages])
    return len(omni._llm.tokenize(prompt.encode(), add_bos=True, special=True))


def test_audio_tokens_grow_with_the_clip(omni, tmp_path):
    short = load(write_speech(tmp_path / "short.wav", 4.0), LIMITS)
    long = load(write_speech(tmp_path / "long.wav", 40.0), LIMITS)
    plain = _text_tokens(omni, [SYSTEM, Message("user", "What is this?")])
    a = _prompt(omni, _ask(short))
    b = _prompt(omni, _ask(long))
    assert a.audio > 0 and a.image == 0 and a.text >= plain
    # libmtmd encodes Whisper-style 30 s windows at 25 tokens/s: 40 s takes two windows.
    assert b.audio > a.audio and b.audio == 2 * a.audio
    assert b.total > a.total > plain


def test_an_image_adds_image_tokens_and_a_bigger_one_more(omni, tmp_path):
    small, big = tmp_path / "s.png", tmp_path / "b.png"
    Image.new("RGB", (112, 112), (200, 30, 30)).save(small)
    Image.new("RGB", (448, 336), (30, 200, 30)).save(big)
    s = _prompt(omni, _ask(load(small, LIMITS)))
    b = _prompt(omni, _ask(load(big, LIMITS)))
    assert s.image > 0 and s.audio == 0
    assert b.image > s.image


def test_audio_turn_streams_a_reply(omni, tmp_path):
    media = load(write_speech(tmp_path / "q.wav", 3.0), LIMITS)
    reply = "".join(omni.stream(_ask(media), max_tokens=6, temperature=0.8))
    assert isinstance(reply, str)
    assert omni.last_prompt.audio > 0
    # Text turns after a multimodal one still work (the context was reset in between).
    again = list(omni.stream([SYSTEM, Message("user", "hello")], max_tokens=4, temperature=0))
    assert isinstance("".join(again), str)


def test_text_turns_keep_the_prompt_cache_and_media_turns_start_clean(omni, tmp_path):
    hello = [SYSTEM, Message("user", "hello")]
    "".join(omni.stream(hello, max_tokens=2, temperature=0))
    kept = omni._llm.n_tokens
    assert kept > 0  # the system prompt stays evaluated for the next text turn
    media = load(write_speech(tmp_path / "q.wav", 1.0), LIMITS)
    "".join(omni.stream(_ask(media), max_tokens=2, temperature=0))
    assert omni._llm.n_tokens == 0  # its positions are not Llama's: the next turn re-evaluates
    "".join(omni.stream(hello, max_tokens=2, temperature=0))
    assert omni._llm.n_tokens == kept


def test_video_sends_frames_and_sound(omni, tmp_path):
    media = load(write_video(tmp_path / "v.mp4", seconds=2.0), LIMITS)
    "".join(omni.stream(_ask(media, "What happens?"), max_tokens=4, temperature=0.5))
    assert omni.last_prompt.image > 0 and omni.last_prompt.audio > 0


def test_prompt_longer_than_the_context_is_a_clear_error(tiny, tmp_path):  # noqa: F811
    b = OmniBackend(tiny.gguf, mmproj=tiny.mmproj, n_ctx=512, threads=2)
    try:
        media = load(write_speech(tmp_path / "q.wav", 5.0), LIMITS)
        with pytest.raises(ModelError, match=r"more than the context \(512\)"):
            "".join(b.stream(_ask(media), max_tokens=4))
    finally:
        b.close()


def _rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def test_projector_memory_appears_and_is_freed(omni):
    proj = Projector(omni.projector.path, lambda: omni._llm.model, threads=2, keep_s=0)
    size = proj.info().file_mb
    before = _rss_mb()
    proj.acquire()
    loaded = _rss_mb()
    assert proj.info().state is ProjectorState.LOADED
    assert proj.info().audio and proj.info().vision
    proj.release()  # keep_s 0: freed at once
    after = _rss_mb()
    assert proj.info().state is ProjectorState.UNLOADED
    assert loaded - before > 0.6 * size, (before, loaded, size)
    assert after - before < 0.25 * size, (before, loaded, after, size)


def test_projector_is_kept_for_keep_s_then_freed(omni):
    seen = []
    proj = Projector(omni.projector.path, lambda: omni._llm.model, threads=2, keep_s=3.0,
                     on_change=seen.append)
    proj.acquire()
    proj.release()
    assert proj.loaded and proj.info().idle_s is not None
    proj.acquire()  # a second turn within keep_s reuses it
    proj.release()
    deadline = time.monotonic() + 30
    # The listener is told just after the context is freed, on the timer's thread.
    while (proj.loaded or len(seen) < 2) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not proj.loaded
    assert [i.state for i in seen] == [ProjectorState.LOADED, ProjectorState.UNLOADED]


def test_backend_unloads_the_projector_after_each_turn_by_default(omni, tmp_path):
    media = load(write_speech(tmp_path / "q.wav", 1.0), LIMITS)
    assert not omni.projector.loaded
    "".join(omni.stream(_ask(media), max_tokens=2))
    assert not omni.projector.loaded
    assert omni.projector.info().rss_mb > 0


def test_without_a_projector_audio_falls_back_to_the_transcript(tiny, models_dir, make_speech):  # noqa: F811
    b = OmniBackend(tiny.gguf, n_ctx=1024, threads=2)
    try:
        assert b.accepts() == frozenset()
        media = load(make_speech(["what is the weather in Barcelona"], rate=16000), LIMITS)
        dirs = {n: starter.CATALOGUE[n].path(models_dir) for n in ("whisper-tiny-en",)}
        asr = Transcriber(AsrSettings(language="en"), dirs)
        turn = prepare_user_turn("", media, accepts=b.accepts(), tier="omni_fast",
                                 transcribe=lambda s: asr.transcribe(s).text)
        assert isinstance(turn.message, Message)
        assert "weather" in turn.message.content.lower()
        assert "no projector configured" in turn.note and "transcri" in turn.note
        "".join(b.stream([SYSTEM, turn.message], max_tokens=3))
        with pytest.raises(ModelError, match="no projector"):
            "".join(b.stream(_ask(media), max_tokens=2))
    finally:
        b.close()


def test_with_a_projector_audio_is_sent_as_audio(omni, tmp_path):
    media = load(write_speech(tmp_path / "q.wav", 1.0), LIMITS)
    turn = prepare_user_turn("and this?", media, accepts=omni.accepts(), tier="omni_fast")
    assert isinstance(turn.message, MediaMessage) and turn.note is None
    assert [a.kind for a in turn.message.media] == [MediaKind.AUDIO]


def test_media_prompt_is_rendered_in_the_models_own_template(omni, tmp_path):
    media = load(write_speech(tmp_path / "q.wav", 1.0), LIMITS)
    assert omni.template.from_file  # the converted Omni GGUF carries its chat template
    prompt = omni._render(_ask(media), "<M>")
    assert prompt == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                      "<|im_start|>user\n<M>\nWhat is this?<|im_end|>\n<|im_start|>assistant\n")


def test_media_prompt_of_a_model_without_a_template_uses_its_architectures(gemma, tmp_path):
    # Gemma's GGUF here has no chat template: the media prompt is Gemma's format too, with
    # the system prompt folded into the user's turn (no BOS: libmtmd adds it).
    b = OmniBackend(gemma, n_ctx=512, threads=2)
    try:
        media = load(write_speech(tmp_path / "q.wav", 1.0), LIMITS)
        assert b.template.source == "the known gemma template for gemma3"
        assert b._render(_ask(media), "<M>") == (
            "<start_of_turn>user\nYou are a helpful assistant.\n\n<M>\nWhat is this?"
            "<end_of_turn>\n<start_of_turn>model\n")
    finally:
        b.close()
