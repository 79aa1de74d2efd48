"""SRLM scoring and winner selection (SPEC §6 steps 4–5).

VC(p) = Σ over steps of log(c/100), where c is the step's last reported confidence.
A step that reported nothing gets the arithmetic **mean of the reported confidences**
(then the log is taken): SPEC §6 gives the step "the mean of the trajectory's
reported steps", i.e. a confidence value, so the gap is filled as if the model had
said its typical confidence. (The mean of the logs would punish a gap harder than any
reported value near the mean, by Jensen's inequality.) No report at all means VC is
unknown (``None``), never 0, which would look like perfect certainty.

A confidence of 0 is clamped to ``MIN_CONFIDENCE`` (0.1 %) so log stays finite:
such a step costs log(0.001) ≈ −6.9, ten times a 50 % step, while a trajectory with
one zero can still be compared with another.

Len(p) is output tokens of the whole trace, and the joint score VC·Len (≤ 0) is
higher the better. Everything here is in tokens; seconds never enter a comparison.

Answers that look like code (``lmrepl.selection.looks_like_code``) are not votes, and
:func:`search_warnings` says so in the record, as it says when confidence elicitation
was on but no confidence could be read.

Between clusters tied on votes, one with a **grounded** member (its answer was computed
or seen in output, ``lmrepl.grounding``) beats those without, before VC·Len and before
the shortest trace: otherwise, with every cluster at one vote, a blind guess in a short
trace wins.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from lmrepl.records import CandidateRecord, Cluster, SearchRecord
from lmrepl.selection import (
    cluster_answers,
    looks_like_code,
    normalize_answer,
    surviving_members,
)

__all__ = [
    "MIN_CONFIDENCE",
    "Selection",
    "joint_score",
    "search_warnings",
    "select_winner",
    "vc_score",
]

MIN_CONFIDENCE = 0.1  # percent; the floor that keeps log(c/100) finite

Reason = Literal["grounded", "vc_len", "shortest", "only", "none"]


def _clean(value: float | None) -> float | None:
    if value is None:
        return None
    value = float(value)
    if not math.isfinite(value):
        return None
    return min(100.0, max(0.0, value))


def vc_score(confidences: Sequence[float | None]) -> float | None:
    """Σ log(c/100) over the steps; gaps get the mean reported confidence.

    ``confidences`` has one entry per step (``None`` where the step reported none).
    Values are clamped to 0–100 and non-finite values count as missing. Returns
    ``None`` when no step reported a confidence.
    """
    cleaned = [_clean(c) for c in confidences]
    reported = [c for c in cleaned if c is not None]
    if not reported:
        return None
    mean = sum(reported) / len(reported)
    total = 0.0
    for c in cleaned:
        value = mean if c is None else c
        total += math.log(max(value, MIN_CONFIDENCE) / 100.0)
    # log(1) is exactly 0, but make sure a sum of zeros is not "-0.0".
    return total + 0.0


def joint_score(vc: float | None, length: int) -> float | None:
    """VC·Len, or ``None`` when VC is unknown.

    ``length`` (output tokens) is floored at 1: a trace whose length is unknown (0)
    must not get a perfect score of 0 just for that.
    """
    if vc is None:
        return None
    return vc * max(int(length), 1)


class Selection(BaseModel):
    """The outcome of :func:`select_winner`.

    ``clusters`` hold candidate indices as members; ``survivors`` are the candidates
    of the largest cluster(s); ``scores`` maps every candidate index to its VC·Len
    (``None`` when unknown or not a finished candidate); ``reason`` says which rule
    picked the winner: ``grounded`` (of the clusters tied on votes only one had a
    grounded member), ``vc_len`` (best VC·Len among survivors), ``shortest`` (no
    survivor has a VC), ``only`` (a single survivor) or ``none`` (no usable answer).
    """

    model_config = ConfigDict(frozen=True)

    winner: int | None
    clusters: list[Cluster] = Field(default_factory=list)
    survivors: list[int] = Field(default_factory=list)
    scores: dict[int, float | None] = Field(default_factory=dict)
    reason: Reason = "none"

    def cluster_of(self, index: int) -> int | None:
        """Position in ``clusters`` of the cluster holding candidate ``index``."""
        for pos, cluster in enumerate(self.clusters):
            if index in cluster.members:
                return pos
        return None


def _usable(c: CandidateRecord) -> bool:
    return c.status == "done" and bool(normalize_answer(c.answer))


def _grounded_pool(
    clusters: Sequence[Cluster], by_index: dict[int, CandidateRecord]
) -> tuple[list[CandidateRecord], bool]:
    """The survivors left after the grounding tie-break, and whether it alone decided.

    Among the clusters with the most votes, those with a grounded member are kept when
    some but not all have one; the tie-break "decided" when one cluster is left of several.
    """
    top = max(c.votes for c in clusters)
    tied = [c for c in clusters if c.votes == top]
    grounded = [c for c in tied if any(by_index[m].grounded for m in c.members)]
    kept = grounded if grounded and len(grounded) < len(tied) else tied
    pool = sorted((by_index[m] for c in kept for m in c.members), key=lambda c: c.index)
    return pool, len(tied) > 1 and len(kept) == 1


def select_winner(
    candidates: Sequence[CandidateRecord], *, use_confidence: bool = True
) -> Selection:
    """Pick the SRLM winner (SPEC §6 steps 3–4).

    Finished candidates with a non-empty answer are clustered; the largest cluster(s)
    survive, ties pooled. When several clusters tie, those with a grounded member
    (``CandidateRecord.grounded``) win over those without. Among the remaining survivors
    with a VC the highest VC·Len wins; if none has one (or ``use_confidence`` is false)
    the shortest trace in tokens wins. Ties: higher score, then fewer tokens, then the
    lower index. Failed and cancelled candidates are never clustered nor chosen.
    """
    by_index = {c.index: c for c in candidates}
    if len(by_index) != len(candidates):
        raise ValueError("candidate indices must be unique")
    usable = sorted((c for c in candidates if _usable(c)), key=lambda c: c.index)
    raw = cluster_answers([c.answer for c in usable])
    # cluster_answers numbers its input; map positions back to candidate indices.
    clusters = [c.model_copy(update={"members": [usable[i].index for i in c.members]}) for c in raw]
    survivors = surviving_members(clusters)
    scores: dict[int, float | None] = {}
    for c in sorted(candidates, key=lambda c: c.index):
        live = use_confidence and c.status == "done"
        scores[c.index] = joint_score(c.vc, c.length) if live else None

    if not survivors:
        return Selection(winner=None, clusters=clusters, scores=scores, reason="none")

    pool, by_grounding = _grounded_pool(clusters, by_index)
    scored = [c for c in pool if scores[c.index] is not None]
    reason: Reason
    if scored:

        def rank(c: CandidateRecord) -> tuple[float, int, int]:
            score = scores[c.index]
            assert score is not None  # filtered above
            return (-score, c.length, c.index)

        winner = min(scored, key=rank).index
        reason = "vc_len"
    else:
        winner = min(pool, key=lambda c: (c.length, c.index)).index
        reason = "shortest"
    if by_grounding:
        reason = "grounded"
    elif len(pool) == 1:
        reason = "only"
    return Selection(
        winner=winner, clusters=clusters, survivors=survivors, scores=scores, reason=reason
    )


def _short(text: str, limit: int = 80) -> str:
    line = " ".join(text.split())
    return repr(line if len(line) <= limit else line[: limit - 1] + "…")


def _names(indices: Sequence[int]) -> str:
    return ("candidate " if len(indices) == 1 else "candidates ") + ", ".join(map(str, indices))


def search_warnings(record: SearchRecord, confidence_elicitation: bool) -> list[str]:
    """What weakened a finished search's selection, in words (for ``record.warnings``).

    - A finished answer that looks like code was not counted as a vote (one warning
      per candidate), or every answer looked like code and they were voted on anyway.
    - ``confidence_elicitation`` was on but some (or all) candidates that ran steps
      reported no parsable ``{"confidence": N}``: their VC is unknown, and with none at
      all the winner was chosen without VC·Len.

    Warnings already in ``record.warnings`` are not returned again.
    """
    out: list[str] = []
    clustered = {m for c in record.clusters for m in c.members}
    usable = [c for c in record.candidates if _usable(c)]
    code = [c for c in usable if looks_like_code(c.answer)]
    if code and all(c.index in clustered for c in code):
        out.append(
            f"every answer looks like code ({_names([c.index for c in code])}); "
            "they were voted on anyway"
        )
    for c in code:
        if c.index not in clustered:
            out.append(
                f"candidate {c.index}'s answer {_short(c.answer or '')} looks like code, "
                "not an answer: it was not counted as a vote"
            )
    ran = [c for c in record.candidates if c.steps]
    silent = [c.index for c in ran if all(s.confidence is None for s in c.steps)]
    if confidence_elicitation and silent:
        if len(silent) == len(ran):
            out.append(
                "confidence_elicitation was on but no step of any candidate reported a "
                'parsable {"confidence": N}: VC is unknown and VC·Len took no part in '
                f"the selection (selection_reason {record.selection_reason!r})"
            )
        else:
            out.append(
                f"confidence_elicitation was on but {_names(silent)} reported no parsable "
                '{"confidence": N}: their VC is unknown, so only the others can win on VC·Len'
            )
    return [w for w in out if w not in record.warnings]
