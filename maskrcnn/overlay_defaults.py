"""What the overlays of ``predict``, ``show-data`` and the ``demo`` draw unless told otherwise (a module
of its own, without torch, so that the commands' ``--help`` can name them).

- ``OVERLAY_SCORE_THRESH``: detections scoring at least this are drawn (``--overlay-score-thresh``):
  the serve page's starting threshold and detectron2's demo default. The model keeps detections down to
  its own ``model.roi_heads.score_thresh`` (0.05 for published checkpoints), which predictions.json
  keeps whole; drawn, those low scores buried a picture under 20 overlapping labels.
- ``OVERLAY_MIN_SIZE``: an image whose longer side is shorter is drawn enlarged by an integer factor
  until it reaches it (``--overlay-min-size``): on a 150 px image a label was a third of the picture.
"""

OVERLAY_SCORE_THRESH = 0.5
OVERLAY_MIN_SIZE = 512
