"""What the overlays of ``predict``, ``show-data`` and the ``demo`` draw unless told otherwise (a module
of its own, without torch, so that the commands' ``--help`` can name them).

- ``OVERLAY_SCORE_THRESH``: detections scoring at least this are drawn (``--overlay-score-thresh``):
  the serve page's starting threshold and detectron2's demo default. The model keeps detections down to
  its own ``model.roi_heads.score_thresh`` (0.05 for published checkpoints), which predictions.json
  keeps whole; drawn, those low scores buried a picture under 20 overlapping labels.
- ``OVERLAY_MIN_SIZE``: an image whose longer side is shorter is drawn enlarged by an integer factor
  until it reaches it (``--overlay-min-size``): on a 150 px image a label was a third of the picture.
- ``OVERLAY_DRAW_MAX``: ``predict`` draws an image whose longer side is longer reduced by an integer
  factor until it fits (a 40 MP photo at half its size): drawn whole, the overlay cost as much memory and
  time again as the prediction (a full-size PNG of a 100 MP image took 27 s and 3.4 GB more), for a
  picture no screen shows whole. The results (boxes, masks) are of the full image.
- ``check_overlay_min_size(value)``: ``--overlay-min-size`` from 0 to ``OVERLAY_MAX_SIZE`` (8192), one
  check for ``predict`` and ``show-data``: a negative value was refused by one and taken as 0 by the
  other, and 100000 on a 1000 px image asked for a 100000 px square drawing (about 30 GB per RGB copy).
- ``overlay_min_size(args, video=)``: ``--overlay-min-size`` or its default (0 for videos).
"""

# The serve page (maskrcnn/serve/static/index.html) repeats this as its slider's starting value: a test
# keeps them equal.
OVERLAY_SCORE_THRESH = 0.5
OVERLAY_MIN_SIZE = 512
# An 8192 px square is 67 M pixels, 0.2 GB per RGB copy, and the drawing holds several (the image, the
# tinted layer, the instance map, masks decoded at that size): still drawable on an ordinary machine, and
# larger than any screen shows whole (an 8K display is 7680 px wide), so a larger target only costs memory.
OVERLAY_MAX_SIZE = 8192
# a 12 MP phone photo (4032 px) is drawn whole
OVERLAY_DRAW_MAX = 4096


def check_overlay_min_size(value) -> None:
    """Refuse an ``--overlay-min-size`` below 0 or above ``OVERLAY_MAX_SIZE``; None (its default) passes."""
    if value is None:
        return
    if value < 0:
        raise ValueError(f"--overlay-min-size must be >= 0, got {value}")
    if value > OVERLAY_MAX_SIZE:
        raise ValueError(f"--overlay-min-size must be at most {OVERLAY_MAX_SIZE} px (an enlarged drawing is "
                         f"held in memory several times over), got {value}")


def overlay_min_size(args, *, video: bool) -> int:
    """``--overlay-min-size``, or its default: ``OVERLAY_MIN_SIZE`` for images, 0 for videos (an enlarged
    video is a larger file at every frame)."""
    if args.overlay_min_size is not None:
        return args.overlay_min_size
    return 0 if video else OVERLAY_MIN_SIZE
