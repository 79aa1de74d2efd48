"""Seeded long-context tasks with exact answers: needles, counts and pairs.

Every generator takes ``(length_chars, seed)`` and returns one :class:`Task` whose
context is within 5 % of ``length_chars`` (for lengths of 2,000 characters and more),
byte-identical for the same arguments, and built from a ``random.Random`` seeded by the
family, the length and the seed only (no external data). The answer follows from the
context alone; :func:`lmrepl.eval.scoring.score` checks an answer exactly.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict

from lmrepl import checks
from lmrepl.errors import ConfigurationError

__all__ = ["DEFAULT_SUITE", "FAMILIES", "MIN_LENGTH", "Suite", "Task", "make_suite"]

#: The shortest context a generator accepts, in characters.
MIN_LENGTH = 200

NAMES = (
    "Amber", "Basalt", "Cobalt", "Dune", "Ember", "Fjord", "Garnet", "Harbor", "Indigo",
    "Juniper", "Krypton", "Lumen", "Marble", "Nimbus", "Onyx", "Pewter", "Quartz", "Raven",
    "Saffron", "Tundra", "Umber", "Violet", "Willow", "Zephyr",
)  # fmt: skip
_WHO = (
    "The night clerk", "A courier", "The archivist", "The duty officer", "An inspector",
    "The quartermaster", "A junior analyst", "The site manager", "The auditor", "A guard",
)  # fmt: skip
_DID = (
    "filed the weekly report", "checked the ventilation logs", "sorted the incoming mail",
    "replaced a flickering lamp", "signed the visitor ledger", "locked the side entrance",
    "reviewed the shift rota", "counted the spare keys", "labelled the storage crates",
    "repaired a loose hinge", "read the maintenance notes", "swept the loading bay",
)  # fmt: skip
_WHERE = (
    "in the east wing", "near the north stairwell", "beside the old boiler room",
    "on the second floor", "at the front desk", "in archive room {n}", "behind dock {n}",
    "outside vault {name}", "next to vault {name}", "in corridor {n}",
)  # fmt: skip
_WHEN = (
    "before noon", "after the evening bell", "at {h}:{m:02d}", "during the storm",
    "on Tuesday", "late on Friday", "at dawn", "while it rained",
)  # fmt: skip
CITIES = ("Oslo", "Lima", "Porto", "Quito", "Turin", "Dakar", "Hanoi", "Perth")
ACTIONS = ("buy", "refund", "login", "logout", "upgrade", "cancel")
TEAMS = ("red", "blue", "green", "amber", "teal", "grey")


class Task(BaseModel):
    """One question about one generated context, with its exact answer.

    ``length`` is the requested context length in characters (the context is within 5 %
    of it); ``truth`` is the answer (a list for answers with several parts).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str
    family: str
    context: str
    question: str
    truth: str | list[str]
    length: int
    seed: int


def _rng(family: str, length: int, seed: int) -> random.Random:
    """The task's only source of randomness (a str seed hashes the same in every process)."""
    return random.Random(f"{family}/{length}/{seed}")


def _fill(rng: random.Random, budget: int, make: Callable[[random.Random], str]) -> list[str]:
    """Lines from ``make`` while they fit in ``budget`` characters (newlines counted)."""
    lines: list[str] = []
    total = 0
    while True:
        line = make(rng)
        cost = len(line) + (1 if lines else 0)
        if total + cost > budget:
            return lines
        lines.append(line)
        total += cost


def _sentence(rng: random.Random) -> str:
    """A filler sentence; its numbers have at most 3 digits, so no code is ever faked."""
    where = rng.choice(_WHERE).format(n=rng.randint(1, 999), name=rng.choice(NAMES))
    when = rng.choice(_WHEN).format(h=rng.randint(0, 23), m=rng.randint(0, 59))
    return f"{rng.choice(_WHO)} {rng.choice(_DID)} {where} {when}."


def _needle(name: str, code: str) -> str:
    return f"The access code for vault {name} is {code}."


def _with_needles(rng: random.Random, length: int, needles: Sequence[str]) -> str:
    """Filler sentences with each needle inserted at a seeded position."""
    budget = length - sum(len(n) + 1 for n in needles)
    lines = _fill(rng, max(budget, 0), _sentence)
    for needle in needles:
        lines.insert(rng.randint(0, len(lines)), needle)
    return "\n".join(lines)


def _code_question(name: str) -> str:
    return f"What is the access code for vault {name}? Answer with the 7-digit number."


def make_niah(length_chars: int, seed: int) -> Task:
    """Needle in a haystack: one vault's 7-digit access code among filler sentences."""
    rng = _rng("niah", length_chars, seed)
    name = rng.choice(NAMES)
    code = str(rng.randrange(1_000_000, 10_000_000))
    context = _with_needles(rng, length_chars, [_needle(name, code)])
    return _task("niah", length_chars, seed, context, _code_question(name), code)


def make_niah_multi(length_chars: int, seed: int, keys: int = 3) -> Task:
    """Several vaults, each with a code; the question asks for one of them."""
    rng = _rng("niah-multi", length_chars, seed)
    names = rng.sample(NAMES, keys)
    codes = [str(c) for c in rng.sample(range(1_000_000, 10_000_000), keys)]
    target = rng.randrange(keys)
    needles = [_needle(n, c) for n, c in zip(names, codes, strict=True)]
    context = _with_needles(rng, length_chars, needles)
    question = _code_question(names[target])
    return _task("niah-multi", length_chars, seed, context, question, codes[target])


