"""Clipboard path choice, fallbacks, auto-clear and masking, with fake terminals and system clipboards."""

from __future__ import annotations

import pytest
from clip_helpers import BrokenNative, FakeClock, FakeNative, FakeOsc52, SilentNative

from neon_tui.clipboard import MODES, Clipboard, ClipboardUnavailable
from neon_tui.neon.secret import Secret

VALUE = "postgresql://alex:Zq9-sEcReT-pässwörd@ep-cool-1.eu.neon.tech/app?sslmode=require"
LOCAL = {"DISPLAY": ":0", "PATH": "/usr/bin:/bin"}


def make(mode="auto", env=LOCAL, native=None, osc52=None, clear_after=45.0, clock=None):
    return Clipboard(mode, osc52=osc52, clear_after=clear_after, env=env,
                     native=FakeNative() if native is None else native, clock=clock or FakeClock())


def assert_masked(*texts: str) -> None:
    for t in texts:
        assert VALUE not in t
        assert "sEcReT" not in t


# --- which path ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("var", ["SSH_TTY", "SSH_CONNECTION", "SSH_CLIENT", "TMUX"])
def test_auto_prefers_osc52_over_ssh_and_in_tmux(var):
    osc, native = FakeOsc52(), FakeNative()
    cb = make(env={**LOCAL, var: "/dev/pts/3"}, osc52=osc, native=native)
    assert cb.resolve() == "osc52"
    assert cb.copy(Secret(VALUE)) == "osc52"
    assert osc.sent == [VALUE]
    assert native.copies == 0


def test_auto_uses_the_system_clipboard_locally():
    osc, native = FakeOsc52(), FakeNative()
    cb = make(osc52=osc, native=native)
    assert cb.resolve() == "native"
    assert cb.copy(Secret(VALUE)) == "native"
    assert native.text == VALUE
    assert osc.sent == []
    assert cb.fallback_reason is None


def test_auto_over_ssh_without_a_terminal_copy_uses_native():
    native = FakeNative()
    cb = make(env={**LOCAL, "SSH_TTY": "/dev/pts/1"}, native=native)
    assert cb.resolve() == "native"
    assert cb.copy(Secret(VALUE)) == "native"
    assert native.text == VALUE


def test_empty_ssh_variables_do_not_count():
    cb = make(env={**LOCAL, "SSH_TTY": "", "TMUX": ""}, osc52=FakeOsc52())
    assert cb.resolve() == "native"


@pytest.mark.parametrize("mode", ["osc52", "native", "off"])
def test_explicit_modes_resolve_to_themselves(mode):
    assert make(mode, env={**LOCAL, "SSH_TTY": "x"}, osc52=FakeOsc52()).resolve() == mode


def test_unknown_mode_is_refused():
    assert MODES == ("auto", "osc52", "native", "off")
    with pytest.raises(ValueError, match="auto, osc52, native, off"):
        Clipboard("xclip")


def test_copy_takes_only_secrets():
    with pytest.raises(TypeError):
        make().copy(VALUE)  # type: ignore[arg-type]


# --- failures and fallbacks ---------------------------------------------------------------------------------

def test_auto_falls_back_to_osc52_when_native_fails_and_says_so():
    osc = FakeOsc52()
    cb = make(env={"PATH": "/nonexistent"}, osc52=osc, native=BrokenNative())
    assert cb.copy(Secret(VALUE)) == "native→osc52"
    assert osc.sent == [VALUE]
    assert "no DISPLAY" in cb.fallback_reason
    assert_masked(cb.fallback_reason)


def test_auto_falls_back_when_the_copy_silently_does_not_land():
    osc = FakeOsc52()
    cb = make(osc52=osc, native=SilentNative())
    assert cb.copy(Secret(VALUE)) == "native→osc52"
    assert "did not land" in cb.fallback_reason


def test_a_later_native_success_clears_the_fallback_reason():
    native = FakeNative()
    native.broken = True
    cb = make(osc52=FakeOsc52(), native=native)
    assert cb.copy(Secret(VALUE)) == "native→osc52"
    native.broken = False  # the display came back
    assert cb.copy(Secret(VALUE)) == "native"
    assert cb.fallback_reason is None


