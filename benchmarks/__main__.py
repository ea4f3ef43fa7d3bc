"""``python -m benchmarks --help``."""

from .runner import main

raise SystemExit(main())
