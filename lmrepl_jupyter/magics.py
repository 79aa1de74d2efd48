"""``SRLMMagics``: the ``%%srlm``, ``%%rlm`` and ``%lmrepl`` magics.

Error policy (also in docs/trajectory-schema.md and ``%%srlm?``):

- anything wrong with what was typed — options, the variable, an empty question, a
  configuration the engine rejects at construction — is a ``UsageError`` with one line;
- anything that fails while the run is under way (unreachable server, every candidate
  failed, a limit) prints one line to stderr and returns a result object whose
  ``status`` is ``failed`` (or ``stopped``), with whatever the run gathered;
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
from lmrepl.config import ARGUMENTS
from lmrepl.credentials import mask_secrets
from lmrepl.errors import ConfigurationError
from lmrepl.html import RenderOptions
from lmrepl.live import LiveState
from lmrepl_jupyter.driver import NullView, Outcome, View, run_with_view
from lmrepl_jupyter.options import (
    RunSpec,
    build_spec,
    cell_magic,
    common_arguments,
    magic_arguments,
    model_label,
    parse_argstring,
    search_arguments,
    to_plain,
)
from lmrepl_jupyter.result import SRLMResult

EngineFactory = Callable[[str, dict[str, Any]], Any]


def default_engine_factory(kind: str, kwargs: dict[str, Any]) -> Any:
    """Build ``lmrepl.SRLM`` (kind ``srlm``) or ``lmrepl.RLM`` (kind ``rlm``)."""
    from lmrepl.rlm import RLM
    from lmrepl.srlm import SRLM

    return SRLM(**kwargs) if kind == "srlm" else RLM(**kwargs)


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _widgets_usable(shell: Any) -> bool:
    # Widgets need a kernel with a front end; terminal IPython has no comm channel.
    if getattr(shell, "kernel", None) is None:
        return False
    try:
        import ipywidgets  # noqa: F401
    except ImportError:
        return False
    return True


@magics_class
class SRLMMagics(Magics):
    """Run RLM / SRLM searches over notebook variables, with a live candidate panel."""

    backend = Unicode(
        "local", help="Model backend: local (embedded), openai, anthropic, replay."
    ).tag(config=True)
    backend_kwargs = Dict(
        help="Backend settings, e.g. {'model_name': ..., 'base_url': ..., 'api_key': ...}."
    ).tag(config=True)
    environment = Unicode("kernel", help="REPL: kernel (ipykernel subprocess) or local.").tag(
        config=True
    )
    environment_kwargs = Dict(help="REPL settings, e.g. {'cell_timeout': 30}.").tag(config=True)
    n_candidates = Int(3, help="Candidate trajectories K of %%srlm.").tag(config=True)
    candidate_parallel = Int(3, help="Candidates running at once.").tag(config=True)
    candidate_temperature = Float(
        0.7, allow_none=True, help="Sampling temperature of candidates (None: backend default)."
    ).tag(config=True)
    confidence_elicitation = Bool(
        True, help='Ask for a {"confidence": N} line per step (VC scoring).'
    ).tag(config=True)
    direct_threshold = Int(
        0, help="Contexts shorter than this many characters: one direct call."
    ).tag(config=True)
    max_iterations = Int(8, help="Iterations per trajectory.").tag(config=True)
    early_stop = Bool(False, help="Stop remaining candidates once a majority agrees.").tag(
        config=True
    )
    max_output_chars = Int(
        None, allow_none=True, help="Cell output fed back to the model (None: engine default)."
    ).tag(config=True)
    engine_kwargs = Dict(
        help="Further RLM arguments, e.g. {'custom_system_prompt': ..., 'max_timeout': 120}."
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

    @validate(
        "n_candidates",
        "candidate_parallel",
        "max_iterations",
        "direct_threshold",
        "candidate_temperature",
    )
    def _engine_rule(self, proposal: Any) -> Any:
        # The engine argument's own rule, so %config and the engine agree.
        name, value = proposal["trait"].name, proposal["value"]
        try:
            checks.check(f"SRLMMagics.{name}", value, ARGUMENTS[name])
        except ConfigurationError as exc:
            raise TraitError(str(exc)) from None
        return value

    def defaults(self) -> dict[str, Any]:
        """The configured defaults, by trait name."""
        return {name: getattr(self, name) for name in self.trait_names(config=True)}

    # -- the magics --------------------------------------------------------------------

    @magic_arguments
    @search_arguments
    @common_arguments
    @cell_magic
    def srlm(self, line: str, cell: str | None = None) -> SRLMResult:
        """Self-reflective program search: K candidate RLM trajectories over VAR.

        The cell body is the question; VAR names the notebook variable holding the
        context. Defaults come from ``%config SRLMMagics.<trait>``. Bad input raises a
        UsageError; a run that fails returns a result whose status is ``failed``.
        """
        args = parse_argstring(self.srlm, line)
        return self._run(build_spec("srlm", args, cell, self.defaults()))

    @magic_arguments
    @common_arguments
    @cell_magic
    def rlm(self, line: str, cell: str | None = None) -> SRLMResult:
        """One recursive-LM trajectory over VAR, shown in the same panel.

        The cell body is the question; VAR names the notebook variable holding the context.
        """
        args = parse_argstring(self.rlm, line)
        return self._run(build_spec("rlm", args, cell, self.defaults()))

    @line_magic
    def lmrepl(self, line: str = "") -> None:
        """Print the current %%srlm configuration and the model in use (secrets masked).

        ``%lmrepl kernels`` shows this process's kernels (``lmrepl.kernels.stats()``);
        ``%lmrepl kernels shutdown`` ends the warm ones.
        """
        words = line.split()
        if words:
            show_kernels(words)
            return
        d = self.defaults()
        print(f"model: {model_label(d['backend'], dict(d['backend_kwargs']))}")
        for name in sorted(d):
            print(f"  SRLMMagics.{name} = {mask_secrets(d[name])!r}")

    # -- running -----------------------------------------------------------------------

    def _context(self, spec: RunSpec) -> Any:
        ns: dict[str, Any] = self.shell.user_ns if self.shell is not None else {}
        if spec.var not in ns:
            raise UsageError(f"%%{spec.kind}: no variable named {spec.var!r} in the notebook")
        return ns[spec.var]

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

    def _run(self, spec: RunSpec) -> SRLMResult:
        context = self._context(spec)
        try:
            engine = self.engine_factory(spec.kind, spec.engine_kwargs)
        except ConfigurationError as exc:
            raise UsageError(f"%%{spec.kind}: {str(exc).strip().splitlines()[0]}") from None
        except (ValueError, TypeError) as exc:
            raise UsageError(f"%%{spec.kind}: {_one_line(exc)}") from None
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
                print(f"lmrepl: closing the engine failed: {_one_line(exc)}", file=sys.stderr)
        _settle(state, outcome)
        view.finish(state)
        result = SRLMResult(state.record, outcome.completion, panel)
        if panel is not None and panel.replace_with(result._repr_mimebundle_()):
            # The panel's output now holds the result; the cell's Out[] adds no copy.
            result.shown_in = self.shell.execution_count if self.shell is not None else None
        if result.status in ("failed", "stopped") and result.error:
            print(f"%%{spec.kind} {result.status}: {result.error}", file=sys.stderr)
        elif result.status == "cancelled":
            print(f"%%{spec.kind} cancelled: partial result returned", file=sys.stderr)
        if spec.output and self.shell is not None:
            self.shell.user_ns[spec.output] = result
        return result


def show_kernels(words: list[str]) -> None:
    """``%lmrepl kernels [shutdown]``: print the kernels' stats, after ending warm ones."""
    from lmrepl import kernels

    if words[0] != "kernels" or words[1:] not in ([], ["shutdown"]):
        print(f"%lmrepl: unknown arguments {' '.join(words)!r}; use: %lmrepl kernels [shutdown]")
        return
    if words[1:] == ["shutdown"]:
        kernels.shutdown()
    print(kernels.stats())


def _settle(state: LiveState, outcome: Outcome) -> None:
    """Give ``state`` its final record and status from how the engine call ended.

    The engine's own record wins over what the events built; the magic's ``config``
    and clock are kept.
    """
    from lmrepl.errors import AllCandidatesFailed, RunCancelled, RunStopped

    comp, err = outcome.completion, outcome.error
    started_at = state.record.started_at
    record = comp.record if comp is not None else getattr(err, "record", None)
    if record is not None:
        state.replace(record)
        state.record.started_at = started_at or state.record.started_at
    if comp is not None:
        if outcome.cancelled:
            state.finish("cancelled", error="cancelled by the user")
        elif record is None:  # an engine without records (a stand-in in tests)
            state.finish("done", answer=comp.response)
    elif outcome.cancelled or isinstance(err, KeyboardInterrupt | RunCancelled):
        state.finish("cancelled", error="cancelled by the user")
    elif isinstance(err, AllCandidatesFailed):
        state.finish("failed", error=_one_line(err))
    elif isinstance(err, RunStopped):
        state.finish("stopped", answer=err.partial_answer, error=_one_line(err))
    elif err is not None:
        state.finish("failed", error=_one_line(err))
    else:
        state.finish("failed", error="the engine returned nothing")
