"""The transformers backend runs the same tiny Qwen2.5-Omni checkpoint (thinker only) on CPU."""

from __future__ import annotations

import pytest
from omni_fixtures import tiny, write_speech  # noqa: F401
from PIL import Image

from sarai.models.attachments import MediaLimits, load
from sarai.models.backend import CancelToken, Message
from sarai.models.errors import ModelError
from sarai.models.multimodal import MediaMessage
from sarai.models.transformers_backend import TransformersOmniBackend

SYSTEM = Message("system", "You are a helpful assistant.")
LIMITS = MediaLimits()


@pytest.fixture(scope="module")
def hf(tiny):  # noqa: F811
    b = TransformersOmniBackend(tiny.hf_dir, device="cpu", dtype="float32", threads=2)
    yield b
    b.close()


def _ask(media, text="What is this?"):
    return [SYSTEM, MediaMessage("user", text, tuple(media))]


def test_text_turn_streams(hf):
    chunks = list(hf.stream([SYSTEM, Message("user", "hello")], max_tokens=5, temperature=0))
    assert all(isinstance(c, str) for c in chunks)
    assert hf.last_prompt_tokens > 5


def test_audio_reaches_the_thinker_and_grows_with_length(hf, tmp_path):
    plain = hf.inputs([SYSTEM, Message("user", "What is this?")])["input_ids"].shape[-1]
    short = hf.inputs(_ask(load(write_speech(tmp_path / "s.wav", 2.0), LIMITS)))
    long = hf.inputs(_ask(load(write_speech(tmp_path / "l.wav", 6.0), LIMITS)))
    n_short, n_long = short["input_ids"].shape[-1], long["input_ids"].shape[-1]
    # Qwen2.5-Omni's audio encoder gives 25 tokens per second, without padding.
    assert n_short - plain == pytest.approx(2 * 25 + 2, abs=3)
    assert n_long - n_short == pytest.approx(4 * 25, abs=2)
    assert "input_features" in long and "feature_attention_mask" in long
    "".join(hf.stream(_ask(load(tmp_path / "s.wav", LIMITS)), max_tokens=4, temperature=0.7))
    assert hf.last_prompt_tokens == n_short


def test_image_adds_image_tokens(hf, tmp_path):
    path = tmp_path / "p.png"
    Image.new("RGB", (224, 112), (0, 90, 200)).save(path)
    plain = hf.inputs([SYSTEM, Message("user", "What is this?")])["input_ids"].shape[-1]
    inp = hf.inputs(_ask(load(path, LIMITS)))
    # 224×112 in 14-px patches merged 2×2: 8 × 4 = 32 image tokens, plus the two markers.
    assert inp["input_ids"].shape[-1] - plain == 32 + 2
    assert tuple(inp["image_grid_thw"][0].tolist()) == (1, 8, 16)
    "".join(hf.stream(_ask(load(path, LIMITS)), max_tokens=3, temperature=0))


def test_cancel_stops_generation(hf):
    cancel = CancelToken()
    cancel.cancel()
    out = list(hf.stream([SYSTEM, Message("user", "count to a hundred")], max_tokens=64,
                         temperature=0, cancel=cancel))
    assert len("".join(out)) < 40


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(ModelError, match="not a transformers checkpoint"):
        TransformersOmniBackend(tmp_path)


def test_unknown_dtype_is_a_clear_error(tiny):  # noqa: F811
    with pytest.raises(ModelError, match="unknown dtype 'float99'"):
        TransformersOmniBackend(tiny.hf_dir, dtype="float99")
