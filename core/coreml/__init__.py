"""coremltools: loading it, package specs, and the CoreML runtime (macOS).

May import: plugin, util.
"""
