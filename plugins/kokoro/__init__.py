"""kokoro: Kokoro-82M (kokoro 0.9.4) — work in progress, not registered as a plugin yet.

Done: the upstream reference (hub, local directory, random weights from the real
hyper-parameters) and the ``predictor`` component (token bucket + valid length,
padding masked everywhere, parity with KModel), the ``decoder`` as a torch module
(decoder.py: bit-exact harmonic source, conv STFT) and the numpy loop (loop.py:
G2P, buckets, durations, alignment), which with an exact-length bucket matches
KModel.forward within 4e-4 away from the first frames. Open: the converted decoder
differs ~10% from its torch module (see decoder.py), so the export, constants,
multifunction buckets and the entry point are still to come.
"""

__version__ = "0.0.1"
