"""``python -m videobgm.train`` / ``accelerate launch -m videobgm.train --config cfg.json``."""

import sys

from videobgm.train.cli import main

sys.exit(main())
