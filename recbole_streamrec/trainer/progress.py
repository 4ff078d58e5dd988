"""Progress lines for long phases (training epochs, annotation), written to RecBole's log.

RecBole logs one line when an epoch ends; an epoch of a generative model can take minutes on a CPU, so
:class:`Progress` adds a line at most every ``progress_interval`` seconds while it runs:
``[pretrain] epoch 0: 120/190 batches (63%), 710 samples/s, about 50s left``. ``progress_interval: 0`` turns
the lines off. Only rank 0 of a data-parallel run writes them.
"""

from __future__ import annotations

from logging import getLogger
from time import monotonic
from typing import Optional

from recbole_streamrec.distributed import rank


def progress_interval(config) -> float:
    """Seconds between progress lines of a long phase (``progress_interval``; default 30, 0: none)."""
    value = config["progress_interval"]
    return 30.0 if value is None else float(value)


class Progress:
    """Counts units of work (``tick``) and logs where a phase stands every ``interval`` seconds."""

    def __init__(self, label: str, total: int, interval: float, unit: str = "batches", clock=monotonic):
        self.label, self.total, self.interval, self.unit, self.clock = label, max(int(total), 1), float(interval), unit, clock
        self.done, self.samples = 0, 0
        self.start = self.last = clock()
        self.lines = 0

    def tick(self, units: int = 1, samples: int = 0) -> Optional[str]:
        """Record ``units`` finished (holding ``samples`` rows); return the line logged, if one was due."""
        self.done += units
        self.samples += samples
        now = self.clock()
        if self.interval <= 0 or now - self.last < self.interval or self.done >= self.total or rank() != 0:
            return None
        self.last, self.lines = now, self.lines + 1
        elapsed = now - self.start
        line = f"{self.label}: {self.done}/{self.total} {self.unit} ({100 * self.done / self.total:.0f}%)"
        if self.samples and elapsed > 0:
            line += f", {self.samples / elapsed:.0f} samples/s"
        line += f", about {elapsed * (self.total - self.done) / self.done:.0f}s left"
        getLogger().info(line)
        return line
