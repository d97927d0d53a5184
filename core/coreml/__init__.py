"""coremltools: loading it, package specs, and the CoreML runtime (macOS).

May import (pyproject's layer contract): kit, plugin, util."""
