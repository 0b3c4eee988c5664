"""A one-parameter model for the trainer's tests: its loss needs no images or targets."""

import torch
from torch import nn


class OneWeight(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.zeros(1))

    def forward(self, images, targets, generator=None):
        return {"loss": ((self.w - 1) ** 2).sum()}
