import sys

from shiftcraft.cli import main

sys.exit(main())
