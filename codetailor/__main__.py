import sys

from codetailor.cli import main

sys.exit(main())
