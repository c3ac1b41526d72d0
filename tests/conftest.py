"""Test-wide settings: one torch thread (tiny models on a shared 2-core machine run far
faster single-threaded; tests that need more set it themselves); trackio (which reads
TRACKIO_DIR once, at import) stores its runs in a temporary dir, never in ~/.cache."""

import os
import tempfile

import torch

os.environ["TRACKIO_DIR"] = tempfile.mkdtemp(prefix="sftdata-tests-trackio-")

torch.set_num_threads(1)
