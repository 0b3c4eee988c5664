"""``--config`` of the commands that run a model's weights (predict, eval, export), the refusal of a bare
state dict by those without it (quantize, serve, benchmark), and the notes on what was taken from the
weights file, printed alike by each."""

from __future__ import annotations

import argparse
import sys

CONFIG_HELP = ("with --weights a bare state dict of this library's model (torch.save(model.state_dict())): "
               "the preset or YAML file that builds its model (e.g. r50_fpn); a checkpoint holds its own "
               "config (change it with --set)")


def add_config_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None, metavar="PRESET_OR_YAML", help=CONFIG_HELP)


def config_kwargs(args: argparse.Namespace) -> dict:
    """``Predictor.from_checkpoint`` keywords of a command with ``--config``: it, and the refusal of a bare
    state dict without it naming the option, and a ``--set`` the weights cannot take naming ``--set``."""
    from maskrcnn.checkpoint_read import CONFIG_HOW_CLI

    return {"config": args.config, "config_how": CONFIG_HOW_CLI, "overrides_word": "--set"}


def no_config_kwargs(command: str) -> dict:
    """``Predictor.from_checkpoint`` keywords of a command with no ``--config`` for its weights (quantize,
    serve, benchmark): the refusal of a bare state dict says it has none, and what to do instead."""
    from maskrcnn.checkpoint_read import config_how_without_option

    return {"config_how": config_how_without_option(command), "overrides_word": "--set"}


def print_weights_notes(predictor, weights) -> None:
    """``note: WEIGHTS: ...`` on stderr for each of the predictor's ``weights_notes`` (an EMA copy left in
    the file and how to take it, a wrapper's prefix dropped, class names made up)."""
    for note in getattr(predictor, "weights_notes", ()):
        print(f"note: {weights}: {note}", file=sys.stderr)
