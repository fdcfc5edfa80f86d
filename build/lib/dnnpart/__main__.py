import sys

from dnnpart.cli import main

sys.exit(main())
