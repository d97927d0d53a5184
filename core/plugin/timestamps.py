"""Word timings of a run, and the files ``zoo run --timestamps FILE`` writes.

A run loop hands its timings over with each piece of audio (``RunOptions.emit_timings``), as
times from the start of the whole utterance; ``TimingWriter`` appends them to the file as they
come (JSON, SubRip ``.srt`` or WebVTT ``.vtt``, by the file's suffix), in a temporary file beside
it renamed into place when the run ends, so a reader never sees half a file and a failed run
leaves none.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Iterable

#: what a timing measures: a word's span predicted by the model's own durations, the span of a
#: text piece (sentence, clause) from the frames that piece produced, or a word a speech
#: recogniser heard in that piece's audio (``zoo run --asr``: heard, not predicted)
KINDS = ("word", "piece", "recognised")
FORMATS = {".json": "json", ".srt": "srt", ".vtt": "vtt"}


@dataclass(frozen=True)
class Timing:
    """One span of the audio: ``text`` from ``start`` to ``end`` seconds."""

    text: str
    start: float
    end: float
    kind: str = "word"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"timing kind {self.kind!r} is not one of {KINDS}")
        if not (0.0 <= self.start < self.end):
            raise ValueError(f"timing {self.text!r}: start {self.start} must be >= 0 and before end {self.end}")


def timestamp_format(path: Path) -> str:
    """The format a ``--timestamps`` path asks for by its suffix; ValueError names the choices."""
    fmt = FORMATS.get(Path(path).suffix.lower())
    if fmt is None:
        raise ValueError(f"--timestamps {path}: the file's suffix says its format: {', '.join(FORMATS)}")
    return fmt


def _clock(seconds: float, separator: str) -> str:
    ms = int(round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{ms:03d}"


class TimingWriter:
    """Appends timings to ``path`` as they come; ``close`` renames the finished file into place."""

    def __init__(self, path: str | Path, audio: str = ""):
        self.path = Path(path)
        self.format = timestamp_format(self.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", suffix=".tmp", dir=self.path.parent)
        self.tmp = Path(tmp)
        self._file: IO[str] = os.fdopen(fd, "w", encoding="utf-8")
        self.count = 0
        self.end = 0.0
        if self.format == "json":
            self._file.write('{"audio": ' + json.dumps(audio) + ', "timings": [')
        elif self.format == "vtt":
            self._file.write("WEBVTT\n\n")

    def write(self, timings: Iterable[Timing]) -> None:
        for t in timings:
            if t.start < self.end - 1e-9:
                raise ValueError(
                    f"timing {t.text!r} starts at {t.start:.3f} s, before the previous one ended ({self.end:.3f} s)"
                )
            self.count += 1
            self.end = t.end
            if self.format == "json":
                self._file.write(("," if self.count > 1 else "") + "\n " + json.dumps(asdict(t), ensure_ascii=False))
            else:
                sep = "," if self.format == "srt" else "."
                number = f"{self.count}\n" if self.format == "srt" else ""
                self._file.write(f"{number}{_clock(t.start, sep)} --> {_clock(t.end, sep)}\n{t.text}\n\n")
        self._file.flush()

    def close(self) -> None:
        if self.format == "json":
            self._file.write("\n]}\n")
        self._file.close()
        from ..util.files import current_umask

        os.chmod(self.tmp, 0o666 & ~current_umask())
        self.tmp.replace(self.path)

    def abort(self) -> None:
        try:
            self._file.close()
        finally:
            self.tmp.unlink(missing_ok=True)
