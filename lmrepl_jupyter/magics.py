"""``SRLMMagics``: the ``%%srlm``, ``%%rlm`` and ``%lmrepl`` magics.

Error policy (also in docs/trajectory-schema.md and ``%%srlm?``). Every message starts
with the magic's name (``%%srlm: ``) and names no exception class:

- anything wrong with what was typed — options, two options that contradict each other,
  the variable, an empty question, a configuration the engine rejects at construction —
  is a ``UsageError`` with one line that says what is accepted;
- a run that fails (unreachable server, every candidate failed) prints one line to
  stderr and nothing else: the cell has no ``Out[]`` value, and ``-o NAME`` still
  stores the failed result, with whatever the run gathered;
- a run a limit stopped prints one stderr line and returns its partial result;
- an interrupt cancels the run and returns the partial result with status ``cancelled``.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, Literal

from IPython.core.error import UsageError
from IPython.core.magic import Magics, line_magic, magics_class
from traitlets import Bool, Dict, Enum, Float, Int, TraitError, Unicode, validate

from lmrepl import checks
from lmrepl.checks import Rule
from lmrepl.config import ARGUMENTS
from lmrepl.credentials import mask_secrets
from lmrepl.errors import ConfigurationError
from lmrepl.html import RenderOptions
from lmrepl.live import LiveState
from lmrepl.repl import settings
from lmrepl_jupyter.arguments import (
    cell_magic,
    cell_magic_arguments,
    common_arguments,
    parse_line,
    search_arguments,
)
from lmrepl_jupyter.driver import NullView, View, message_of, run_with_view, settle
from lmrepl_jupyter.options import RunSpec, build_spec, model_label, to_plain
from lmrepl_jupyter.result import SRLMResult
from lmrepl_jupyter.settings_view import settings_lines

EngineFactory = Callable[[str, dict[str, Any]], Any]


def default_engine_factory(kind: str, kwargs: dict[str, Any]) -> Any:
    """Build ``lmrepl.SRLM`` (kind ``srlm``) or ``lmrepl.RLM`` (kind ``rlm``)."""
    from lmrepl.rlm import RLM
    from lmrepl.srlm import SRLM

    return SRLM(**kwargs) if kind == "srlm" else RLM(**kwargs)


def _widgets_usable(shell: Any) -> bool:
    # Widgets need a kernel with a front end; terminal IPython has no comm channel.
    if getattr(shell, "kernel", None) is None:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


#: What each checked trait must be: the engine argument's own rule where there is one,
#: so %config and the engine agree; the display traits' rules are the REPL's.
_TRAIT_RULES: dict[str, Rule] = {
    **{n: ARGUMENTS[n] for n in ("n_candidates", "candidate_parallel", "max_iterations")},
    **{n: ARGUMENTS[n] for n in ("direct_threshold", "candidate_temperature")},
    "max_output_chars": checks.integer(1, optional=True),
    "panel_output_lines": checks.integer(1),
    "panel_output_chars": settings.COMMON["max_output_chars"],
    "refresh_interval": checks.seconds(),
}


@magics_class
class SRLMMagics(Magics):
    """Run RLM / SRLM searches over notebook variables, with a live candidate panel.

    The defaults here are the magics', not the API's: ``%%srlm`` runs K=3 candidates
    for at most 8 iterations where ``SRLM()`` runs one for 30. Each trait's help says
    why; ``%lmrepl`` prints every setting with where its value comes from.
    """

    backend = Unicode(
        "local",
        help="Model backend: local (embedded), openai, anthropic, replay. Magic default "
        "'local'; the API's default is 'openai' when OPENAI_API_KEY is set: a notebook "
        "cell never sends the notebook's data to a hosted model unless told to.",
    ).tag(config=True)
    backend_kwargs = Dict(
        help="Backend settings, e.g. {'model_name': ..., 'base_url': ..., 'api_key': ...}."
    ).tag(config=True)
    environment = Unicode(
        "kernel", help="REPL: kernel (ipykernel subprocess) or local. Same default as the API."
    ).tag(config=True)
    environment_kwargs = Dict(help="REPL settings, e.g. {'cell_timeout': 30}.").tag(config=True)
    n_candidates = Int(
        3,
        help="Candidate trajectories K of %%srlm. Magic default 3, API default 1 "
        "(SRLM(n_candidates=1) is one RLM trajectory): %%srlm is there to search, and 3 is "
        "the smallest K in which a majority can outvote one wrong candidate.",
    ).tag(config=True)
    candidate_parallel = Int(
        3,
        help="Candidates running at once (at most K). Magic default 3, API default 1: the "
        "default K=3 candidates run side by side, so the cell waits about as long as one.",
    ).tag(config=True)
    candidate_temperature = Float(
        0.7,
        allow_none=True,
        help="Sampling temperature of candidates (None: backend default). Magic default 0.7, "
        "API default None: candidates sampled alike tend to repeat each other, and a vote "
        "among copies decides nothing.",
    ).tag(config=True)
    confidence_elicitation = Bool(
        True,
        help='Ask for a {"confidence": N} line per step (VC scoring). Magic default True, '
        "API default False: %%srlm's selection (VC·Len) needs the confidences; without them "
        "the shortest trace wins.",
    ).tag(config=True)
    direct_threshold = Int(
        0,
        help="Contexts shorter than this many characters: one direct call. Same default as "
        "the API (0: always the REPL).",
    ).tag(config=True)
    max_iterations = Int(
        8,
        help="Iterations per trajectory. Magic default 8, API default 30: a notebook cell "
        "blocks until the run ends, and 8 keeps K candidates to an interactive wait; raise "
        "it (--max-iterations) for contexts that need more steps.",
    ).tag(config=True)
    early_stop = Bool(
        False,
        help="Stop remaining candidates once a majority agrees. Same default as the API.",
    ).tag(config=True)
    max_output_chars = Int(
        None,
        allow_none=True,
        help="Cell output fed back to the model (None: the REPL's own limit, as in the API).",
    ).tag(config=True)
    engine_kwargs = Dict(
        help="Further RLM arguments, e.g. {'custom_system_prompt': ..., 'max_timeout': 120}; "
        "those not given keep the API's defaults (listed by %lmrepl)."
    ).tag(config=True)
    panel = Enum(
        ["auto", "widgets", "text", "off"],
        "auto",
        help="Live display: widgets in a notebook, text (rich) in a terminal, or off.",
    ).tag(config=True)
    panel_output_lines = Int(12, help="Lines of each cell output shown in the panel.").tag(
        config=True
    )
    panel_output_chars = Int(1500, help="Characters of each cell output shown in the panel.").tag(
        config=True
    )
    refresh_interval = Float(0.08, help="Seconds between panel redraws.").tag(config=True)

    # Tests and embedders replace this to run something other than lmrepl's engine.
    engine_factory: EngineFactory = staticmethod(default_engine_factory)

    @validate(*_TRAIT_RULES)
    def _trait_rule(self, proposal: Any) -> Any:
        name, value = proposal["trait"].name, proposal["value"]
        try:
            checks.check(f"SRLMMagics.{name}", value, _TRAIT_RULES[name])
        except ConfigurationError as exc:
            raise TraitError(str(exc)) from None
        return value

    def defaults(self) -> dict[str, Any]:
        """The configured defaults, by trait name."""
        return {name: getattr(self, name) for name in self.trait_names(config=True)}

    # -- the magics --------------------------------------------------------------------

    @cell_magic_arguments
    @search_arguments
    @common_arguments
    @cell_magic
    def srlm(self, line: str, cell: str | None = None) -> SRLMResult | None:
        """Self-reflective program search: K candidate RLM trajectories over VAR.

        The cell body is the question; VAR names the notebook variable holding the
        context. Defaults come from ``%config SRLMMagics.<trait>`` and are not the API's:
        K=3 candidates and 8 iterations here, n_candidates=1 and max_iterations=30 in
        ``SRLM()`` (``%lmrepl`` lists every setting and where it comes from). Bad input
        is a one-line UsageError; a failed run prints one line to stderr and has no
        Out[] value (``-o NAME`` keeps the failed result).
        """
        args = parse_line("srlm", self.srlm, line)
        return self._run(build_spec("srlm", args, cell, self.defaults()))

    @cell_magic_arguments
    @common_arguments
    @cell_magic
    def rlm(self, line: str, cell: str | None = None) -> SRLMResult | None:
        """One recursive-LM trajectory over VAR, shown in the same panel.

        The cell body is the question; VAR names the notebook variable holding the
        context. The candidate options (-k, -p, -t, ...) are %%srlm's. Defaults come
        from ``%config SRLMMagics.<trait>`` (8 iterations here, 30 in ``RLM()``).
        """
        args = parse_line("rlm", self.rlm, line, search_only=self.srlm)
        return self._run(build_spec("rlm", args, cell, self.defaults()))

    @line_magic
    def lmrepl(self, line: str = "") -> None:
        """::

          %lmrepl [kernels [shutdown]]

        Print every setting %%srlm / %%rlm use, with its value and where it comes from
        ("magic default", "set by %config", "API default"), and the model in use
        (secrets masked). ``%lmrepl kernels`` shows this process's kernels
        (``lmrepl.kernels.stats()``); ``%lmrepl kernels shutdown`` ends the warm ones.
        """
        words = line.split()
        if words:
            show_kernels(words)
            return
        d = self.defaults()
        print(f"model: {model_label(d['backend'], dict(d['backend_kwargs']))}")
        traits = self.traits(config=True)
        given = {name: trait.default() for name, trait in traits.items()}
        for text in settings_lines(d, given, dict(d["engine_kwargs"])):
            print(text)

    # -- running -----------------------------------------------------------------------

    def _context(self, spec: RunSpec) -> Any:
        ns: dict[str, Any] = self.shell.user_ns if self.shell is not None else {}
        if spec.var not in ns:
            public = [n for n in ns if not n.startswith("_")]
            hint = checks.closest(spec.var, public)
            maybe = f" (did you mean {hint!r}?)" if hint else ""
            raise UsageError(
                f"%%{spec.kind}: no variable named {spec.var!r} in the notebook{maybe}; "
                "VAR names the variable holding the context"
            )
        return ns[spec.var]

    def _engine(self, spec: RunSpec) -> Any:
        try:
            return self.engine_factory(spec.kind, spec.engine_kwargs)
        except (ValueError, TypeError) as exc:  # ConfigurationError is both
            lines = str(exc).strip().splitlines()
            text = lines[0] if lines else "the engine refused these settings"
            raise UsageError(f"%%{spec.kind}: {text}") from None

    def _view(self, spec: RunSpec) -> tuple[View, Any]:
        opts = RenderOptions(
            max_output_lines=self.panel_output_lines, max_output_chars=self.panel_output_chars
        )
        mode = self.panel
        if mode == "off":
            return NullView(), None
        if not spec.no_panel and (
            mode == "widgets" or (mode == "auto" and _widgets_usable(self.shell))
        ):
            from lmrepl_jupyter.panel import WidgetPanel

            panel = WidgetPanel(opts)
            return panel, panel
        from lmrepl_jupyter.rich_view import RichView

        return RichView(title=f"%%{spec.kind}"), None

    def _run(self, spec: RunSpec) -> SRLMResult | None:
        context = self._context(spec)
        engine = self._engine(spec)
        n = int(spec.engine_kwargs.get("n_candidates", 1))
        kind: Literal["rlm", "srlm"] = "rlm" if spec.kind == "rlm" else "srlm"
        state = LiveState(kind=kind, question=spec.question, n_candidates=n)
        rec = state.record
        rec.started_at = time.time()  # the clock starts with the cell, not the first event
        rec.candidate_parallel = int(spec.engine_kwargs.get("candidate_parallel", 1))
        rec.backend = str(spec.engine_kwargs.get("backend"))
        rec.model = spec.model
        rec.environment = str(spec.engine_kwargs.get("environment"))
        # Functions (responders, custom tools) are kept as their repr: the record is JSON.
        rec.config = to_plain(mask_secrets({"variable": spec.var, **spec.engine_kwargs}))
        view, panel = self._view(spec)
        outcome = run_with_view(
            engine,
            lambda: engine.completion(context, spec.question),
            state,
            view,
            interval=self.refresh_interval,
        )
        close = getattr(engine, "close", None)
        if callable(close):
            try:
                close()  # the model clients; the REPLs ended with the run
            except Exception as exc:  # a failed cleanup must not lose the result
                msg = f"%%{spec.kind}: closing the engine failed: {message_of(exc)}"
                print(msg, file=sys.stderr)
        settle(state, outcome)
        view.finish(state)
        result = SRLMResult(state.record, outcome.completion, panel)
        if panel is not None and panel.replace_with(result._repr_mimebundle_()):
            # The panel's output now holds the result; the cell's Out[] adds no copy.
            result.shown_in = self.shell.execution_count if self.shell is not None else None
        if spec.output and self.shell is not None:
            self.shell.user_ns[spec.output] = result
        return _report(spec, result)


def _report(spec: RunSpec, result: SRLMResult) -> SRLMResult | None:
    """Say once how a run that did not finish ended; the cell's value, if it has one.

    A failed run's one stderr line is all it shows: no Out[] value, no text view.
    """
    name = f"%%{spec.kind}"
    if result.status == "failed":
        kept = f"the result is in {spec.output}" if spec.output else "-o NAME keeps the result"
        print(f"{name}: the run failed: {result.error or 'no answer'} ({kept})", file=sys.stderr)
        return None
    if result.status == "stopped":
        print(f"{name}: the run stopped: {result.error}; partial answer returned", file=sys.stderr)
    elif result.status == "cancelled":
        print(f"{name}: cancelled; partial result returned", file=sys.stderr)
    return result


def show_kernels(words: list[str]) -> None:
    """``%lmrepl kernels [shutdown]``: print the kernels' stats, after ending warm ones."""
    from lmrepl import kernels

    if words[0] != "kernels" or words[1:] not in ([], ["shutdown"]):
        raise UsageError(
            f"%lmrepl: unknown arguments {' '.join(words)!r}; accepted: %lmrepl, "
            "%lmrepl kernels, %lmrepl kernels shutdown"
        )
    if words[1:] == ["shutdown"]:
        kernels.shutdown()
    print(kernels.stats())
