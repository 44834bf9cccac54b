"""`python -m mfkernels ...` is the same as the `mfkernels` console script."""

from .cli import main

raise SystemExit(main())
