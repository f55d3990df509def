"""``python -m videobgm.bench``: see :mod:`videobgm.bench`."""

from videobgm.bench import main

raise SystemExit(main())
