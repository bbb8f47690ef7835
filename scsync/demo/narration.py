"""What the demo prints: numbered steps, narration, checks (counted, failures kept for the
summary) and a text progress bar."""

from __future__ import annotations

import time


class Narrator:
    def __init__(self) -> None:
        self.failures: list[str] = []
        self.passed = 0
        self.step_no = 0
        self.started = time.monotonic()

    def step(self, title: str) -> None:
        self.step_no += 1
        at = time.monotonic() - self.started
        print(f"\n== {self.step_no}. {title}  [{at:.0f} s]", flush=True)

    def say(self, text: str) -> None:
        print(f"   {text}", flush=True)

    def check(self, ok: bool, text: str) -> bool:
        print(f"   [{'ok' if ok else 'FAILED'}] {text}", flush=True)
        if ok:
            self.passed += 1
        else:
            self.failures.append(text)
        return ok


def progress_bar(done: int, total: int, width: int = 30, extra: str = "") -> str:
    frac = 0.0 if total <= 0 else min(1.0, done / total)
    filled = int(frac * width)
    return f"[{'#' * filled}{'.' * (width - filled)}] {frac * 100:5.1f}% {extra}"
