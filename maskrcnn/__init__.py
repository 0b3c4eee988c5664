"""Mask R-CNN in pure PyTorch: no compiled extension, checkpoints from torchvision and detectron2."""

__version__ = "0.1.0"
