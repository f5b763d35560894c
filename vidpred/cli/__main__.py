"""``python -m vidpred.cli`` (and ``torchrun -m vidpred.cli``): the ``vidpred`` command."""

import sys

from . import main

sys.exit(main())
