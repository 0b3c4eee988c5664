"""Checkpoint import from other libraries: key renaming at the border (``torchvision.py``) and
published-checkpoint downloads (``download.py``). The model itself never knows other layouts."""
