"""Test-wide settings: one torch thread (tiny models on a shared 2-core machine run far
faster single-threaded; tests that need more set it themselves)."""

import torch

torch.set_num_threads(1)
