"""How a line names what its caller used: ``maskrcnn train``'s options (``--set model.fpn_dim=128``,
``--init W``) or ``maskrcnn.train()``'s keywords (``set={'model.fpn_dim': 128}``, ``init='W'``).

One table (``CALLERS``) for every training message that names a way in or out: a notebook's error named
the ``--set`` it never typed. A message asks it (``set_word``, ``set_item``, ``init_word``) rather than
spelling an option itself. The keys are ``build_training``'s ``caller`` values.
"""

from __future__ import annotations

# caller: (the weights missing, start from weights {w}, config changes {kv} / {dict}, the changes' name,
# the weights' name)
CALLERS = {
    "maskrcnn train": ("no --init, model.init_weights is empty", "--init {w}", "--set {kv}", "--set",
                       "--init"),
    # no --init (its --set names the key)
    "maskrcnn demo": ("model.init_weights is empty", "--set model.init_weights={w}", "--set {kv}", "--set",
                      "model.init_weights"),
    "maskrcnn.train()": ("no init=, model.init_weights is empty", "init={w!r}", "set={dict}", "set=",
                         "init="),
    # build_training's ``overrides`` are the --set keys of the command that calls it (its docstring): its
    # lines keep the option's name, as the commands' and the library's own tests read them
    "build_training": ("the Config's model.init_weights is empty", "model.init_weights={w!r} in the Config",
                       "{dict} in the Config", "--set", "model.init_weights"),
}

# the names changes go by; an option's is written "--set key=value", a keyword's "set={'key': value}"
SET_WORDS = frozenset(row[3] for row in CALLERS.values())


def _row(caller: str) -> tuple:
    return CALLERS.get(caller, CALLERS["maskrcnn train"])


def set_word(caller: str) -> str:
    """The name of ``caller``'s config changes: "--set", or "set=" (``maskrcnn.train()``)."""
    return _row(caller)[3]


def init_word(caller: str) -> str:
    """The name of ``caller``'s starting weights: "--init", "init=", "model.init_weights"."""
    return _row(caller)[4]


def option_word(caller: str, option: str) -> str:
    """``option`` ("--resume", "--output", "--init") as ``caller`` names it: the keyword for
    ``maskrcnn.train()`` ("resume=True", "output=", "init="), the option itself for the commands."""
    if caller != "maskrcnn.train()":
        return option
    return {"--resume": "resume=True", "--output": "output=", "--init": "init="}.get(option, option)


def new_run(caller: str, weights: str, folder: str = "ANOTHER_FOLDER") -> str:
    """How ``caller`` starts a new run from ``weights`` in ``folder``: "--init W --output F" or
    "init='W', output='F'"."""
    if caller == "maskrcnn.train()":
        return f"init={weights!r}, output={folder!r}"
    return f"--init {weights} --output {folder}"


def set_item(word: str, key: str, value, shown=None) -> str:
    """One change as a caller that names its changes ``word`` writes it: ``--set model.fpn_dim=128``,
    ``set={'model.fpn_dim': 128}``. ``shown``: the value's text where it stands for one (a pattern, "[[a,
    b], ...]"): written as it is in either form."""
    if word.startswith("--"):
        text = shown if shown is not None else str(value).lower() if isinstance(value, bool) else value
        return f"{word} {key}={text}"
    return f"{word}{{{key!r}: {shown if shown is not None else repr(value)}}}"


def set_dropped(word: str) -> str:
    """What to drop to undo a change named ``word``: "the --set", "that set= entry"."""
    return f"the {word}" if word.startswith("--") else f"that {word} entry"
