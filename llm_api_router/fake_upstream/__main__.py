"""``python -m llm_api_router.fake_upstream``."""

import sys

from .cli import main

sys.exit(main())
