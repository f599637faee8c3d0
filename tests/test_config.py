"""One YAML file, validated at start; every mistake named with file, line and key."""

from pathlib import Path

import pytest

from sarai.daemon.config import DEFAULT_CONFIG_TEXT, ConfigError, dump_config, load_config
from sarai.models.settings import Residency, Tier


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "config.yaml"
    p.write_text(text)
    return p


def test_defaults_are_valid_and_have_four_tiers():
    cfg = load_config(None)
    for tier in Tier:
        assert cfg.models.tier(tier).model
    assert cfg.models.omni_fast.residency is Residency.PINNED
    assert cfg.models.omni_quality.residency is Residency.TTL
    assert cfg.models.omni_quality.ttl_s == 60
    assert cfg.models.expert.backend == "ollama"


def test_shipped_default_file_is_commented():
    assert DEFAULT_CONFIG_TEXT.count("#") > 20


def test_user_values_override_defaults_and_keep_the_rest(tmp_path):
    cfg = load_config(write(tmp_path, "audio:\n  vad:\n    end_silence_ms: 900\n"))
    assert cfg.audio.vad.end_silence_ms == 900
    assert cfg.audio.vad.frame_ms == 30


def test_missing_file_means_defaults_unless_required(tmp_path):
    assert load_config(tmp_path / "absent.yaml").models.omni_fast.n_ctx == 2048
    with pytest.raises(ConfigError, match="no such configuration file"):
        load_config(tmp_path / "absent.yaml", required=True)


def test_unknown_key_names_file_line_and_key(tmp_path):
    p = write(tmp_path, "assistant:\n  history_turns: 2\naudio:\n  vad:\n    agressiveness: 2\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == f"{p}:5: audio.vad.agressiveness: unknown key"


def test_bad_value_names_file_line_and_key(tmp_path):
    p = write(tmp_path, "models:\n  omni_fast:\n    residency: sometimes\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}:3: models.omni_fast.residency:")
    assert "pinned" in msg


def test_out_of_range_value(tmp_path):
    p = write(tmp_path, "audio:\n  vad:\n    aggressiveness: 7\n")
    with pytest.raises(ConfigError, match=r":3: audio\.vad\.aggressiveness: .*less than or equal"):
        load_config(p)


def test_yaml_syntax_error_has_a_line(tmp_path):
    p = write(tmp_path, "audio:\n  vad: [1, 2\nrouting: {}\n")
    with pytest.raises(ConfigError, match=rf"{p}:\d+: not valid YAML"):
        load_config(p)


def test_not_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(write(tmp_path, "- just\n- a list\n"))


def test_dump_round_trips(tmp_path):
    cfg = load_config(None)
    again = load_config(write(tmp_path, dump_config(cfg)))
    assert again == cfg


def test_mic_block_must_hold_whole_vad_frames(tmp_path):
    p = write(tmp_path, "audio:\n  mic_block_ms: 45\n  vad:\n    frame_ms: 20\n")
    with pytest.raises(ConfigError, match=r"mic_block_ms \(45\) must be a multiple of"
                                          r" vad\.frame_ms \(20\)"):
        load_config(p)
    assert load_config(write(tmp_path, "audio:\n  mic_block_ms: 90\n")).audio.mic_block_ms == 90


def test_desktop_switches_write_keys_and_a_bad_value_changes_nothing(tmp_path):
    from sarai.daemon.desktop.config_edit import set_keys

    cfg = write(tmp_path, "audio:\n  vad:\n    end_silence_ms: 900\n")
    set_keys(cfg, {("notify", "transcripts"): True, ("audio", "output_device"): "USB Headset"})
    loaded = load_config(cfg)
    assert loaded.notify.transcripts and not loaded.notify.errors
    assert loaded.audio.output_device == "USB Headset" and loaded.audio.vad.end_silence_ms == 900
    before = cfg.read_text()
    with pytest.raises(ConfigError, match="notify.timeout_s"):
        set_keys(cfg, {("notify", "timeout_s"): -1})
    assert cfg.read_text() == before
    fresh = tmp_path / "new" / "config.yaml"
    set_keys(fresh, {("notify", "microphone"): True})
    assert load_config(fresh).notify.microphone


def test_notify_is_off_by_default_and_hotkey_unset():
    cfg = load_config(None)
    assert not any((cfg.notify.model, cfg.notify.microphone, cfg.notify.errors,
                    cfg.notify.transcripts))
    assert cfg.listen.hotkey is None


def test_echo_cancel_off_as_the_readme_writes_it(tmp_path):
    # YAML reads a bare `off` as false; the setting means the mode, not a boolean.
    from sarai.daemon.config import EchoMode

    assert load_config(write(tmp_path, "listen:\n  echo_cancel: off\n")).listen.echo_cancel \
        is EchoMode.OFF
    assert load_config(write(tmp_path, "listen:\n  echo_cancel: webrtc\n")).listen.echo_cancel \
        is EchoMode.WEBRTC
    with pytest.raises(ConfigError, match="listen.echo_cancel"):
        load_config(write(tmp_path, "listen:\n  echo_cancel: on\n"))
