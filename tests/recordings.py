"""Recorded human speech (and music) for the VAD tests, from packages this machine can fetch.

- Asterisk's prompts (Debian `asterisk-core-sounds-en-wav` / `-es-wav`, CC-BY-SA 3.0): one
  speaker reading multi-sentence prompts in English and Mexican Spanish, 8 kHz, with the
  natural pauses of read speech between sentences; `asterisk-moh-opsound-wav`: music.
  `make setup` installs them with apt-get.
- pocketsphinx's test data (its source package on PyPI, BSD licence): `chan3.wav`, 21 s of
  spontaneous meeting speech with pauses from 0.3 to 1.3 s, quieter and less even than read
  speech. Fetched into a cache with `pip download` (`python tests/recordings.py`, or by the
  `recordings` fixture on first use).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ASTERISK = Path("/usr/share/asterisk")
PROMPTS = {"en": ASTERISK / "sounds" / "en_US_f_Allison",
           "es": ASTERISK / "sounds" / "es_MX_f_Allison"}
MUSIC = ASTERISK / "moh"
APT_PACKAGES = ("asterisk-core-sounds-en-wav", "asterisk-core-sounds-es-wav",
                "asterisk-moh-opsound-wav")

POCKETSPHINX = "pocketsphinx==5.1.1"
_MEMBERS = {"test/regression/chan3.wav": "chan3.wav"}


def cache_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "sarai" / "test-recordings"


def missing_packages() -> list[str]:
    wanted = {APT_PACKAGES[0]: PROMPTS["en"], APT_PACKAGES[1]: PROMPTS["es"],
              APT_PACKAGES[2]: MUSIC}
    return [pkg for pkg, folder in wanted.items() if not any(folder.glob("*.wav"))]


def fetch(root: Path | None = None) -> Path:
    """The folder holding the pocketsphinx recordings, downloading them if needed."""
    root = root or cache_dir()
    if all((root / name).exists() for name in _MEMBERS.values()):
        return root
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--no-deps",
             "--no-binary", "pocketsphinx", POCKETSPHINX, "-d", tmp],
            check=True,
        )
        (sdist,) = Path(tmp).glob("pocketsphinx-*.tar.gz")
        with tarfile.open(sdist) as tar:
            for member in tar.getmembers():
                inner = member.name.split("/", 1)[-1]
                if inner in _MEMBERS:
                    data = tar.extractfile(member)
                    if data is not None:
                        (root / _MEMBERS[inner]).write_bytes(data.read())
    return root


if __name__ == "__main__":
    print(fetch())
    if missing_packages():
        print("missing system packages:", *missing_packages(), file=sys.stderr)
        sys.exit(1)
