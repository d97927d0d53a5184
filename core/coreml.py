"""Importing coremltools quietly.

Off macOS, coremltools logs a "Failed to load _MLModelProxy ..." warning for
each CoreML runtime binding it cannot find; that is expected on Linux (zoo
executes packages with its MIL interpreter there) and only clutters the output.
The ``zoo`` command also turns off coremltools' per-pass progress bars
(``TQDM_DISABLE``), since it reports its own progress; imported as a library,
zoo changes no process-wide setting.
"""

from __future__ import annotations

import logging
import platform
import sys
from typing import Any


def import_coremltools() -> Any:
    if "coremltools" in sys.modules:
        return sys.modules["coremltools"]
    if platform.system() != "Darwin":
        previous = logging.root.manager.disable  # restored as it was: a host application's setting stays
        logging.disable(logging.WARNING)
        try:
            import coremltools
        finally:
            logging.disable(previous)
    import coremltools

    return coremltools
