"""kokoro: Kokoro-82M (kokoro 0.9.4) — work in progress, not registered as a plugin yet.

Done: the upstream reference (hub, local directory, random weights from the real
hyper-parameters) and the ``predictor`` component (token bucket + valid length,
padding masked everywhere, parity with KModel). In progress: the ``decoder``
(decoder.py — torch parity of its pieces; its harmonic source is not yet
bit-faithful, see that module). Still to come before the entry point is added:
conversion of the decoder over a flexible frame axis, the host-side alignment and
run loop, G2P, constants, buckets.
"""

__version__ = "0.0.1"
