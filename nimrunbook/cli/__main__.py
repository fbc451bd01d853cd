import sys

from nimrunbook.cli import main

sys.exit(main())
