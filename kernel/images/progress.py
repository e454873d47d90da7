"""Pull/push progress: rich bars per layer on a terminal, Docker-like plain lines otherwise, nothing with -q."""

from __future__ import annotations

import sys
import threading


class Quiet:
    """Reports nothing; the base every reporter extends."""

    def message(self, text: str) -> None:
        pass

    def start(self, key: str, total: int | None, status: str = "Downloading") -> None:
        pass

    def advance(self, key: str, amount: int) -> None:
        pass

    def finish(self, key: str, status: str) -> None:
        pass

    def close(self) -> None:
        pass


class Plain(Quiet):
    """One line per state change (``a3ed95caeb02: Pull complete``), for logs and pipes."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.lock = threading.Lock()

    def _print(self, text: str) -> None:
        with self.lock:
            print(text, file=self.stream, flush=True)

    def message(self, text: str) -> None:
        self._print(text)

    def start(self, key: str, total: int | None, status: str = "Downloading") -> None:
        self._print(f"{key}: {status}")

    def finish(self, key: str, status: str) -> None:
        self._print(f"{key}: {status}")


class Bars(Quiet):
    """A rich progress bar per layer."""

    def __init__(self):
        from rich.console import Console
        from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

        self.console = Console()
        self.progress = Progress(TextColumn("{task.fields[key]}: {task.description}"), BarColumn(),
                                 DownloadColumn(), TransferSpeedColumn(), console=self.console, transient=False)
        self.tasks: dict[str, int] = {}
        self.progress.start()

    def message(self, text: str) -> None:
        self.progress.console.print(text, highlight=False, markup=False)

    def start(self, key: str, total: int | None, status: str = "Downloading") -> None:
        self.tasks[key] = self.progress.add_task(status, total=total, key=key)

    def advance(self, key: str, amount: int) -> None:
        if key in self.tasks:
            self.progress.advance(self.tasks[key], amount)

    def finish(self, key: str, status: str) -> None:
        if key in self.tasks:
            task = self.tasks[key]
            total = self.progress.tasks[task].total
            self.progress.update(task, description=status, completed=total)
        else:
            self.message(f"{key}: {status}")

    def close(self) -> None:
        self.progress.stop()


def reporter(quiet: bool):
    if quiet:
        return Quiet()
    return Bars() if sys.stdout.isatty() else Plain()
