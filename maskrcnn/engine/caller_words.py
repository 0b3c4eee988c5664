"""How a line names what its caller used: ``maskrcnn train``'s options (``--set model.fpn_dim=128``,
``--init W``) or ``maskrcnn.train()``'s keywords (``set={'model.fpn_dim': 128}``, ``init='W'``).

One table of option -> keyword (``KEYWORDS``) for every training message that names a way in or out: a
notebook's error named the ``--set`` it never typed. A message asks it (``option_word``, ``set_word``,
``set_item``, ``init_word``, ``given``) rather than spelling an option itself. The callers are
``build_training``'s ``caller`` values (``CALLERS``: the forms of the frozen-parts refusal).
"""

from __future__ import annotations

API = "maskrcnn.train()"  # the library's caller; the others are commands (or build_training's own)

# the command's option -> maskrcnn.train()'s keyword for it: the one place a line's option becomes a keyword
KEYWORDS = {"--set": "set=", "--init": "init=", "--resume": "resume=True", "--output": "output=",
            "--config": "config=", "--overwrite": "overwrite=True", "--train-json": "train_json=",
            "--train-images": "train_images=", "--val-json": "val_json=", "--val-images": "val_images="}

# Predictor.from_checkpoint()'s (and inference_weights') keywords for the options its refusals name: the
# commands that load weights (predict, eval, export) pass "--set" as its overrides' word, the library
# "overrides="; a line names the other ways in as its caller does (``word_beside``)
PREDICTOR_KEYWORDS = {"--set": "overrides=", "--config": "config="}

# a caller known by the word it names its config changes with -> its keyword for each option (a word not
# here, "--set", is a command's: its options stay)
_BY_SET_WORD = {KEYWORDS["--set"]: KEYWORDS, PREDICTOR_KEYWORDS["--set"]: PREDICTOR_KEYWORDS}

# callers without an --init option: their weights are the key itself (maskrcnn demo: its --set names it;
# build_training: the Config's). Their resume lines keep the command's --init (option_word)
_KEY_FOR_INIT = frozenset({"maskrcnn demo", "build_training"})

# caller: (the weights missing, start from weights {w}, config changes {kv} / {dict}); the refusal of frozen
# parts over random weights (frozen_parts) spells its way out from these
CALLERS = {
    "maskrcnn train": ("no --init, model.init_weights is empty", "--init {w}", "--set {kv}"),
    "maskrcnn demo": ("model.init_weights is empty", "--set model.init_weights={w}", "--set {kv}"),
    API: ("no init=, model.init_weights is empty", "init={w!r}", "set={dict}"),
    # build_training's ``overrides`` are the --set keys of the command that calls it (its docstring): its
    # lines keep the option's name, as the commands' and the library's own tests read them
    "build_training": ("the Config's model.init_weights is empty", "model.init_weights={w!r} in the Config",
                       "{dict} in the Config"),
}

# the names changes go by; an option's is written "--set key=value", a keyword's "set={'key': value}"
SET_WORDS = frozenset({"--set", KEYWORDS["--set"]})


def option_word(caller: str, option: str) -> str:
    """``option`` ("--set", "--resume", "--output", "--init", ...) as ``caller`` names it: its keyword for
    ``maskrcnn.train()`` ("set=", "resume=True", "output=", "init="), the option itself for the commands."""
    return KEYWORDS.get(option, option) if caller == API else option


def set_word(caller: str) -> str:
    """The name of ``caller``'s config changes: "--set", or "set=" (``maskrcnn.train()``)."""
    return option_word(caller, "--set")


def init_word(caller: str) -> str:
    """The name of ``caller``'s starting weights: "--init", "init=", or "model.init_weights" for a caller
    without the option."""
    return "model.init_weights" if caller in _KEY_FOR_INIT else option_word(caller, "--init")


def given(caller: str, option: str, value) -> str:
    """``option`` given ``value`` as ``caller`` writes it: "--init W", or "init='W'"."""
    return written(option_word(caller, option), value)


def new_run(caller: str, weights: str, folder: str = "ANOTHER_FOLDER") -> str:
    """How ``caller`` starts a new run from ``weights`` in ``folder``: "--init W --output F" or
    "init='W', output='F'"."""
    sep = ", " if caller == API else " "
    return sep.join((given(caller, "--init", weights), given(caller, "--output", folder)))


def word_beside(set_word: str, option: str) -> str:
    """``option`` as named by the caller whose config changes are named ``set_word``: "--config" beside
    "--set", "config=" beside "overrides=" (``Predictor.from_checkpoint``) or "set=" (``train()``)."""
    return _BY_SET_WORD.get(set_word, {}).get(option, option)


def written(word: str, value) -> str:
    """``value`` given through ``word`` ("--config", or a keyword "config="): "--config r50_fpn", or
    "config='r50_fpn'"."""
    return f"{word} {value}" if word.startswith("--") else f"{word}{value!r}"


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
