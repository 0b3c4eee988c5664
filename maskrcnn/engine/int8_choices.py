"""INT8 quantization's choices as plain values, without torch: the command-line options of ``quantize``,
``predict --int8`` and ``eval --int8`` (``commands/quantize.py``) show them in ``--help``, which therefore
needs no torch import. ``modeling/quantize.py`` and ``engine/int8.py`` use these same values."""

# what can be quantized: the backbone + FPN, the RPN's 3x3 convolution, the box head's fully connected
# layers, the mask head's convolutions
PARTS = ("features", "rpn", "box_head", "mask_head")
DEFAULT_CALIBRATION_IMAGES = 16  # images to calibrate on, spread over the set
