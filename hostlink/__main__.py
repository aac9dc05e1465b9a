import sys

from hostlink.client.main import main

sys.exit(main())
