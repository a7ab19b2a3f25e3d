"""Progress bars of a running study: trials overall, and the current trial's steps."""

from __future__ import annotations

from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class StudyProgress:
    def __init__(self, total: int, done: int, enabled: bool = True, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True)
        self.enabled = enabled
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            disable=not enabled,
            transient=False,
        )
        self.trials = self.progress.add_task("trials", total=total, completed=done, info="")
        self.steps = self.progress.add_task("  steps", total=1, completed=0, info="", visible=False)
        self.outcomes: dict[str, int] = {}

    def __enter__(self) -> StudyProgress:
        self.progress.__enter__()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.progress.__exit__(exc_type, exc, tb)

    def message(self, text: str) -> None:
        if self.enabled:
            self.progress.console.print(f"[dim]{text}[/dim]")

    def warn(self, text: str) -> None:
        """Printed with or without progress bars: a warning must reach logs too."""
        self.progress.console.print(f"[yellow]{text}[/yellow]", soft_wrap=True)

    def trial_started(self, number: int, description: str) -> None:
        self.progress.update(self.steps, total=1, completed=0, visible=True, description=f"  trial {number}")
        self.progress.update(self.trials, info=description)

    def step(self, step: int, total: int, loss: float) -> None:
        self.progress.update(self.steps, total=total, completed=step, info=f"loss {loss:.3f}")

    def trial_finished(self, frozen: Any) -> None:
        status = frozen.user_attrs.get("wb.status") or frozen.state.name.lower()
        self.outcomes[status] = self.outcomes.get(status, 0) + 1
        metrics = frozen.user_attrs.get("wb.metrics") or {}
        if status == "complete":
            line = f"trial {frozen.number}: ppl {metrics.get('val_ppl', float('nan')):.2f}"
            if "duplicate_of" in metrics:
                line += f" (same design as trial {metrics['duplicate_of']}: its results reused, not trained)"
        else:
            line = f"trial {frozen.number}: {status} ({frozen.user_attrs.get('wb.error', '')})"
        self.progress.update(self.steps, visible=False)
        self.progress.advance(self.trials)
        self.progress.update(
            self.trials, info=", ".join(f"{k} {v}" for k, v in sorted(self.outcomes.items()))
        )
        # One line per trial even without bars: logs of long runs need it.
        self.progress.console.print(line)
