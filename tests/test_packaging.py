"""The wheel carries the prebuilt JupyterLab extension where JupyterLab looks for it."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from lmrepl_jupyter import LAB_EXTENSION, _jupyter_labextension_paths

ROOT = Path(__file__).resolve().parent.parent
BUILT = ROOT / "lmrepl_jupyter" / "labextension"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if not (BUILT / "package.json").exists():
        pytest.skip("the JupyterLab extension is not built here (make labextension)")
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(out),
            str(ROOT),
        ],
        check=True,
        timeout=300,
    )
    (found,) = out.glob("lmrepl-*.whl")
    return found


def test_the_wheel_holds_the_built_extension(wheel: Path) -> None:
    prefix = f"lmrepl-0.1.0.data/data/share/jupyter/labextensions/{LAB_EXTENSION}/"
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        shipped = {n.removeprefix(prefix) for n in names if n.startswith(prefix)}
        meta = json.loads(zf.read(prefix + "package.json"))
    built = {str(p.relative_to(BUILT)) for p in BUILT.rglob("*") if p.is_file()}
    # Every built file, and nothing else, under the labextensions folder.
    assert shipped == built
    assert meta["name"] == LAB_EXTENSION
    assert any(n.startswith("static/remoteEntry.") and n.endswith(".js") for n in shipped)
    # The mime renderer and the viewer plugin are both declared to JupyterLab.
    assert meta["jupyterlab"]["_build"]["load"].startswith("static/remoteEntry.")
    assert meta["jupyterlab"]["_build"].get("mimeExtension")
    assert meta["jupyterlab"]["_build"].get("extension")
    # Not a second time as package data inside lmrepl_jupyter/.
    assert not any(n.startswith("lmrepl_jupyter/labextension/") for n in names)


def test_the_labextension_hook_names_the_built_folder() -> None:
    (entry,) = _jupyter_labextension_paths()
    assert entry["dest"] == LAB_EXTENSION
    assert (ROOT / "lmrepl_jupyter" / entry["src"]).resolve() == BUILT.resolve()


def test_installing_the_wheel_activates_the_extension(wheel: Path, tmp_path: Path) -> None:
    prefix = tmp_path / "prefix"
    # --ignore-installed: without it pip would first uninstall this environment's lmrepl.
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--ignore-installed",
            "--prefix",
            str(prefix),
            str(wheel),
        ],
        check=True,
        timeout=300,
    )
    data = prefix / "share" / "jupyter"
    assert (data / "labextensions" / LAB_EXTENSION / "package.json").is_file()
    # JupyterLab, looking in that prefix, lists it as enabled and OK.
    out = subprocess.run(
        [sys.executable, "-m", "jupyter", "labextension", "list"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "JUPYTER_PATH": str(data), "NO_COLOR": "1"},
    )
    listing = re.sub(r"\x1b\[[0-9;]*m", "", out.stdout + out.stderr)
    section = listing.split(str(data / "labextensions"), 1)[1].split("\n\n", 1)[0]
    assert re.search(rf"{LAB_EXTENSION} v0\.1\.0 enabled\s+OK", section), listing