def test_explicit_native_failure_raises_without_falling_back():
    osc = FakeOsc52()
    cb = make("native", env={"PATH": "/nonexistent"}, osc52=osc, native=BrokenNative())
    with pytest.raises(ClipboardUnavailable) as ei:
        cb.copy(Secret(VALUE))
    msg = str(ei.value)
    assert "system clipboard is not usable" in msg and "no DISPLAY or WAYLAND_DISPLAY" in msg
    assert "PyperclipException" in msg
    assert osc.sent == []
    assert ei.value.title == "Clipboard unavailable"
    assert ei.value.__cause__ is None and ei.value.__context__ is None
    assert_masked(msg, repr(ei.value))
    assert cb.remaining() is None


def test_native_failure_names_the_missing_tool(tmp_path):
    cb = make("native", env={"DISPLAY": ":0", "PATH": str(tmp_path)}, native=BrokenNative())
    with pytest.raises(ClipboardUnavailable, match="none of xclip, xsel or wl-copy"):
        cb.copy(Secret(VALUE))


def test_native_failure_with_a_tool_blames_the_display(tmp_path):
    tool = tmp_path / "xclip"
    tool.write_text("#!/bin/sh\nexit 1\n")
    tool.chmod(0o755)
    cb = make("native", env={"DISPLAY": ":42", "PATH": str(tmp_path)}, native=SilentNative())
    with pytest.raises(ClipboardUnavailable, match="could not reach the display :42"):
        cb.copy(Secret(VALUE))


def test_auto_native_failure_without_osc52_raises():
    cb = make(env={"PATH": "/nonexistent"}, native=BrokenNative())
    with pytest.raises(ClipboardUnavailable, match="no terminal \\(OSC 52\\) copy") as ei:
        cb.copy(Secret(VALUE))
    assert_masked(str(ei.value))


def test_off_raises():
    native, osc = FakeNative(), FakeOsc52()
    cb = make("off", osc52=osc, native=native)
    with pytest.raises(ClipboardUnavailable, match="turned off"):
        cb.copy(Secret(VALUE))
    assert native.copies == 0 and osc.sent == []


def test_explicit_osc52_without_a_terminal_raises():
    cb = make("osc52")
    with pytest.raises(ClipboardUnavailable, match="OSC 52"):
        cb.copy(Secret(VALUE))


def test_osc52_that_raises_is_reported_without_the_value():
    def boom(text):
        raise OSError(f"write failed for {text}")

    cb = make("osc52", osc52=boom)
    with pytest.raises(ClipboardUnavailable, match="OSError") as ei:
        cb.copy(Secret(VALUE))
    assert_masked(str(ei.value))
    assert ei.value.__context__ is None


def test_missing_pyperclip_is_reported(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "pyperclip", None)  # makes `import pyperclip` raise ImportError
    cb = Clipboard("native", env=LOCAL)
    with pytest.raises(ClipboardUnavailable, match="pyperclip is not installed"):
        cb.copy(Secret(VALUE))


# --- auto-clear ---------------------------------------------------------------------------------------------

def test_remaining_counts_down_to_zero():
    clock = FakeClock()
    cb = make(clock=clock, clear_after=45)
    assert cb.remaining() is None
    cb.copy(Secret(VALUE))
    assert cb.remaining() == 45
    clock.advance(30.5)
    assert cb.remaining() == pytest.approx(14.5)
    clock.advance(100)
    assert cb.remaining() == 0


def test_a_new_copy_restarts_the_countdown():
    clock = FakeClock()
    cb = make(clock=clock, clear_after=10)
    cb.copy(Secret(VALUE))
    clock.advance(8)
    cb.copy(Secret("other"))
    assert cb.remaining() == 10


def test_clear_after_zero_disables_auto_clear_and_keeps_nothing():
    native = FakeNative()
    cb = make(native=native, clear_after=0)
    assert cb.copy(Secret(VALUE)) == "native"
    assert native.text == VALUE
    assert cb.remaining() is None
    assert cb.clear_if_ours() is False
    assert native.text == VALUE


