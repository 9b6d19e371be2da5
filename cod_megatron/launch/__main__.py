"""``python -m cod_megatron.launch``: see ``cod_megatron.launch.submit``."""

import sys

from cod_megatron.launch.submit import main

sys.exit(main())
