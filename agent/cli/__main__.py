"""``python -m agent.cli``: the agent's commands (without ``serve``; ``python -m ui.cli`` has them all)."""

import sys

from agent.cli.main import main

sys.exit(main())