def test_clear_if_ours_clears_our_native_value():
    clock, native = FakeClock(), FakeNative()
    cb = make(native=native, clock=clock)
    cb.copy(Secret(VALUE))
    clock.advance(45)
    assert cb.remaining() == 0
    assert cb.clear_if_ours() is True
    assert native.text == ""
    assert cb.remaining() is None
    assert cb.clear_if_ours() is False


def test_clear_if_ours_leaves_what_the_user_copied_since():
    clock, native = FakeClock(), FakeNative()
    cb = make(native=native, clock=clock)
    cb.copy(Secret(VALUE))
    clock.advance(20)
    native.text = "something the user copied"
    clock.advance(25)
    assert cb.clear_if_ours() is False
    assert native.text == "something the user copied"
    assert cb.remaining() is None  # forgotten either way


def test_clear_if_ours_over_osc52_sends_an_empty_copy():
    osc = FakeOsc52()
    cb = make(env={**LOCAL, "TMUX": "/tmp/tmux-0/default,1,0"}, osc52=osc)
    cb.copy(Secret(VALUE))
    assert cb.clear_if_ours() is True
    assert osc.sent == [VALUE, ""]


def test_after_a_fallback_the_clear_goes_through_osc52():
    osc = FakeOsc52()
    cb = make(osc52=osc, native=BrokenNative())
    assert cb.copy(Secret(VALUE)) == "native→osc52"
    assert cb.clear_if_ours() is True
    assert osc.sent == [VALUE, ""]


def test_clear_if_ours_never_raises():
    native = FakeNative()
    cb = make(native=native)
    cb.copy(Secret(VALUE))
    native.broken = True
    assert cb.clear_if_ours() is False
    assert cb.remaining() is None


def test_forget_drops_the_pending_clear_without_touching_the_clipboard():
    native = FakeNative()
    cb = make(native=native)
    cb.copy(Secret(VALUE))
    cb.forget()
    assert cb.remaining() is None
    assert cb.clear_if_ours() is False
    assert native.text == VALUE


# --- the value never shows --------------------------------------------------------------------------------

def test_repr_and_str_never_show_the_value():
    cb = make(osc52=FakeOsc52())
    cb.copy(Secret(VALUE))
    assert repr(cb) == "Clipboard(mode='auto', pending)"
    assert_masked(repr(cb), str(cb), repr(vars(cb)) if hasattr(cb, "__dict__") else "")
    cb.forget()
    assert repr(cb) == "Clipboard(mode='auto', idle)"


@pytest.mark.parametrize("mode,native", [("native", BrokenNative()), ("osc52", None), ("off", None)])
def test_a_traceback_with_locals_never_shows_the_value(mode, native):
    """Textual renders crashes with rich's show_locals; the frames a ClipboardUnavailable carries stay masked."""
    import io

    from rich.console import Console
    from rich.traceback import Traceback

    cb = make(mode, env={"PATH": "/nonexistent"}, native=native)
    with pytest.raises(ClipboardUnavailable) as ei:
        cb.copy(Secret(VALUE))
    out = io.StringIO()
    Console(file=out, width=200).print(Traceback.from_exception(ei.type, ei.value, ei.tb, show_locals=True))
    assert "ClipboardUnavailable" in out.getvalue()
    assert_masked(out.getvalue())


def test_failed_copy_keeps_the_earlier_pending_clear():
    clock, native = FakeClock(), FakeNative()
    cb = make("native", native=native, clock=clock)
    cb.copy(Secret(VALUE))
    clock.advance(5)
    native.broken = True
    with pytest.raises(ClipboardUnavailable):
        cb.copy(Secret("another"))
    assert cb.remaining() == 40


def test_the_module_stays_free_of_textual_and_rich():
    import ast
    import pathlib

    import neon_tui.clipboard as mod

    tree = ast.parse(pathlib.Path(mod.__file__).read_text())
    names = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    assert not names & {"textual", "rich"}
