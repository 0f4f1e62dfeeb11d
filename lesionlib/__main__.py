"""`python -m lesionlib ...` runs the command line (the same as the `lesionlib` script)."""
import sys

from .cli import main

sys.exit(main())
