"""``python -m sftdata_train`` / ``torchrun --nproc-per-node N -m sftdata_train``."""

import sys

from .cli import main

sys.exit(main())