def _record(rng: random.Random) -> tuple[str, str, str, int]:
    uid = f"u{rng.randrange(10_000, 100_000)}"
    return uid, rng.choice(CITIES), rng.choice(ACTIONS), rng.randint(1, 500)


def make_count(length_chars: int, seed: int) -> Task:
    """Aggregation over records: how many have an action, or the total amount of a city."""
    rng = _rng("count", length_chars, seed)
    records: list[tuple[str, str, str, int]] = []

    def line(r: random.Random) -> str:
        records.append(_record(r))
        uid, city, action, amount = records[-1]
        return f"user={uid} city={city} action={action} amount={amount}"

    lines = _fill(rng, length_chars, line)
    records = records[: len(lines)]  # the last record generated did not fit
    if rng.random() < 0.5:
        action = rng.choice(ACTIONS)
        truth = sum(1 for r in records if r[2] == action)
        question = f"How many records have action={action}? Answer with a number."
    else:
        city = rng.choice(CITIES)
        truth = sum(r[3] for r in records if r[1] == city)
        question = (
            f"What is the total amount of the records with city={city}? Answer with a number."
        )
    return _task("count", length_chars, seed, "\n".join(lines), question, str(truth))


def make_pairs(length_chars: int, seed: int) -> Task:
    """Records with unique badge numbers except for one pair; which two users share one?"""
    rng = _rng("pairs", length_chars, seed)
    users: list[int] = []
    badges: list[int] = []
    teams: list[str] = []

    def fmt(i: int) -> str:
        return f"user=u{users[i]} team={teams[i]} badge={badges[i]}"

    taken: tuple[set[int], set[int]] = (set(), set())

    def line(r: random.Random) -> str:
        users.append(_fresh(r, taken[0], 10_000, 100_000))
        badges.append(_fresh(r, taken[1], 100_000, 1_000_000))
        teams.append(r.choice(TEAMS))
        return fmt(len(users) - 1)

    lines = _fill(rng, length_chars, line)
    while len(lines) < 2:  # a context too short for two records still gets two
        lines.append(line(rng))
    first, second = sorted(rng.sample(range(len(lines)), 2))
    badges[second] = badges[first]
    lines[second] = fmt(second)
    question = (
        "Exactly two users in these records have the same badge number. "
        "Which two user ids are they? Answer with the two ids."
    )
    truth = [f"u{users[first]}", f"u{users[second]}"]
    return _task("pairs", length_chars, seed, "\n".join(lines), question, truth)


def _fresh(rng: random.Random, taken: set[int], low: int, high: int) -> int:
    """A number in ``[low, high)`` not yet ``taken``, which it joins."""
    if len(taken) >= high - low:
        raise ConfigurationError("the context is too long for unique ids; use a shorter one")
    while (value := rng.randrange(low, high)) in taken:
        pass
    taken.add(value)
    return value


def _task(
    family: str, length: int, seed: int, context: str, question: str, truth: str | list[str]
) -> Task:
    return Task(
        id=f"{family}-{length}-s{seed}",
        family=family,
        context=context,
        question=question,
        truth=truth,
        length=length,
        seed=seed,
    )


#: Family name → generator ``(length_chars, seed) -> Task``.
FAMILIES: dict[str, Callable[[int, int], Task]] = {
    "niah": make_niah,
    "niah-multi": make_niah_multi,
    "count": make_count,
    "pairs": make_pairs,
}


@dataclass(frozen=True)
class Suite:
    """A grid of tasks: every family at every length with every seed."""

    families: tuple[str, ...]
    lengths: tuple[int, ...]
    seeds: tuple[int, ...]

    def tasks(self) -> list[Task]:
        """The suite's tasks, shortest contexts first."""
        return make_suite(self.families, self.lengths, self.seeds)


#: The default small suite: 4 families × 2 lengths × 2 seeds = 16 tasks. The short
#: contexts fit an 8,192-token window; the long ones do not.
DEFAULT_SUITE = Suite(
    families=("niah", "niah-multi", "count", "pairs"), lengths=(6_000, 60_000), seeds=(0, 1)
)


def make_suite(
    families: Sequence[str] | None = None,
    lengths: Sequence[int] | None = None,
    seeds: Sequence[int] | None = None,
) -> list[Task]:
    """Tasks for every (length, family, seed); each argument defaults to the default suite's.

    Raises ``ConfigurationError`` for an unknown family, a length under ``MIN_LENGTH``
    or a seed that is not an integer.
    """
    fams = list(DEFAULT_SUITE.families if families is None else families)
    lens = list(DEFAULT_SUITE.lengths if lengths is None else lengths)
    seed_list = list(DEFAULT_SUITE.seeds if seeds is None else seeds)
    if not fams or not lens or not seed_list:
        raise ConfigurationError("families, lengths and seeds must each name at least one")
    checks.check_names("family", fams, FAMILIES)
    for n in lens:
        checks.check("a context length", n, checks.integer(MIN_LENGTH))
    for s in seed_list:
        checks.check("a seed", s, checks.integer(0))
    return [FAMILIES[f](n, s) for n in sorted(set(lens)) for f in fams for s in seed_list]
