"""VC scoring and winner selection (SPEC §6 steps 3–5)."""

from __future__ import annotations

import math

import pytest
from pydantic import ValidationError

from lmrepl.records import CandidateRecord
from lmrepl.scoring import MIN_CONFIDENCE, Selection, joint_score, select_winner, vc_score


def test_vc_sums_logs() -> None:
    assert vc_score([50, 50]) == pytest.approx(2 * math.log(0.5))
    assert vc_score([100, 100, 100]) == 0.0


def test_vc_imputes_mean_confidence_then_log() -> None:
    # Reported 90 and 40: mean 65 fills the gap, in confidence space.
    expected = math.log(0.9) + math.log(0.4) + math.log(0.65)
    assert vc_score([90, None, 40]) == pytest.approx(expected)
    # Not the mean of the logs.
    mean_log = (math.log(0.9) + math.log(0.4)) / 2
    assert vc_score([90, None, 40]) != pytest.approx(math.log(0.9) + math.log(0.4) + mean_log)


def test_vc_none_when_nothing_reported() -> None:
    assert vc_score([None, None]) is None
    assert vc_score([]) is None
    assert vc_score([float("nan"), None]) is None


def test_vc_zero_confidence_is_finite() -> None:
    vc = vc_score([0, 100])
    assert vc is not None
    assert math.isfinite(vc)
    assert vc == pytest.approx(math.log(MIN_CONFIDENCE / 100))
    # A zero costs far more than a middling step, but stays comparable.
    half = vc_score([50, 100])
    assert half is not None
    assert vc < half


def test_vc_clamps_out_of_range() -> None:
    assert vc_score([150]) == 0.0
    assert vc_score([-10]) == vc_score([0])


def test_joint_score() -> None:
    assert joint_score(None, 100) is None
    assert joint_score(-0.5, 100) == pytest.approx(-50.0)
    # Unknown length (0) must not yield a perfect 0.
    assert joint_score(-0.5, 0) == pytest.approx(-0.5)


def _c(
    index: int,
    answer: str | None,
    vc: float | None,
    length: int,
    status: str = "done",
    grounded: bool | None = None,
) -> CandidateRecord:
    return CandidateRecord.model_validate(
        {
            "index": index,
            "answer": answer,
            "vc": vc,
            "length": length,
            "status": status,
            "grounded": grounded,
        }
    )


def test_a_grounded_cluster_wins_a_tie_on_votes() -> None:
    # One vote each, no confidence: the shortest trace would win, a blind guess.
    cands = [
        _c(0, "81330", None, 20, grounded=False),
        _c(1, "25", None, 900, grounded=True),
        _c(2, "7", None, 40, grounded=False),
    ]
    sel = select_winner(cands)
    assert sel.winner == 1 and sel.reason == "grounded"
    assert sel.survivors == [0, 1, 2]
    # Before VC·Len too: the ungrounded guess has the better score.
    cands = [_c(0, "81330", -0.01, 20, grounded=False), _c(1, "25", -5.0, 900, grounded=True)]
    assert select_winner(cands).winner == 1


def test_votes_come_before_grounding() -> None:
    cands = [
        _c(0, "81330", None, 20, grounded=False),
        _c(1, "81,330", None, 30, grounded=False),
        _c(2, "25", None, 10, grounded=True),
    ]
    sel = select_winner(cands)
    assert sel.winner == 0 and sel.reason == "shortest"


def test_grounding_decides_nothing_when_all_or_none_are_grounded() -> None:
    for flag in (True, False, None):
        cands = [_c(0, "a b", None, 50, grounded=flag), _c(1, "c d", None, 10, grounded=flag)]
        sel = select_winner(cands)
        assert sel.winner == 1 and sel.reason == "shortest"


def test_two_grounded_clusters_of_three_go_on_to_vc_len() -> None:
    cands = [
        _c(0, "a b", -1.0, 50, grounded=True),
        _c(1, "c d", -0.1, 10, grounded=False),
        _c(2, "e f", -0.5, 50, grounded=True),
    ]
    sel = select_winner(cands)
    assert sel.winner == 2 and sel.reason == "vc_len"
    # Inside the winning cluster any member may be the grounded one.
    cands = [
        _c(0, "42", None, 50, grounded=False),
        _c(1, "42", None, 60, grounded=True),
        _c(2, "7", None, 10, grounded=False),
        _c(3, "7", None, 10, grounded=False),
    ]
    sel = select_winner(cands)
    assert sel.winner == 0 and sel.reason == "grounded"


