"""mvrecon: accurate, textured, game-ready 3D heads from a calibrated multi-camera rig."""

import logging

__version__ = "0.1.0"

#: The one package logger; modules use ``logging.getLogger(__name__)`` below it.
log = logging.getLogger("mvrecon")
