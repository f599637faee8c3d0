"""Recorded human speech that this machine can get from its package registries, with what
is said in it: the material `sarai bench turn` and the language measurements run on.

- Asterisk's prompts (Debian `asterisk-core-sounds-en-wav` / `-es-wav`, CC-BY-SA 3.0): one
  professional speaker, Allison, reading telephone prompts in US English and Mexican Spanish,
  8 kHz; their texts are in the packages' `core-sounds-*.txt.gz`.
- Asterisk's Colombian Spanish prompts (Debian `asterisk-prompt-es-co`, GPL-2): another
  speaker, July E. Jiménez, reading the same kind of prompts (GSM, 8 kHz; no texts). Fetched
  with `apt-get download` into a cache, never installed.
- pocketsphinx's test data (its source package on PyPI, BSD licence): five LibriVox clips of
  a man reading a novel (16 kHz, with their texts), and `chan3`, 21 s of spontaneous
  meeting speech. Fetched with `pip download` into a cache.
"""

from __future__ import annotations

import gzip
import logging
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from sarai.audio.errors import AudioError

log = logging.getLogger(__name__)

ASTERISK = {"en": Path("/usr/share/asterisk/sounds/en_US_f_Allison"),
            "es": Path("/usr/share/asterisk/sounds/es_MX_f_Allison")}
ASTERISK_TEXTS = {"en": Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"),
                  "es": Path("/usr/share/doc/asterisk-core-sounds-es/core-sounds-es.txt.gz")}
ASTERISK_APT = {"en": "asterisk-core-sounds-en-wav", "es": "asterisk-core-sounds-es-wav"}
COLOMBIAN_APT = "asterisk-prompt-es-co"
POCKETSPHINX = "pocketsphinx==5.1.1"
_LIBRIVOX = "test/data/librivox/"
_CHAN3 = "test/regression/chan3.wav"


@dataclass(frozen=True)
class Recording:
    name: str
    language: str
    path: Path
    text: str | None  # what is said, when known
    speaker: str

    def samples(self) -> np.ndarray:
        """16 kHz mono int16."""
        from sarai.audio.pcm import read_audio

        if self.path.suffix == ".gsm":
            return _decode_gsm(self.path)
        return read_audio(self.path).samples


def _decode_gsm(path: Path) -> np.ndarray:
    from faster_whisper import decode_audio

    try:
        audio = decode_audio(str(path), sampling_rate=16000)
    except Exception as exc:  # PyAV's errors: one of the package's files is damaged
        raise AudioError(f"cannot decode {path.name}: {exc}") from exc
    return np.clip(audio * 32768.0, -32768, 32767).astype(np.int16)


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sarai" / "recordings"


# --- Asterisk ---------------------------------------------------------------------------

def asterisk_texts(language: str) -> dict[str, str]:
    """Prompt name → what Allison says in it."""
    path = ASTERISK_TEXTS[language]
    if not path.is_file():
        raise AudioError(f"{path} is missing: apt-get install {ASTERISK_APT[language]}")
    texts = {}
    with gzip.open(path, "rt", encoding="utf-8", errors="replace") as f:
        for line in f:
            if line.startswith(";") or ":" not in line:
                continue
            key, text = line.split(":", 1)
            text = re.sub(r"\s+", " ", text).strip()
            if text and "[" not in text:  # bracketed lines describe sounds, not speech
                texts[key.strip()] = text
    return texts


def asterisk(language: str) -> list[Recording]:
    """Allison's prompts in `language` (en, es) that have a text, sorted by name."""
    folder = ASTERISK[language]
    out = []
    for key, text in sorted(asterisk_texts(language).items()):
        wav = folder / f"{key}.wav"
        if wav.is_file():
            out.append(Recording(key, language, wav, text, "Allison"))
    if not out:
        raise AudioError(f"no prompts in {folder}: apt-get install {ASTERISK_APT[language]}")
    return out


