"""``python -m tf_admm``: the command line (see :mod:`tf_admm.cli`)."""

import sys

from tf_admm.cli import main

sys.exit(main())
