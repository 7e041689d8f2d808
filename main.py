"""Start the router: ``python main.py [--host H] [--port P] [--config PATH] [--reload]``."""

import sys

from llm_api_router.cli import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