def test_majority_cluster_wins_over_better_score() -> None:
    sel = select_winner([_c(0, "42", -2.0, 100), _c(1, "42", -3.0, 100), _c(2, "7", -0.01, 10)])
    assert sel.survivors == [0, 1]
    assert sel.winner == 0
    assert sel.reason == "vc_len"
    assert sel.scores == {
        0: pytest.approx(-200.0),
        1: pytest.approx(-300.0),
        2: pytest.approx(-0.1),
    }


def test_vc_len_trades_confidence_against_length() -> None:
    # Candidate 1 is less sure per step but much shorter: -1.0*50 > -0.5*200.
    sel = select_winner([_c(0, "a b c", -0.5, 200), _c(1, "a b c", -1.0, 50)])
    assert sel.winner == 1


def test_tied_clusters_pool_then_score() -> None:
    cands = [
        _c(0, "Paris", -1.0, 100),
        _c(1, "London", -0.2, 100),
        _c(2, "paris.", None, 5),
        _c(3, "London", -2.0, 10),
    ]
    sel = select_winner(cands)
    assert sel.survivors == [0, 1, 2, 3]
    # 1 and 3 both score -20 (beating -100); the shorter trace, 3, breaks the tie.
    assert sel.winner == 3
    assert sel.reason == "vc_len"


def test_score_tie_breaks_by_length_then_index() -> None:
    sel = select_winner([_c(0, "x y", -1.0, 40), _c(1, "x y", -2.0, 20), _c(2, "x y", -1.0, 40)])
    # All three score -40: the shortest trace (1) wins.
    assert sel.winner == 1
    sel = select_winner([_c(5, "x y", -1.0, 40), _c(2, "x y", -1.0, 40)])
    assert sel.winner == 2


def test_survivor_without_vc_loses_to_one_with_vc() -> None:
    sel = select_winner([_c(0, "x y", None, 5), _c(1, "x y", -3.0, 500)])
    assert sel.winner == 1
    assert sel.scores[0] is None


def test_no_vc_falls_back_to_shortest() -> None:
    sel = select_winner([_c(0, "x y", None, 300), _c(1, "x y", None, 120), _c(2, "x y", None, 120)])
    assert sel.winner == 1
    assert sel.reason == "shortest"


def test_confidence_off_ignores_vc() -> None:
    cands = [_c(0, "x y", -0.1, 300), _c(1, "x y", -9.0, 100)]
    assert select_winner(cands).winner == 0
    sel = select_winner(cands, use_confidence=False)
    assert sel.winner == 1
    assert sel.reason == "shortest"
    assert all(v is None for v in sel.scores.values())


def test_failed_cancelled_and_empty_are_not_clustered() -> None:
    cands = [
        _c(0, "7", -0.1, 10, "failed"),
        _c(1, "7", -0.1, 10, "cancelled"),
        _c(2, "", -0.1, 10),
        _c(3, None, -0.1, 10),
        _c(4, "42", -5.0, 900),
    ]
    sel = select_winner(cands)
    assert sel.winner == 4
    assert sel.reason == "only"
    assert [c.members for c in sel.clusters] == [[4]]
    assert sel.scores[0] is None and sel.scores[1] is None
    assert sel.cluster_of(0) is None and sel.cluster_of(4) == 0


def test_nothing_usable() -> None:
    sel = select_winner([_c(0, None, None, 0, "failed"), _c(1, "  ", None, 3)])
    assert sel.winner is None
    assert sel.reason == "none"
    assert sel.survivors == []
    assert select_winner([]).winner is None


def test_members_are_candidate_indices_not_positions() -> None:
    sel = select_winner([_c(10, "x y", None, 5), _c(3, "x y", None, 9), _c(7, "other", None, 1)])
    assert sel.clusters[0].members == [3, 10]
    assert sel.winner == 10


def test_duplicate_indices_rejected() -> None:
    with pytest.raises(ValueError, match="unique"):
        select_winner([_c(0, "a b", None, 1), _c(0, "a b", None, 2)])


def test_length_must_be_tokens() -> None:
    with pytest.raises(ValidationError):
        CandidateRecord(index=0, answer="x", length=-1)
    with pytest.raises(ValidationError):
        CandidateRecord.model_validate({"index": 0, "answer": "x", "length": 1.5})


def test_selection_is_independent_of_candidate_order() -> None:
    cands = [
        _c(0, "Paris", -1.0, 90),
        _c(1, "The capital is Paris", -0.8, 120),
        _c(2, "Rome", -0.1, 10),
        _c(3, "paris", None, 40),
    ]
    a = select_winner(cands)
    b = select_winner(list(reversed(cands)))
    assert a.winner == b.winner == 0
    assert a.clusters == b.clusters


def test_selection_model_round_trips() -> None:
    sel = select_winner([_c(0, "a b", -1.0, 3), _c(1, "c d", None, 4)])
    again = Selection.model_validate_json(sel.model_dump_json())
    assert again == sel
