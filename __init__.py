"""zoo: export PyTorch text-to-speech models to CoreML and prove they still speak.

The framework lives in :mod:`zoo.core`; the built-in model plugins in
:mod:`zoo.plugins`. Run ``zoo --help`` or ``python -m zoo --help``.
"""

from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("zoo-tts")
except _metadata.PackageNotFoundError:  # running from a source tree without installing
    __version__ = "0.0.0+source"
