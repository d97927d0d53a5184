"""kokoro: Kokoro-82M (kokoro 0.9.4) — work in progress, not registered as a plugin yet.

Done: the upstream reference (hub, local directory, random weights from the real
hyper-parameters) and the ``predictor`` component (token bucket + valid length,
padding masked everywhere, parity with KModel). Still to come before the entry
point is added: the decoder component (flexible frame axis, STFT as convolutions,
noise as input), the host-side alignment and run loop, G2P, constants.
"""

__version__ = "0.0.1"
