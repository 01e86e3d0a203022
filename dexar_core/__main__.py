"""``python -m dexar_core``: the ``dexar`` command, for launchers that take a module.

``accelerate launch -m dexar_core evaluate ...`` starts one ``dexar evaluate`` per
process this way.
"""

import sys

from dexar_core.cli.main import main

sys.exit(main())
