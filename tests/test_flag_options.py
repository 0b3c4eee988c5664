"""A bad option value is blamed on its own flag by checking one flag at a time, not by reading the words of
the error message (tile_args and tta_args searched the message for "tile overlap", "max_size", ...)."""

import argparse
from dataclasses import dataclass

import pytest

from maskrcnn.commands.flag_options import options_from_flags
from maskrcnn.commands.tile_args import add_tile_arguments, tile_from_args
from maskrcnn.commands.tta_args import add_tta_arguments, tta_from_args


@dataclass(frozen=True)
class _Misleading:
    """Options whose messages name the other field: a search of the words would blame the wrong flag."""

    size: int
    overlap: float = 0.2
    flip: bool = True

    def __post_init__(self):
        if self.size < 32:
            raise ValueError(f"overlap too large for a size of {self.size}")
        if not 0 <= self.overlap < 1:
            raise ValueError(f"size must leave room: got overlap {self.overlap}")


def test_the_flag_whose_value_is_refused_is_named_whatever_the_message_says():
    flags = [("--tile", "size", 512), ("--tile-overlap", "overlap", 1.5)]
    with pytest.raises(ValueError) as info:
        options_from_flags(_Misleading, flags, flip=False)
    assert str(info.value) == "--tile-overlap: size must leave room: got overlap 1.5"
    with pytest.raises(ValueError) as info:  # both bad: the first flag given is named
        options_from_flags(_Misleading, [("--tile", "size", 8), ("--tile-overlap", "overlap", 1.5)])
    assert str(info.value) == "--tile: overlap too large for a size of 8"
    assert options_from_flags(_Misleading, flags[:1], flip=False) == _Misleading(512, 0.2, False)


def _args(add, argv):
    parser = argparse.ArgumentParser()
    add(parser)
    return parser.parse_args(argv)


@pytest.mark.parametrize("argv, said", [
    (["--tile", "8"], "--tile: tile size must be an integer >= 32 pixels, got 8"),
    (["--tile", "64", "--tile-scale", "-1"],
     "--tile-scale: tile scale must be a positive number or None, got -1.0"),
    (["--tile", "64", "--tile-max-tiles", "0"],
     "--tile-max-tiles: tile max_tiles must be an integer >= 1, got 0"),
    (["--tile", "64", "--tile-overlap", "1", "--tile-max-tiles", "0"],
     "--tile-overlap: tile overlap must be a fraction in (0, 1), got 1.0"),
])
def test_tile_flags_name_their_own_errors(argv, said):
    with pytest.raises(ValueError) as info:
        tile_from_args(_args(add_tile_arguments, argv))
    assert str(info.value) == said


def test_tile_and_tta_options_from_good_flags():
    tile = tile_from_args(_args(add_tile_arguments, ["--tile", "64", "--tile-overlap", "0.5", "--tile-scale",
                                                     "2", "--tile-max-tiles", "7", "--no-full-image"]))
    assert (tile.size, tile.overlap, tile.scale, tile.max_tiles, tile.full_image) == (64, 0.5, 2.0, 7, False)
    tta = tta_from_args(_args(add_tta_arguments, ["--tta", "--tta-sizes", "48,64", "--tta-max-size", "96",
                                                  "--tta-no-flip"]))
    assert (tta.min_sizes, tta.max_size, tta.flip) == ((48, 64), 96, False)
    with pytest.raises(ValueError) as info:
        tta_from_args(_args(add_tta_arguments, ["--tta", "--tta-sizes", "48,48", "--tta-max-size", "0"]))
    assert str(info.value) == "--tta-sizes: tta min_sizes repeat a size: [48, 48]"


@pytest.mark.parametrize("sizes", ["128,", ",128", "128,,256", " , "])
def test_tta_sizes_with_an_empty_item_are_refused(sizes):
    with pytest.raises(ValueError) as info:
        tta_from_args(_args(add_tta_arguments, ["--tta", "--tta-sizes", sizes]))
    assert str(info.value) == (f"--tta-sizes: an empty item in {sizes!r}: give comma-separated integers, "
                               "e.g. 400,600,800")


def test_a_tile_overlap_of_zero_is_refused_and_a_thin_one_warned_of(capsys):
    with pytest.raises(ValueError) as info:
        tile_from_args(_args(add_tile_arguments, ["--tile", "250", "--tile-overlap", "0"]))
    assert str(info.value).startswith("--tile-overlap: tile overlap 0.0 of a 250-pixel tile shares no pixel "
                                      "with its neighbour: objects cut by a tile edge could never be joined")
    tile = tile_from_args(_args(add_tile_arguments, ["--tile", "250", "--tile-overlap", "0.04"]))
    assert tile.overlap == 0.04
    err = capsys.readouterr().err
    assert err.startswith("warning: --tile-overlap: tiles of 250 pixels overlapping by 0.04 share only 10 "
                          "pixel(s)") and "an overlap of at least 0.13 (32 pixels) joins them" in err
    tile_from_args(_args(add_tile_arguments, ["--tile", "250", "--tile-overlap", "0.2"]))  # 50 pixels
    assert capsys.readouterr().err == ""


def test_tile_with_tta_is_refused_before_the_thin_overlap_warning(capsys):
    def both(parser):
        add_tile_arguments(parser)
        add_tta_arguments(parser)

    with pytest.raises(ValueError) as info:
        tile_from_args(_args(both, ["--tile", "150", "--tta"]))  # 0.2 of 150: 30 pixels, a warning's worth
    assert str(info.value).startswith("--tile and --tta do not combine")
    assert capsys.readouterr().err == ""
