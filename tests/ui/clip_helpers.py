"""Fakes for the clipboard tests: an OSC 52 recorder, system clipboards that work or fail, and a clock."""

from __future__ import annotations

import pyperclip


class FakeOsc52:
    """Records what the app would have written as OSC 52 sequences."""

    def __init__(self) -> None:
        self.sent: list[str] = []

    def __call__(self, text: str) -> None:
        self.sent.append(text)


class FakeNative:
    """A system clipboard with pyperclip's copy/paste interface that keeps its text in memory."""

    def __init__(self, text: str = "") -> None:
        self.text = text
        self.copies = 0
        self.broken = False  # flip to simulate the display going away mid-session

    def copy(self, text: str) -> None:
        if self.broken:
            raise pyperclip.PyperclipException("display went away")
        self.copies += 1
        self.text = text

    def paste(self) -> str:
        if self.broken:
            raise pyperclip.PyperclipException("display went away")
        return self.text


class BrokenNative:
    """pyperclip on a machine without xclip/DISPLAY; the message echoes the text to prove it is not passed on."""

    def copy(self, text: str) -> None:
        raise pyperclip.PyperclipException(f"could not copy {text}")

    def paste(self) -> str:
        raise pyperclip.PyperclipException("could not paste")


class SilentNative(FakeNative):
    """xclip pointed at a display that is gone: copy 'succeeds' but nothing lands."""

    def copy(self, text: str) -> None:
        self.copies += 1


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