def colombian(root: Path | None = None) -> list[Recording]:
    """The Colombian Spanish prompts (no texts), fetched into the cache on first use."""
    folder = (root or cache_dir()) / "es-co"
    if not any(folder.glob("*.gsm")):
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            proc = subprocess.run(["apt-get", "download", COLOMBIAN_APT], cwd=tmp,
                                  capture_output=True, text=True)
            debs = list(Path(tmp).glob("*.deb"))
            if proc.returncode != 0 or not debs:
                last = (proc.stderr.strip().splitlines() or ["no package"])[-1]
                raise AudioError(f"cannot fetch {COLOMBIAN_APT}: {last}")
            subprocess.run(["dpkg-deb", "-x", str(debs[0]), tmp + "/x"], check=True)
            for gsm in Path(tmp, "x").rglob("sounds/es/*.gsm"):
                (folder / gsm.name).write_bytes(gsm.read_bytes())
    return [Recording(p.stem, "es", p, None, "July E. Jiménez")
            for p in sorted(folder.glob("*.gsm"))]


# --- pocketsphinx -------------------------------------------------------------------------

def _pocketsphinx(root: Path) -> Path:
    folder = root / "pocketsphinx"
    if (folder / "chan3.wav").is_file() and any(folder.glob("librivox-*.wav")):
        return folder
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--no-binary",
             "pocketsphinx", "--disable-pip-version-check", POCKETSPHINX, "-d", tmp],
            capture_output=True, text=True)
        sdists = list(Path(tmp).glob("pocketsphinx-*.tar.gz"))
        if proc.returncode != 0 or not sdists:
            last = (proc.stderr.strip().splitlines() or ["no source package"])[-1]
            raise AudioError(f"cannot fetch {POCKETSPHINX}: {last}")
        with tarfile.open(sdists[0]) as tar:
            for member in tar.getmembers():
                inner = member.name.split("/", 1)[-1]
                name = None
                if inner == _CHAN3:
                    name = "chan3.wav"
                elif inner.startswith(_LIBRIVOX) and inner.endswith((".wav", ".txt")):
                    name = "librivox-" + inner.rsplit("-", 1)[-1]
                data = tar.extractfile(member) if name else None
                if data is not None:
                    (folder / name).write_bytes(data.read())
    return folder


def librivox(root: Path | None = None) -> list[Recording]:
    """Five LibriVox clips (English, 16 kHz) with their texts."""
    folder = _pocketsphinx(root or cache_dir())
    return [Recording(w.stem, "en", w, w.with_suffix(".txt").read_text().strip(), "LibriVox")
            for w in sorted(folder.glob("librivox-*.wav"))]


def chan3(root: Path | None = None) -> Recording:
    """21 s of spontaneous meeting speech (English, no text)."""
    return Recording("chan3", "en", _pocketsphinx(root or cache_dir()) / "chan3.wav", None,
                     "meeting")


# --- what was heard -----------------------------------------------------------------------

_DIGITS = {"en": ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
                  "nine"],
           "es": ["cero", "uno", "dos", "tres", "cuatro", "cinco", "seis", "siete", "ocho",
                  "nueve"]}


def words(text: str, language: str) -> list[str]:
    """Lower-case words without accents or punctuation; digits spelled out."""
    t = unicodedata.normalize("NFKD", text.lower())
    t = "".join(c for c in t if not unicodedata.combining(c))
    digits = _DIGITS.get(language, _DIGITS["en"])
    t = re.sub(r"\d", lambda m: f" {digits[int(m.group(0))]} ", t)
    t = re.sub(r"[^a-z' ]+", " ", t).replace("'", "")
    return t.split()


def word_recall(said: str, heard: str, language: str) -> tuple[int, int]:
    """(words of `said` found in `heard` in the same order, words of `said`)."""
    ref, hyp = words(said, language), words(heard, language)
    row = [0] * (len(hyp) + 1)
    for r in ref:  # longest common subsequence, one row at a time
        new = [0]
        for j, h in enumerate(hyp, 1):
            new.append(row[j - 1] + 1 if r == h else max(row[j], new[j - 1]))
        row = new
    return row[-1], len(ref)
