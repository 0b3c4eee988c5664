"""Options objects built from command-line flags, each bad value blamed on its own flag.

``options_from_flags(TileOptions, [("--tile", "size", 1024), ("--tile-overlap", "overlap", 1.5)])``
checks one flag at a time: the options object is built with the values already accepted plus this flag's
value, so a ``ValueError`` it raises can only be about this flag, and is raised again as one line
"--tile-overlap: <the options' own message>". Which flag is at fault never depends on the message's words
(a reworded message cannot blame another flag). Flags are checked in the order given: the first bad one
is named. ``refuse_without`` names the flags given without the flag they refine ("--tile-overlap needs
--tile SIZE").
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Tuple

__all__ = ["NO_OPTIMISE_HELP", "not_applying", "options_from_flags", "refuse_without"]

# --no-optimise of predict, serve and benchmark: one text, naming all that optimise_for_inference does
NO_OPTIMISE_HELP = ("run the model as built: no batch-norm folding, channels_last, Winograd 3x3 "
                    "convolutions, oneDNN linear layers or fused residual additions (slower; the outputs "
                    "differ by float rounding only); an INT8 checkpoint always runs folded")


def not_applying(flags: Iterable[Tuple[str, bool]], what: str, why: str):
    """The note for flags given that do not apply to the model at hand (``(flag, given)`` pairs; ``what``
    "an INT8 file", "an .onnx file"; ``why`` what runs instead): "--no-optimise does not apply to an INT8
    file: it always runs its INT8 kernels", one wording for predict and benchmark; None when none was
    given."""
    given = [flag for flag, on in flags if on]
    if not given:
        return None
    return f"{' and '.join(given)} {'does' if len(given) == 1 else 'do'} not apply to {what}: {why}"


def options_from_flags(build: Callable[..., Any], flags: Iterable[Tuple[str, str, Any]], **fixed) -> Any:
    """``build(**fixed, field=value, ...)`` for the ``(flag, field, value)`` triples, checked one flag at a
    time; ``ValueError("FLAG: message")`` naming the first flag whose value ``build`` refuses. ``fixed``:
    fields no flag can make invalid (on/off switches)."""
    accepted = dict(fixed)
    for flag, field, value in flags:
        try:
            build(**accepted, **{field: value})
        except ValueError as e:
            raise ValueError(f"{flag}: {e}") from None
        accepted[field] = value
    return build(**accepted)


def refuse_without(needed: str, flags: Iterable[Tuple[str, bool]]) -> None:
    """``ValueError("--a, --b needs NEEDED")`` naming the flags given (``(flag, given)`` pairs) when the flag
    they refine (``needed``, as the message shows it) was not."""
    used = [flag for flag, given in flags if given]
    if used:
        raise ValueError(f"{', '.join(used)} needs {needed}")
