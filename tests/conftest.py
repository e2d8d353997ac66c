"""Shared test settings: tiny networks, one torch thread per test worker."""
import os

import torch

os.environ.setdefault("MPLBACKEND", "Agg")
torch.set_num_threads(1)
