"""Audio files: the one place zoo reads and writes WAVs (standard library ``wave``).

zoo writes 16-bit mono PCM (``zoo run``) and reads 16-bit PCM prompts (voice
cloning). Reading is bounded by what the caller needs, never by what the header
claims, and every error names the file.
"""

from __future__ import annotations

import wave
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

#: sample rates a WAV may have; anything else is refused before reading the audio
WAV_RATES = (8000, 192000)
#: a resampling ratio up/down with either term above this uses an FFT resampler (memory bounded by
#: the signal) instead of a polyphase filter whose length grows with the ratio (a prime rate: ~GBs)
MAX_POLYPHASE = 1000


class WavStream:
    """A 16-bit mono WAV written piece by piece to a temporary file beside ``path`` and renamed
    into place by ``close`` (``abort`` removes it): a reader never sees half a file."""

    def __init__(self, path: str | Path, sample_rate: int):
        import os
        import tempfile

        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # a fresh name (never a file of the user's), opened here: a failure raises once, naming the file
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self.tmp = Path(tmp)
        self.samples = 0
        self._file = os.fdopen(fd, "wb")
        self._wave = wave.open(self._file, "wb")
        self._wave.setnchannels(1)
        self._wave.setsampwidth(2)
        self._wave.setframerate(int(sample_rate))

    def write(self, audio: Any) -> None:
        import numpy as np

        samples = np.asarray(audio, dtype=np.float32).reshape(-1)
        if not np.isfinite(samples).all():
            raise ValueError("audio contains NaN or infinite samples")
        self._wave.writeframes((np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes())
        self.samples += samples.size

    def close(self) -> None:
        import os

        self._wave.close()
        self._file.close()
        from ..util.files import current_umask

        os.chmod(self.tmp, 0o666 & ~current_umask())  # an output file like any other (mkstemp gives 0600)
        self.tmp.replace(self.path)

    def abort(self) -> None:
        try:
            self._wave.close()
            self._file.close()
        except (OSError, wave.Error):
            pass
        finally:
            self.tmp.unlink(missing_ok=True)


def write_wav(path: str | Path, audio: Any, sample_rate: int) -> None:
    """16-bit mono PCM, clipped to [-1, 1], written at once (see WavStream: a reader never sees
    half a file). Non-finite samples are refused and nothing is left behind."""
    stream = WavStream(path, sample_rate)
    try:
        stream.write(audio)
    except BaseException:
        stream.abort()
        raise
    stream.close()


def _check_header(w: Any, path: Path, what: str) -> tuple[int, int]:
    """(rate, channels) of an open WAV, refused unless 16-bit PCM at a usable rate with 1-8 channels."""
    if w.getsampwidth() != 2:
        raise ValueError(f"{what} {path}: only 16-bit PCM WAV is supported (got {8 * w.getsampwidth()}-bit)")
    rate, channels = w.getframerate(), w.getnchannels()
    if not WAV_RATES[0] <= rate <= WAV_RATES[1]:
        raise ValueError(f"{what} {path}: sample rate {rate} Hz is outside {WAV_RATES[0]}-{WAV_RATES[1]} Hz")
    if not 1 <= channels <= 8:
        raise ValueError(f"{what} {path}: {channels} channels (1 to 8 supported)")
    return rate, channels


@contextmanager
def _opened(path: Path, what: str) -> Iterator[tuple[Any, int, int]]:
    """The WAV open for reading, its header checked: (reader, rate, channels); every failure of
    reading it, in the header or later, a ValueError naming the file."""
    if not path.is_file():
        raise ValueError(f"{what} {path} does not exist")
    try:
        with wave.open(str(path), "rb") as w:
            rate, channels = _check_header(w, path, what)
            yield w, rate, channels
    except wave.Error as exc:
        raise ValueError(f"{what} {path} is not a readable WAV file: {exc}") from None
    except (EOFError, OSError) as exc:
        raise ValueError(f"{what} {path} is truncated or unreadable ({type(exc).__name__}: {exc})") from None


def _blocks(path: str | Path, block_seconds: float | None, max_seconds: float | None, what: str) -> Any:
    """Yield (rate, channels, raw little-endian int16 bytes) of successive blocks of whole frames,
    ``block_seconds`` each (None: all at once)."""
    path = Path(path)
    with _opened(path, what) as (w, rate, channels):
        left = w.getnframes() if max_seconds is None else min(w.getnframes(), int(max_seconds * rate) + 1)
        block = max(1, int(block_seconds * rate)) if block_seconds is not None else left
        while left > 0:
            raw = w.readframes(min(left, block))
            if not raw:
                break
            if len(raw) % 2:
                raise ValueError(
                    f"{what} {path} is truncated: its audio data ends in the middle of a sample ({len(raw)} bytes)"
                )
            left -= len(raw) // (2 * channels)
            yield rate, channels, raw


def _mono(raw: bytes, channels: int) -> Any:
    import numpy as np

    data = np.frombuffer(raw, dtype="<i2")
    data = data[: data.size - data.size % channels].astype(np.float32) / 32768.0
    return data.reshape(-1, channels).mean(axis=1) if channels > 1 else data


def read_wav(path: str | Path, max_seconds: float | None = None, what: str = "WAV file") -> tuple[Any, int]:
    """16-bit PCM WAV -> (mono float32 in [-1, 1], sample rate); channels are averaged and at most
    ``max_seconds`` are read. ``what`` names the file's role in error messages."""
    import numpy as np

    rate, parts = 0, []
    for rate, channels, raw in _blocks(path, None, max_seconds, what):
        parts.append(_mono(raw, channels))
    data = np.concatenate(parts) if parts else np.zeros(0, np.float32)
    if data.size == 0:
        raise ValueError(f"{what} {Path(path)} is empty")
    return data, rate


def iter_wav(path: str | Path, block_seconds: float, what: str = "WAV file") -> Any:
    """A long 16-bit PCM WAV read ``block_seconds`` at a time: yields (mono float32 block, sample rate),
    so memory stays bounded by the block whatever the file's length. Errors as ``read_wav``'s."""
    for rate, channels, raw in _blocks(path, block_seconds, None, what):
        yield _mono(raw, channels), rate


def wav_seconds(path: str | Path, what: str = "WAV file") -> tuple[float, int]:
    """(seconds of audio the WAV holds, its sample rate), read from the header only (checked as ``read_wav``)."""
    with _opened(Path(path), what) as (w, rate, _):
        return w.getnframes() / rate, rate


#: seconds of a WAV hashed at a time (at most 192 kHz x 8 channels x 2 bytes = 3 MB)
DIGEST_BLOCK_SECONDS = 1.0


def wav_digest(path: str | Path, what: str = "WAV file") -> str:
    """sha256 of a WAV's samples (its rate, channel count and PCM frames, not its other chunks), read a
    block at a time: the same recording re-saved with other metadata has the same digest."""
    import hashlib

    digest = hashlib.sha256()
    head = False
    for rate, channels, raw in _blocks(path, DIGEST_BLOCK_SECONDS, None, what):
        if not head:
            digest.update(f"pcm16 {rate} Hz {channels} ch\n".encode())
            head = True
        digest.update(raw)
    return digest.hexdigest()


def resample(wav: Any, rate: int, target: int) -> Any:
    """Polyphase resampling (scipy) for the usual rates (exact ratios), FFT resampling for odd ones."""
    from math import gcd

    import numpy as np

    if rate == target:
        return wav
    g = gcd(int(rate), int(target))
    up, down = target // g, int(rate) // g
    if max(up, down) <= MAX_POLYPHASE:
        from scipy.signal import resample_poly

        return resample_poly(wav, up, down).astype(np.float32)
    from scipy.signal import resample as fft_resample

    return fft_resample(wav, max(1, round(len(wav) * target / rate))).astype(np.float32)
