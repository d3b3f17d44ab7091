"""The game client: connection, world replica, prediction, HUD, display sources.

pygame prints a banner on import unless told not to; the client decides
what goes on stderr (errors a player must read), so it is silenced here,
before any client module imports pygame.
"""

import os

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
