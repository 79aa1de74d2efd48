"""The accuracy harness: seeded tasks, exact scorers, run_eval, the report and the CLI."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from lmrepl.cli import main
from lmrepl.errors import ConfigurationError
from lmrepl.eval import (
    DEFAULT_SUITE,
    FAMILIES,
    EvalReport,
    Task,
    load_report,
    make_suite,
    parse_methods,
    run_eval,
    score,
)
from lmrepl.eval.results import EvalRow, summarize
from lmrepl.scripted_api import Responder
from lmrepl.srlm_direct import DIRECT_SYSTEM
from lmrepl.testing import ScriptedReply, ScriptedRequest, ScriptedServer

NEEDLE = re.compile(r"^The access code for vault (\w+) is (\d+)\.$", re.M)
RECORD = re.compile(r"^user=(u\d+) city=(\w+) action=(\w+) amount=(\d+)$")
BADGE = re.compile(r"^user=(u\d+) team=(\w+) badge=(\d+)$")
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _asked_vault(task: Task) -> str:
    match = re.search(r"vault (\w+)\?", task.question)
    assert match, task.question
    return match.group(1)


# -- generators -----------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_generators_are_deterministic_and_vary_with_the_seed(family: str) -> None:
    make = FAMILIES[family]
    first, again = make(6_000, 3), make(6_000, 3)
    assert first == again and first.context == again.context
    others = [make(6_000, s) for s in range(4, 10)]
    assert all(o.context != first.context for o in others)
    assert len({str(o.truth) for o in [first, *others]}) > 1
    assert first.id == f"{family}-6000-s3" and first.family == family and first.seed == 3


@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("length", [2_000, 6_000, 60_000])
def test_lengths_are_within_five_percent(family: str, length: int) -> None:
    for seed in range(4):
        task = FAMILIES[family](length, seed)
        assert task.length == length
        assert abs(len(task.context) - length) <= 0.05 * length, (seed, len(task.context))


@pytest.mark.parametrize("family", ["niah", "niah-multi"])
def test_needles_hold_the_truth_and_move_with_the_seed(family: str) -> None:
    positions = set()
    for seed in range(6):
        task = FAMILIES[family](6_000, seed)
        needles = NEEDLE.findall(task.context)
        assert len(needles) == (1 if family == "niah" else 3)
        codes = {name: code for name, code in needles}
        assert len(set(codes.values())) == len(needles)
        assert codes[_asked_vault(task)] == task.truth
        assert isinstance(task.truth, str) and len(task.truth) == 7 and task.truth.isdigit()
        # The code appears nowhere else in the context, and no other 7-digit number does.
        assert re.findall(r"\d{7,}", task.context) == [c for _, c in needles]
        positions.add(task.context.index(f"is {task.truth}."))
    assert len(positions) == 6


def test_count_truth_is_recomputed_from_the_records() -> None:
    kinds = set()
    for length in (6_000, 60_000):
        for seed in range(6):
            task = FAMILIES["count"](length, seed)
            records = [RECORD.match(line) for line in task.context.splitlines()]
            assert all(records)
            rows = [m.groups() for m in records if m]
            if m := re.search(r"action=(\w+)\?", task.question):
                kinds.add("count")
                expected = sum(1 for r in rows if r[2] == m.group(1))
            else:
                city = re.search(r"city=(\w+)\?", task.question)
                assert city, task.question
                kinds.add("total")
                expected = sum(int(r[3]) for r in rows if r[1] == city.group(1))
            assert task.truth == str(expected)
    assert kinds == {"count", "total"}


def test_pairs_truth_is_the_only_shared_badge() -> None:
    for seed in range(6):
        task = FAMILIES["pairs"](6_000, seed)
        rows = [BADGE.match(line) for line in task.context.splitlines()]
        assert all(rows)
        users = [m.group(1) for m in rows if m]
        badges = Counter(m.group(3) for m in rows if m)
        assert len(set(users)) == len(users)
        shared = [b for b, n in badges.items() if n > 1]
        assert len(shared) == 1 and badges[shared[0]] == 2
        owners = [m.group(1) for m in rows if m and m.group(3) == shared[0]]
        assert owners == task.truth


def test_the_default_suite_and_overrides() -> None:
    tasks = make_suite()
    assert len(tasks) == 16 and len({t.id for t in tasks}) == 16
    assert {t.family for t in tasks} == set(DEFAULT_SUITE.families)
    assert [t.length for t in tasks] == sorted(t.length for t in tasks)
    assert DEFAULT_SUITE.tasks() == tasks
    small = make_suite(["count"], [3_000], [5, 6, 7])
    assert [t.id for t in small] == ["count-3000-s5", "count-3000-s6", "count-3000-s7"]
    with pytest.raises(ConfigurationError, match="did you mean 'niah'"):
        make_suite(["naih"])
    with pytest.raises(ConfigurationError, match="context length"):
        make_suite(lengths=[10])
    with pytest.raises(ConfigurationError):
        make_suite(seeds=[])


# -- scorers --------------------------------------------------------------------------


def _task(family: str, truth: str | list[str], context: str = "") -> Task:
    return Task(id="t", family=family, context=context, question="?", truth=truth, length=1, seed=0)


def test_niah_scorer_accepts_formats_and_rejects_near_misses() -> None:
    task = FAMILIES["niah"](6_000, 0)
    code = str(task.truth)
    grouped = f"{int(code):,}"
    for right in (code, f"The code is {code}.", grouped, grouped.replace(",", " "), f"**{code}**"):
        assert score(task, right), right
    for wrong in (None, "", "  ", code[:-1], code + "1", "I could not find it", str(int(code) + 1)):
        assert not score(task, wrong), wrong


def test_niah_multi_scorer_rejects_listing_every_code() -> None:
    task = FAMILIES["niah-multi"](6_000, 1)
    codes = [c for _, c in NEEDLE.findall(task.context)]
    others = [c for c in codes if c != task.truth]
    assert score(task, f"Vault {_asked_vault(task)}: {task.truth}")
    assert not score(task, ", ".join(codes))
    assert not score(task, f"{task.truth} or maybe {others[0]}")
    assert not score(task, others[1])


def test_count_scorer_reads_the_first_number() -> None:
    task = _task("count", "1234")
    for right in ("1234", "1,234", "The answer is 1234.", "1234.0", "1,234 records", "1234.00"):
        assert score(task, right), right
    for wrong in (None, "", "1235", "12340", "123.4", "about 12 hundred", "none", "1,233"):
        assert not score(task, wrong), wrong
    assert score(_task("count", "12"), "12.0") and not score(_task("count", "12"), "12.5")


def test_pairs_scorer_wants_exactly_the_two_ids() -> None:
    task = FAMILIES["pairs"](6_000, 2)
    assert isinstance(task.truth, list)
    a, b = task.truth
    third = next(u for u in re.findall(r"user=(u\d+)", task.context) if u not in task.truth)
    for right in (f"{a} and {b}", f"{b}, {a}", f"{a[1:]} {b[1:]}", f"Users {a} & {b}."):
        assert score(task, right), right
    for wrong in (None, "", a, f"{a}, {b}, {third}", f"{a} {third}", "I do not know"):
        assert not score(task, wrong), wrong


# -- run_eval end to end --------------------------------------------------------------


def _responder(tasks: list[Task]) -> Responder:
    """Direct: right on niah only. RLM (no temperature): right on niah only. SRLM
    (temperature 0.7): right on both. Every request about ``pairs`` gets HTTP 500."""

    def respond(req: ScriptedRequest) -> str | ScriptedReply:
        text = json.dumps(req.messages)
        task = next(t for t in tasks if t.question in text)
        if task.family == "pairs":
            return ScriptedReply(status=500)
        right = task.family == "niah" or req.temperature == 0.7
        answer = str(task.truth) if right else "999"
        if req.messages[0].get("content") == DIRECT_SYSTEM:
            return answer
        return f'```repl\nans = "{answer}"\nprint(ans)\nFINAL(ans)\n```\n{{"confidence": 90}}'

    return respond


def test_run_eval_end_to_end(tmp_path: Path) -> None:
    tasks = [FAMILIES["niah"](1_000, 0), FAMILIES["count"](1_000, 0), FAMILIES["pairs"](1_000, 0)]
    with ScriptedServer(responder=_responder(tasks)) as server:
        report = run_eval(
            methods=["direct", "rlm", "srlm"],
            tasks=tasks,
            k=2,
            backend="openai",
            backend_kwargs={
                "model_name": "m",
                "base_url": server.base_url,
                "api_key": "test-key",
                "max_retries": 0,
            },
            environment="local",
            max_iterations=3,
            out_dir=tmp_path,
            quiet=True,
            command="lmrepl eval --test",
        )
    assert report.settings.methods == ["direct", "rlm", "srlm(k=2)"]
    assert report.settings.backend_kwargs["api_key"] == "***"
    assert len(report.rows) == 9
    got = {(r.task_id, r.method): r for r in report.rows}
    expected = {
        ("niah-1000-s0", "direct"): True,
        ("niah-1000-s0", "rlm"): True,
        ("niah-1000-s0", "srlm(k=2)"): True,
        ("count-1000-s0", "direct"): False,
        ("count-1000-s0", "rlm"): False,
        ("count-1000-s0", "srlm(k=2)"): True,
    }
    for key, correct in expected.items():
        row = got[key]
        assert row.correct is correct and row.status == "done", row
        assert row.answer == (str(tasks[0 if "niah" in key[0] else 1].truth) if correct else "999")
        assert row.input_tokens and row.output_tokens and row.seconds >= 0
        # Printed before it was submitted: grounded, where the engine records it.
        assert row.grounded is not False
    for method in ("direct", "rlm", "srlm(k=2)"):
        failed = got[("pairs-1000-s0", method)]
        assert failed.status == "failed" and not failed.correct and failed.answer is None
        assert failed.error
    summary = report.summary
    assert {m: (a.correct, a.n) for m, a in summary.accuracy.items()} == {
        "direct": (1, 3),
        "rlm": (1, 3),
        "srlm(k=2)": (2, 3),
    }
    assert report.accuracy("srlm(k=2)") == pytest.approx(2 / 3)
    assert summary.by_length["rlm"][1_000].n == 3
    assert summary.by_family["srlm(k=2)"]["count"].correct == 1
    assert summary.by_family["direct"]["count"].correct == 0
    assert summary.failed == {"direct": 1, "rlm": 1, "srlm(k=2)": 1}

    assert (tmp_path / "accuracy.png").read_bytes()[:8] == PNG_MAGIC
    assert load_report(tmp_path / "report.json") == report
    data = json.loads((tmp_path / "report.json").read_text())
    assert data["summary"]["accuracy"]["srlm(k=2)"]["accuracy"] == pytest.approx(2 / 3)
    md = (tmp_path / "report.md").read_text()
    assert "Command: `lmrepl eval --test`" in md
    assert "| srlm(k=2) | 67% (2/3) | 67% (2/3) |" in md
    assert "| direct | 100% (1/1) | 0% (0/1) | 0% (0/1) |" in md


def test_ctrl_c_writes_the_rows_so_far(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import lmrepl.eval.runner as runner

    calls: list[str] = []
    real = runner.run_one

    def run_one(model: Any, label: str, task: Task) -> EvalRow:
        calls.append(task.id)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(model, label, task)

    monkeypatch.setattr(runner, "run_one", run_one)
    tasks = [FAMILIES["niah"](1_000, 0), FAMILIES["niah"](1_000, 1)]
    with (
        ScriptedServer(responder=lambda req: "no idea") as server,
        pytest.raises(KeyboardInterrupt),
    ):
        run_eval(
            "direct",
            tasks,
            backend="openai",
            backend_kwargs={"model_name": "m", "base_url": server.base_url},
            out_dir=tmp_path,
            quiet=True,
        )
    report = load_report(tmp_path / "report.json")
    assert report.interrupted and [r.task_id for r in report.rows] == ["niah-1000-s0"]
    assert "interrupted" in (tmp_path / "report.md").read_text()


def test_grounded_is_read_from_the_winner_or_the_run() -> None:
    from lmrepl.eval.runner import _grounded

    srlm = {"winner": 1, "candidates": [{"grounded": False}, {"grounded": True}]}
    assert _grounded(srlm) is True
    assert _grounded({"grounded": False}) is False
    assert _grounded({"winner": None, "candidates": []}) is None
    assert _grounded({}) is None


def test_summarize_and_methods() -> None:
    rows = [
        EvalRow(
            task_id=f"t{i}",
            family=f,
            length=n,
            chars=n,
            seed=0,
            method=m,
            question="?",
            truth="1",
            correct=c,
            seconds=s,
        )
        for i, (f, n, m, c, s) in enumerate(
            [("a", 10, "x", True, 1.0), ("a", 20, "x", False, 3.0), ("b", 20, "y", True, 2.0)]
        )
    ]
    summary = summarize(rows, ["y", "x"])
    assert list(summary.accuracy) == ["y", "x"]
    assert summary.accuracy["x"].accuracy == 0.5 and summary.mean_seconds["x"] == 2.0
    assert summary.by_length["x"][20].correct == 0 and summary.by_family["y"]["b"].n == 1
    assert [s.label for s in parse_methods("direct, srlm,srlm(k=5)", k=3)] == [
        "direct",
        "srlm(k=3)",
        "srlm(k=5)",
    ]
    with pytest.raises(ConfigurationError, match="unknown method 'rml'"):
        parse_methods("rml")
    assert isinstance(EvalReport.model_json_schema(), dict)


# -- the command line -----------------------------------------------------------------


def test_cli_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["eval", "--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for option in ("--methods", "--k", "--families", "--lengths", "--seeds", "--out"):
        assert option in out


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (["--methods", "direct,bogus"], 2, "unknown method 'bogus'"),
        (["--lengths", "6000,abc"], 2, "--lengths"),
        (["--lengths", "50"], 2, "context length"),
        (["--families", "niah,nope"], 2, "unknown family 'nope'"),
        (["--k", "0"], 2, "--k"),
        (["--seeds", ""], 2, "--seeds"),
        (["--backend", "openai", "--methods", "direct"], 1, "model_name"),
        (["--backend", "nope"], 1, "backend"),
    ],
)
def test_cli_errors_are_one_line(
    args: list[str], code: int, words: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["eval", *args, "--quiet", "--out", str(tmp_path / "out")]) == code
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("lmrepl eval: error: "), err
    assert words in err
    assert not (tmp_path / "out").exists()


def test_cli_runs_and_prints_the_table(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    task = FAMILIES["niah"](1_000, 0)
    with ScriptedServer(responder=lambda req: f"It is {task.truth}.") as server:
        argv = ["eval", "--backend", "openai", "--model", "m", "--base-url", server.base_url]
        argv += ["--methods", "direct", "--families", "niah", "--lengths", "1k", "--seeds", "0"]
        assert main([*argv, "--quiet", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "| direct | 100% (1/1) | 100% (1/1) |" in out
    assert str(tmp_path / "report.md") in out
    report = load_report(tmp_path / "report.json")
    assert report.settings.command and "--lengths 1000" in report.settings.command
    assert (tmp_path / "accuracy.png").read_bytes()[:8] == PNG_MAGIC
