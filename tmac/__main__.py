"""``python -m tmac`` is the ``tmac`` command."""

from tmac.cli import main

raise SystemExit(main())
