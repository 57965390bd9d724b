import sys

from backups.cli import main

sys.exit(main())
