import sys

from mixedjax.cli import main

sys.exit(main())
