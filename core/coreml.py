"""Importing coremltools quietly.

Off macOS, coremltools logs a "Failed to load _MLModelProxy ..." warning for
each CoreML runtime binding it cannot find; that is expected on Linux (zoo
executes packages with its MIL interpreter there) and only clutters the output.
Its per-pass conversion progress bars are turned off too, since zoo reports
its own progress.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
from typing import Any


def import_coremltools() -> Any:
    if "coremltools" in sys.modules:
        return sys.modules["coremltools"]
    os.environ.setdefault("TQDM_DISABLE", "1")
    if platform.system() != "Darwin":
        logging.disable(logging.WARNING)
        try:
            import coremltools
        finally:
            logging.disable(logging.NOTSET)
    import coremltools

    return coremltools
