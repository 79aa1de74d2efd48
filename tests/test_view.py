"""``lmrepl view FILE``: standalone HTML pages of recorded records and logs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import webbrowser
from pathlib import Path

import pytest
from recorded import FILES, record

from lmrepl import view
from lmrepl.cli import main
from lmrepl.records import SearchRecord
from lmrepl_jupyter import SRLMResult

FIXTURES = [
    "srlm_search.jsonl",
    "srlm_search.record.json",
    "rlm_run.jsonl",
    "rlm_run.record.json",
    "srlm_direct.jsonl",
    "srlm_direct.record.json",
    "schema1_record.json",
]


def _expected(name: str) -> SearchRecord:
    if name == "schema1_record.json":
        from lmrepl.records import parse_record

        return parse_record(json.loads((FILES / name).read_text("utf-8")))
    return record(name.split(".")[0])


def run_view(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["view", *args])
    out, err = capsys.readouterr()
    return code, out, err


def columns(page: str) -> int:
    return page.count('class="lmrepl-candidate')


@pytest.mark.parametrize("name", FIXTURES)
def test_each_fixture_renders(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "page.html"
    code, stdout, err = run_view([str(FILES / name), "-o", str(out)], capsys)
    assert code == 0 and err == ""
    assert stdout.strip() == str(out)
    page = out.read_text("utf-8")
    rec = _expected(name)
    assert page.startswith("<!DOCTYPE html>") and page.count("<style>") == 1
    assert "<script" not in page.lower()
    assert not re.search(r"\b(src|href)\s*=", page)  # nothing to fetch: self-contained
    assert columns(page) == len(rec.candidates)
    assert page.count("lmrepl-winner") == (1 if rec.winner is not None else 0)
    assert rec.answer is not None and 'class="lmrepl-box lmrepl-answer">' + rec.answer in page
    for cand in rec.candidates:
        if cand.answer is not None:
            assert cand.answer in page
    if rec.kind == "srlm" and rec.mode == "rlm":
        assert "votes" in page
        assert ("VC·Len" in page) == bool(rec.survivors)  # schema 1 kept no survivors


@pytest.mark.parametrize("name", ["srlm_search.jsonl", "srlm_search.record.json"])
def test_subcalls_and_children_are_expandable(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "page.html"
    assert run_view([str(FILES / name), "-o", str(out)], capsys)[0] == 0
    page = out.read_text("utf-8")
    assert page.count('<details class="lmrepl-subcalls"') == 1
    assert page.count('<details class="lmrepl-subcall"') == 2
    assert page.count('<details class="lmrepl-children"') == 1
    assert page.count('<details class="lmrepl-child"') == 1
    assert "<b>llm_query</b>" in page and "<b>rlm_query</b>" in page
    assert "Say hi." in page and "Hi." in page  # a sub-call's prompt and response
    assert "What is 6 * 7?" in page and "FINAL(" in page  # the child's question, its step


def test_default_output_is_next_to_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "run.record.json"
    src.write_bytes((FILES / "srlm_search.record.json").read_bytes())
    code, stdout, _ = run_view([str(src)], capsys)
    assert code == 0 and stdout.strip() == str(tmp_path / "run.record.html")
    assert (tmp_path / "run.record.html").is_file()
    assert view.default_output(tmp_path / "x.jsonl") == tmp_path / "x.html"


def test_unwritable_folder_falls_back_to_the_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cwd = tmp_path / "here"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    # Tests may run as root, which may write anywhere: ask the check, not chmod.
    monkeypatch.setattr(os, "access", lambda *a, **k: False)
    code, stdout, _ = run_view([str(FILES / "rlm_run.jsonl")], capsys)
    assert code == 0 and Path(stdout.strip()) == cwd / "rlm_run.html"
    assert (cwd / "rlm_run.html").is_file()
    assert not (FILES / "rlm_run.html").exists()


def test_output_may_be_a_folder_and_missing_folders_are_made(tmp_path: Path) -> None:
    assert view.write_html(FILES / "rlm_run.jsonl", tmp_path) == tmp_path / "rlm_run.html"
    deep = tmp_path / "a" / "b" / "p.html"
    assert view.write_html(FILES / "rlm_run.jsonl", deep) == deep and deep.is_file()


def test_a_per_candidate_log_shows_that_candidate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # What RLMLogger writes to <stem>_cand1.jsonl: the events that carry candidate 1.
    lines = (FILES / "srlm_search.jsonl").read_text("utf-8").splitlines()
    mine = [ln for ln in lines if json.loads(ln)["candidate"] == 1]
    src = tmp_path / "search_cand1.jsonl"
    src.write_text("\n".join(mine) + "\n", "utf-8")
    code, stdout, _ = run_view([str(src)], capsys)
    assert code == 0
    page = Path(stdout.strip()).read_text("utf-8")
    assert columns(page) == 1 and "candidate #1" in page
    assert "candidate #0" not in page and "lmrepl-winner" not in page
    assert "per-candidate log" in page and "votes" not in page
    assert 'lmrepl-answer">42.0' in page


def test_a_cut_off_log_renders_as_running(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lines = (FILES / "srlm_search.jsonl").read_text("utf-8").splitlines()
    src = tmp_path / "cut.jsonl"
    # The process died inside candidate 0's child run, mid-way through writing a line.
    src.write_text("\n".join(lines[:30]) + "\n" + lines[30][:50], "utf-8")
    code, stdout, err = run_view([str(src)], capsys)
    assert code == 0 and err == ""
    page = Path(stdout.strip()).read_text("utf-8")
    assert "ends mid-run" in page and "(still running)" in page
    assert columns(page) == 3 and ">running</span>" in page and ">queued</span>" in page
    assert "lmrepl-winner" not in page


def _bad_cases(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """name: (FILE, a phrase its one-line message must contain)."""
    cases: dict[str, tuple[str | None, str]] = {
        "missing": (None, "no such file"),
        "empty": ("", "empty"),
        "blank": ("\n  \n", "empty"),
        "text": ("hello\nworld\n", "line 1 is not an lmrepl event"),
        "list": ("[1, 2]", "JSON list"),
        "object": ('{"a": 1}', "neither a trajectory record"),
        "not_events": ('{"a": 1}\n{"b": 2}\n', "not an lmrepl event"),
        "one_partial_line": ('{"kind": "run_sta', "no lmrepl events"),
        "version": ('{"schema_version": "99", "candidates": []}', "'99'"),
        "invalid": ('{"schema_version": "2", "candidates": "x"}', "not a valid trajectory"),
        "cut_record": ('{\n "schema_version": "2",\n "candidates": [', "cut short"),
    }
    out: dict[str, tuple[Path, str]] = {}
    for name, (text, phrase) in cases.items():
        path = tmp_path / f"{name}.json"
        if text is not None:
            path.write_text(text, "utf-8")
        out[name] = (path, phrase)
    out["folder"] = (tmp_path, "not a file")
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage")
    out["binary"] = (binary, "not a text file")
    return out


@pytest.mark.parametrize(
    "case",
    [
        "missing",
        "empty",
        "blank",
        "text",
        "list",
        "object",
        "not_events",
        "one_partial_line",
        "version",
        "invalid",
        "cut_record",
        "folder",
        "binary",
    ],
)
def test_bad_input_is_one_line_and_status_2(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path, phrase = _bad_cases(tmp_path)[case]
    before = sorted(tmp_path.rglob("*"))
    code, stdout, err = run_view([str(path)], capsys)
    assert code == 2 and stdout == ""
    assert err.count("\n") == 1 and err.startswith("lmrepl view: error: ")
    assert phrase in err and "Traceback" not in err
    assert sorted(tmp_path.rglob("*")) == before  # nothing written
    if case == "version":
        assert "1, 2" in err  # the readable versions are named


def test_untrusted_content_is_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    evil = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    rec = record("srlm_search")
    rec.question = rec.answer = evil
    rec.clusters[0].answer = evil
    cand = rec.candidates[0]
    cand.answer = cand.error = evil
    cand.steps[0].code = cand.steps[0].output = evil
    cand.steps[0].notices = [evil]
    cand.subcalls[0].prompt = cand.subcalls[0].response = cand.subcalls[0].function = evil
    cand.children[0].question = cand.children[0].answer = evil
    rec.model = rec.context_info = evil
    src = rec.save(tmp_path / "evil.json")
    code, stdout, _ = run_view([str(src)], capsys)
    assert code == 0
    page = Path(stdout.strip()).read_text("utf-8").lower()
    assert "<script" not in page and "<img" not in page
    assert "&lt;script&gt;" in page and "&lt;img" in page


def test_open_uses_the_web_browser(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    opened: list[str] = []

    def fake_open(url: str) -> bool:
        opened.append(url)
        return True

    monkeypatch.setattr(webbrowser, "open", fake_open)
    out = tmp_path / "p.html"
    code, _, err = run_view([str(FILES / "rlm_run.jsonl"), "-o", str(out), "--open"], capsys)
    assert code == 0 and err == ""
    assert opened == [out.resolve().as_uri()] and opened[0].startswith("file://")

    monkeypatch.setattr(webbrowser, "open", lambda url: False)
    code, _, err = run_view([str(FILES / "rlm_run.jsonl"), "-o", str(out), "--open"], capsys)
    assert code == 0 and "no browser" in err and out.resolve().as_uri() in err


def test_console_script(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "lmrepl"
    if not script.exists():
        pytest.skip("the lmrepl console script is not installed")
    out = tmp_path / "page.html"
    done = subprocess.run(
        [str(script), "view", str(FILES / "srlm_search.jsonl"), "-o", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out) and columns(out.read_text("utf-8")) == 3
    bad = subprocess.run(
        [str(script), "view", str(tmp_path / "nope.jsonl")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.startswith("lmrepl view: error: ") and bad.stderr.count("\n") == 1


def test_python_api(tmp_path: Path) -> None:
    rec = record("srlm_search")
    page = view.render_page(rec)
    assert page.startswith("<!DOCTYPE html>") and columns(page) == 3
    assert view.render_page(view.load(FILES / "srlm_search.jsonl")).count("lmrepl-winner") == 1
    path = view.write_html(FILES / "rlm_run.record.json", tmp_path / "r.html")
    assert path == tmp_path / "r.html" and path.is_file()
    with pytest.raises(view.ViewError, match="no such file"):
        view.write_html(tmp_path / "missing.json", tmp_path / "m.html")
    assert not (tmp_path / "m.html").exists()


def test_the_notebook_fallback_gains_the_details_but_no_style_block() -> None:
    html = SRLMResult(record("srlm_search"))._repr_mimebundle_()["text/html"]
    assert '<details class="lmrepl-subcalls"' in html
    assert '<details class="lmrepl-children"' in html
    assert "<style" not in html and "<script" not in html
