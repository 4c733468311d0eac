"""Live progress of a batch: a rich table per model when on a terminal, plain lines otherwise."""

from __future__ import annotations

import sys
import time
from collections import defaultdict
from typing import Any

from qrecorder.runner.cells import Cell
from qrecorder.runner.messages import CellResult


class ProgressDisplay:
    """Counts per model (done / failed / running / queued) and the mean IC of finished cells."""

    def __init__(self, cells: list[Cell], skipped: int = 0, enabled: bool = True, stream: Any = None) -> None:
        self.stream = stream or sys.stderr
        self.total = {m: 0 for m in dict.fromkeys(c.model for c in cells)}
        for c in cells:
            self.total[c.model] += 1
        self.done: dict[str, int] = defaultdict(int)
        self.failed: dict[str, int] = defaultdict(int)
        self.running: dict[str, int] = defaultdict(int)
        self.ics: dict[str, list[float]] = defaultdict(list)
        self.skipped, self.t0 = skipped, time.monotonic()
        self.live: Any = None
        self.enabled = enabled
        self.tty = enabled and getattr(self.stream, "isatty", lambda: False)()

    def __enter__(self) -> ProgressDisplay:
        if self.tty:
            from rich.console import Console
            from rich.live import Live

            self.live = Live(self._render(), console=Console(file=self.stream), refresh_per_second=4, transient=False)
            self.live.__enter__()
        elif self.enabled:
            n = sum(self.total.values())
            self._line(f"{n} cells to run ({self.skipped} already finished, skipped)")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.live is not None:
            self.live.update(self._render())
            self.live.__exit__(*exc)

    def _line(self, text: str) -> None:
        print(f"[{time.monotonic() - self.t0:7.1f}s] {text}", file=self.stream, flush=True)

    def _render(self) -> Any:
        from rich.table import Table

        n = sum(self.total.values())
        fin = sum(self.done.values()) + sum(self.failed.values())
        t = Table(title=f"qrec run-all: {fin}/{n} cells, {self.skipped} resumed, "
                        f"{time.monotonic() - self.t0:.0f}s", title_justify="left")
        for col in ("model", "done", "failed", "running", "queued", "IC (mean)"):
            t.add_column(col, justify="left" if col == "model" else "right")
        for m, tot in self.total.items():
            d, f, r = self.done[m], self.failed[m], self.running[m]
            ic = f"{sum(self.ics[m]) / len(self.ics[m]):.4f}" if self.ics[m] else ""
            t.add_row(m, str(d), f"[red]{f}[/red]" if f else "0", str(r), str(tot - d - f - r), ic)
        return t

    def _refresh(self) -> None:
        if self.live is not None:
            self.live.update(self._render())

    def started(self, cell: Cell, attempt: int) -> None:
        self.running[cell.model] += 1
        if self.enabled and not self.tty:
            self._line(f"start  {cell.model} seed={cell.seed}" + (f" (retry {attempt})" if attempt else ""))
        self._refresh()

    def finished(self, cell: Cell, result: CellResult, will_retry: bool) -> None:
        self.running[cell.model] = max(0, self.running[cell.model] - 1)
        if result.ok:
            self.done[cell.model] += 1
            ic = result.metrics.get("IC")
            if ic is not None:
                self.ics[cell.model].append(float(ic))
            msg = f"done   {cell.model} seed={cell.seed} in {result.wall_seconds or 0:.1f}s"
        elif will_retry:
            msg = f"retry  {cell.model} seed={cell.seed}: {result.headline[-200:]}"
        else:
            if not result.killed:
                self.failed[cell.model] += 1
            msg = f"{'killed' if result.killed else 'FAILED'} {cell.model} seed={cell.seed}: {result.headline[-200:]}"
        if self.enabled and not self.tty:
            self._line(msg)
        elif self.live is not None and not result.ok:
            self.live.console.print(msg)
        self._refresh()

    def message(self, text: str) -> None:
        if self.live is not None:
            self.live.console.print(text)
        elif self.enabled:
            self._line(text)
