"""Renaming tables of checkpoint keys: ordered (regex, replacement) rules, the first match wins.

A replacement is a ``re`` template (``r"fpn.lateral.\\1.conv.\\2"``), a function of the match's groups,
or a marker string a converter handles itself (torchvision's ``"box_linear"``)."""

from __future__ import annotations

import re
from typing import Callable, Optional, Sequence, Union

__all__ = ["compile_rules", "first_rule", "rename_key"]

Replacement = Union[str, Callable[[tuple], str]]


def compile_rules(rules: Sequence[tuple]) -> list:
    """[(pattern, replacement)] -> [(compiled pattern, replacement)]."""
    return [(re.compile(pattern), repl) for pattern, repl in rules]


def first_rule(compiled: Sequence[tuple], key: str) -> Optional[tuple]:
    """(match, replacement) of the first rule matching ``key``; None when none does."""
    for pattern, repl in compiled:
        m = pattern.match(key)
        if m:
            return m, repl
    return None


def rename_key(compiled: Sequence[tuple], key: str) -> Optional[str]:
    """``key`` renamed by the first rule matching it; None when none does."""
    hit = first_rule(compiled, key)
    if hit is None:
        return None
    m, repl = hit
    return repl(m.groups()) if callable(repl) else m.expand(repl)
