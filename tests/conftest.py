"""Test-wide settings: one torch thread (tiny models on a shared 2-core machine run far
faster single-threaded; tests that need more set it themselves); trackio (which reads
TRACKIO_DIR once, at import) stores its runs in a temporary dir, never in ~/.cache.

Hypothesis profiles (``SFTDATA_HYPOTHESIS_PROFILE``):

* ``default``: random examples, a fresh seed each run; what developers run, so that every
  run explores new inputs (reproduce a failure with the ``@reproduce_failure`` blob printed).
* ``ci``: ``derandomize=True`` (the same examples on every run, as Hypothesis recommends for
  CI) so that a landing is never decided by the draw, and no per-example deadline or
  too-slow health check (a slower CI machine must not fail a test by timing alone;
  performance is measured in ``bench/``); ``.ci/run`` sets it.
"""

import os
import tempfile

import torch
from hypothesis import HealthCheck, settings

os.environ["TRACKIO_DIR"] = tempfile.mkdtemp(prefix="sftdata-tests-trackio-")

settings.register_profile(
    "ci", derandomize=True, print_blob=True, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("SFTDATA_HYPOTHESIS_PROFILE", "default"))

torch.set_num_threads(1)
