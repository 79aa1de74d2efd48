"""Self-consistency over SRLM candidates' final answers (SPEC §6 step 3).

Pure functions: answers in, clusters out. The rules, with a table of tricky cases,
are in docs/selection.md; the short form:

- Two answers are **equal** when their :func:`normalize_answer` forms are equal.
- A shorter answer **matches inside** a longer one when its tokens appear as a
  contiguous run of the longer one's tokens (word boundaries, so ``5`` is not inside
  ``5.5`` and ``cat`` not inside ``category``) — except that a short answer (at most
  two characters, e.g. a multiple-choice letter) matches only exactly, and a number
  matches inside a longer answer only when that answer names no other number.
- Clusters grow around **core** answers (those that contain no other answer). A
  longer answer joins the one core it contains; one that contains two or more
  different cores (``either 42 or 99``) is a hedge and forms its own cluster.
- An answer that **looks like code** (:func:`looks_like_code`: a call of a REPL
  function, a ``def``/``import``/assignment line, a signature with ``->``) is not a
  vote: a trajectory that submitted its own code (``llm_query('...') -> str``) did
  not answer. It is left out unless every answer looks like code.

Everything depends only on the multiset of answers, never on their order.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation

from lmrepl.records import Cluster

__all__ = [
    "SHORT_ANSWER_CHARS",
    "Cluster",
    "cluster_answers",
    "contains_tokens",
    "looks_like_code",
    "matches_inside",
    "normalize_answer",
    "number_tokens",
    "surviving_members",
]

# Answers this short (after normalisation) only ever match exactly: "a" must not
# join "a car", "no" must not join "no idea", "ok" not "ok, but".
SHORT_ANSWER_CHARS = 2

# Decimal exponents beyond this stay in scientific form, so "1e999999" cannot expand
# into a million-digit string.
_MAX_PLAIN_EXPONENT = 40

_PREFIX_RE = re.compile(
    r"^(?:"
    r"(?:so\s*,?\s*)?(?:the\s+)?(?:final\s+|correct\s+|short\s+)?answer"
    r"\s+(?:is|was|would\s+be)(?:\s*[:=])?"
    r"|(?:final\s+|correct\s+|short\s+)?answer\s*[:=]"
    r"|final\s*[:=]"
    r"|result\s*[:=]"
    r")\s*",
)
_TRAIL_PUNCT = ".,;:!?。，；：！？…"
_PAIRS = {'"': '"', "'": "'", "(": ")", "[": "]", "{": "}", "<": ">"}
# Markdown emphasis and inline code wrap with runs of one character ("**x**", "``x``").
_RUN_WRAP_RE = re.compile(r"^(?P<run>(?P<ch>[*_`~])(?P=ch)*)(?P<body>[^*_`~].*?)(?P=run)$", re.S)
_QUOTE_CHARS = str.maketrans({"“": '"', "”": '"', "„": '"', "‘": "'", "’": "'", "‚": "'"})
_OPTION_RE = re.compile(r"^(?:(?:option|choice)\s+)?\(?\s*([a-z])\s*[).:]?$")
_MINUS_RE = re.compile(r"[\u2212\u2012\u2013\u2014]")  # typographic minus and dashes

# A number standing on its own: not glued to letters or to another number through
# "-", ":", "/", "." (dates, times, versions and ranges stay as written, on both sides).
_NUM_RE = re.compile(
    r"(?<!\w)(?<!\d[-.,:/])"
    r"(?P<sign>[-+])?"
    r"(?P<num>(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:e[-+]?\d+)?|\.\d+(?:e[-+]?\d+)?)"
    r"(?:\s*(?P<pct>%|percent\b|per\s+cent\b))?"
    r"(?![\w%])(?![-.,:/]\d)"
)
# A currency sign directly before a number ("$5", "$-5", "€.5") is dropped.
_CUR_RE = re.compile(r"[$€£¥₹](?=[-+]?\.?\d)")
_TOKEN_RE = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)*(?:e[-+]?\d+)?(?!\w)|\w+|[^\w\s]")
_NUMBER_TOKEN_RE = re.compile(r"-?\d+(?:\.\d+)?(?:e[-+]?\d+)?")


# What code, never an answer, looks like. Each pattern is linear: fixed words, single
# character classes and no nested repetition, as answers are untrusted model text.
# A call of a function of the REPL (or print), anywhere: llm_query("..."), FINAL(x).
_REPL_CALL_RE = re.compile(
    r"(?<![\w.])(?:llm_query|llm_query_batched|rlm_query|rlm_query_batched|FINAL|FINAL_VAR"
    r"|SHOW_VARS|print)\s*\("
)
# A statement that starts a line: def, class, import, from-import.
_STATEMENT_RE = re.compile(
    r"^[ \t]*(?:(?:async[ \t]+)?def[ \t]+\w+[ \t]*\(|class[ \t]+\w+[ \t]*[(:]"
    r"|import[ \t]+[A-Za-z_][\w.]*[ \t]*(?:,|as\b|$)"
    r"|from[ \t]+[A-Za-z_.][\w.]*[ \t]+import[ \t]+[\w*(])",
    re.M,
)
# An assignment: target, operator, then its right side (checked by _CODE_VALUE_RE).
_ASSIGN_RE = re.compile(
    r"^[ \t]*[A-Za-z_]\w*(?:\.[A-Za-z_]\w*|\[[^\]\n]*\])*[ \t]*(?:[-+*/%]|//)?=(?!=)"
    r"(?P<rhs>[^\n]*)",
    re.M,
)
# A right side that is code: an attribute or a subscript of a name, a comprehension,
# or a call of a name of 3+ characters with a word or a string among its arguments
# (``sum(counts)``, ``len(lines)``), never ``x = 5``, ``y = 2x + 3`` or ``y = sin(x)``.
_CODE_VALUE_RE = re.compile(
    r"\b[A-Za-z_]\w*(?:\.[A-Za-z_]\w|\[)|\bfor\b.*\bin\b"
    r"|\b[A-Za-z_]\w{2,}\((?:[^()\n\w\"']|\b\w\b)*(?:[A-Za-z_]\w|[\"'])"
)
# A signature: name(args) -> type, alone on its line.
_TYPE = r"[A-Za-z_][\w.]*(?:\[[^\]\n]*\])?"
_SIGNATURE_RE = re.compile(
    rf"^[ \t]*[A-Za-z_][\w.]*\([^()\n]*\)[ \t]*->[ \t]*{_TYPE}(?:[ \t]*\|[ \t]*{_TYPE})*[ \t:]*$",
    re.M,
)
# The whole answer is an expression on a REPL variable or a dotted method call:
# context.count('ERROR'), context[:500], len(context), re.findall(...).
_EXPRESSION_RE = re.compile(
    r"^(?:(?:context|history)\s*[.\[]|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+\("
    r"|len\(\s*(?:context|history)\b)"
)
# Only the head of a long answer is examined: code answers are short, and this bounds
# the work on a submission that is a whole document.
_CODE_CHECK_CHARS = 4000


def looks_like_code(text: str | None) -> bool:
    """Whether ``text`` looks like code rather than an answer (so it is not a vote).

    Code: a call of a REPL function or ``print`` anywhere (``llm_query("x") -> str``,
    ``FINAL(n)``), a line that starts with ``def``/``class``/``import``/``from … import``,
    an assignment whose right side calls, subscripts or reads an attribute
    (``n = context.count("x")``), a signature ``name(args) -> type``, or a whole answer
    that is an expression on ``context``/``history`` or a dotted method call
    (``context.count('ERROR')``, ``context[:500]``). Not code: numbers, words,
    ``f(x) = 2x``, ``x = 5``, ``y = sin(x)``, ``a -> b -> c`` in prose, ``Node.js (v20)``.
    """
    if not text:
        return False
    body = text[:_CODE_CHECK_CHARS].strip().strip("`").strip()
    if body.startswith(("python\n", "repl\n", "py\n")):  # a fenced block's language tag
        body = body.split("\n", 1)[1].strip()
    if (
        _REPL_CALL_RE.search(body)
        or _STATEMENT_RE.search(body)
        or _SIGNATURE_RE.search(body)
        or _EXPRESSION_RE.match(body)
    ):
        return True
    return any(_CODE_VALUE_RE.search(m.group("rhs")) for m in _ASSIGN_RE.finditer(body))


def _canonical_number(raw: str) -> str:
    try:
        value = Decimal(raw.replace(",", ""))
    except InvalidOperation:
        return raw
    if value.is_zero():
        return "0"  # also folds -0 and 0.000 into 0
    value = value.normalize()
    exponent = value.as_tuple().exponent
    if isinstance(exponent, int) and abs(exponent) > _MAX_PLAIN_EXPONENT:
        return f"{value:e}".lower()
    text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _number_sub(match: re.Match[str]) -> str:
    text = _canonical_number(match.group("num"))
    if match.group("sign") == "-" and text != "0":
        text = "-" + text
    return text


def _strip_wrappers(text: str) -> str:
    """Remove one layer of prefix, wrapping quotes/brackets or trailing punctuation."""
    text = text.strip()
    prefixed = _PREFIX_RE.sub("", text, count=1)
    if prefixed != text and prefixed:
        return prefixed
    if len(text) >= 2 and _PAIRS.get(text[0]) == text[-1] and _balanced_wrap(text):
        return text[1:-1]
    run = _RUN_WRAP_RE.match(text)
    if run is not None and run.group("ch") not in run.group("body"):
        return run.group("body")
    trimmed = text.rstrip(_TRAIL_PUNCT)
    return trimmed if trimmed else text


def _balanced_wrap(text: str) -> bool:
    """True when text[0] and text[-1] are one pair, not "(a) or (b)"."""
    opener, closer = text[0], text[-1]
    if opener == closer:
        # Symmetric quotes: the inner text must not use the same quote again.
        return opener not in text[1:-1]
    depth = 0
    for i, ch in enumerate(text):
        if ch == opener:
            depth += 1
        elif ch == closer:
            depth -= 1
            if depth == 0 and i != len(text) - 1:
                return False
    return depth == 0


def normalize_answer(text: str | None) -> str:
    """Return the comparison form of an answer ("" for no answer).

    Case-folded (NFKC first), whitespace collapsed, typographic quotes and minus signs
    unified, "the answer is"/"answer:"-style prefixes, wrapping quotes, brackets,
    backticks and markdown emphasis and trailing punctuation removed (repeatedly, in
    any nesting), numbers canonicalised (``1,000`` = ``1000`` = ``1000.0`` = ``1e3``,
    ``-0`` = ``0``; a currency sign before a number and a percent sign or word after
    it are dropped consistently, so ``$5`` = ``5`` and ``50%`` = ``50 percent`` = ``50``),
    and a lone option letter in any dress (``(B)``, ``B.``, ``b)``, ``option B``)
    reduced to the letter ``b``.
    """
    if not text:
        return ""
    out = unicodedata.normalize("NFKC", str(text)).translate(_QUOTE_CHARS)
    out = _MINUS_RE.sub("-", out).casefold()
    out = " ".join(out.split())
    for _ in range(64):  # bounded: a pathological nesting must not loop for long
        nxt = " ".join(_strip_wrappers(out).split())
        if nxt == out:
            break
        out = nxt
    out = _CUR_RE.sub("", out)
    out = _NUM_RE.sub(_number_sub, out)
    option = _OPTION_RE.match(out)
    if option is not None:
        return option.group(1)
    # Punctuation alone ("?", "...", "-") says nothing: treat it as no answer.
    return out if any(ch.isalnum() for ch in out) else ""


@functools.lru_cache(maxsize=512)
def _shape(normalized: str) -> tuple[str, int, frozenset[str], bool]:
    """Tokens of a normalised answer, cached: tokenising dominates clustering time.

    Returns the tokens joined by single spaces (tokens never contain whitespace, so a
    contiguous run of tokens is exactly a space-delimited substring), the token count,
    the set of number tokens, and whether every token is a number.
    """
    tokens = _TOKEN_RE.findall(normalized)
    numbers = frozenset(t for t in tokens if _NUMBER_TOKEN_RE.fullmatch(t))
    all_numeric = bool(tokens) and all(_NUMBER_TOKEN_RE.fullmatch(t) for t in tokens)
    return " ".join(tokens), len(tokens), numbers, all_numeric


def matches_inside(short: str, long: str) -> bool:
    """Whether normalised answer ``short`` appears inside the longer ``long``.

    Word-boundary containment with the two exceptions of SPEC §6 step 3: short
    non-numeric answers (≤ ``SHORT_ANSWER_CHARS`` characters) only match exactly, and a
    number (of any length) matches only an answer in which it is the only number ("42"
    joins "42 apples" but not "42 of 99"). Equal strings are not "inside" one another.
    """
    if not short or short == long:
        return False
    short_joined, short_n, short_nums, short_numeric = _shape(short)
    long_joined, long_n, long_nums, _ = _shape(long)
    if short_n >= long_n or f" {short_joined} " not in f" {long_joined} ":
        return False
    if short_numeric:
        # Numbers are exempt from the length rule ("42" joins "42 apples") but the
        # longer answer must not name any other number ("42 or 99", "42 of 100").
        return long_nums == short_nums
    return len(short) > SHORT_ANSWER_CHARS


def contains_tokens(needle: str, haystack: str) -> bool:
    """Whether normalised ``needle`` occurs in normalised ``haystack`` on word boundaries.

    Plain containment of a contiguous run of tokens (``25`` is in ``errors: 25 of 1500``
    but not in ``250`` or ``2.5``), equality included and without the clustering
    exceptions of :func:`matches_inside`: grounding asks "was this value shown?", not
    "do these two answers agree?". ``haystack`` may be long (a cell's output), so it is
    tokenised without the cache.
    """
    if not needle or not haystack:
        return False
    joined = _shape(needle)[0]
    return f" {joined} " in f" {' '.join(_TOKEN_RE.findall(haystack))} "


def number_tokens(normalized: str) -> list[str]:
    """The number tokens of a normalised answer (``-5``, ``2.5``), sorted, each once."""
    return sorted(_shape(normalized)[2])


def _representative(originals: Sequence[str]) -> str:
    """Most frequent original spelling, then the shortest, then alphabetical."""
    counts = Counter(o.strip() for o in originals)
    return min(counts, key=lambda o: (-counts[o], len(o), o))


def cluster_answers(answers: Sequence[str | None]) -> list[Cluster]:
    """Group answers per SPEC §6 step 3; ``None``/empty answers are left out.

    Answers that :func:`looks_like_code` are left out too, unless every non-empty
    answer does (then they are all voted on: a search must still pick one). Clusters
    come sorted by votes (descending), then by normalised answer, so the result does
    not depend on the order of the input beyond the member indices.
    """
    forms_of = [(i, normalize_answer(raw)) for i, raw in enumerate(answers)]
    forms_of = [(i, form) for i, form in forms_of if form]
    prose = [(i, form) for i, form in forms_of if not looks_like_code(answers[i])]
    by_form: dict[str, list[int]] = {}
    for i, form in prose or forms_of:
        by_form.setdefault(form, []).append(i)
    forms = sorted(by_form)
    inside = {f: [g for g in forms if matches_inside(g, f)] for f in forms}

    cores_of: dict[str, set[str]] = {}

    def cores(form: str) -> set[str]:
        # Cores reached through containment; containment strictly shortens the token
        # list, so this recursion ends.
        if form not in cores_of:
            found: set[str] = set()
            for g in inside[form]:
                found |= cores(g) if inside[g] else {g}
            cores_of[form] = found
        return cores_of[form]

    groups: dict[str, list[str]] = {}
    for form in forms:
        reached = cores(form)
        # No core inside: a core itself. Two or more: a hedge, alone.
        key = next(iter(reached)) if len(reached) == 1 else form
        groups.setdefault(key, []).append(form)

    clusters: list[Cluster] = []
    for key, members_forms in groups.items():
        members = sorted(i for f in members_forms for i in by_form[f])
        originals = [answers[i] or "" for i in by_form[key]]
        clusters.append(
            Cluster(
                answer=_representative(originals),
                normalized=key,
                members=members,
                votes=len(members),
            )
        )
    clusters.sort(key=lambda c: (-c.votes, c.normalized))
    return clusters


def surviving_members(clusters: Sequence[Cluster]) -> list[int]:
    """Members of the largest cluster(s); tied clusters pool their members (sorted)."""
    if not clusters:
        return []
    top = max(c.votes for c in clusters)
    return sorted(i for c in clusters if c.votes == top for i in c.members)
