import sys

from hostlink.cli import main

sys.exit(main())
