"""Clipboard path choice, fallbacks, auto-clear and masking, with fake terminals and system clipboards."""

from __future__ import annotations

import shutil

import pytest
from clip_helpers import BrokenNative, FakeClock, FakeNative, FakeOsc52, SilentNative

from neon_tui.clipboard import MODES, TMUX_BLANK, Clipboard, ClipboardUnavailable, TmuxError, run_tmux
from neon_tui.neon.secret import Secret

VALUE = "postgresql://alex:Zq9-sEcReT-pässwörd@ep-cool-1.eu.neon.tech/app?sslmode=require"
LOCAL = {"DISPLAY": ":0", "PATH": "/usr/bin:/bin"}
IN_TMUX = {**LOCAL, "TMUX": "/tmp/tmux-0/neon-test,4242,0"}


class FakeTmux:
    """tmux's paste buffers in memory, answering list-buffers, show-buffer and delete-buffer as tmux 3.3 does
    (newest first); `fail` maps a command ("delete-buffer") or a command and buffer ("delete-buffer buffer0") to
    the TmuxError it raises; `slow` seconds pass on `clock` for each call."""

    def __init__(self, buffers=None, clock=None, slow: float = 0.0) -> None:
        self.buffers: dict[str, bytes] = dict(buffers or {})
        self.calls: list[tuple[tuple[str, ...], float]] = []
        self.fail: dict[str, Exception] = {}
        self.clock, self.slow = clock, slow

    def __call__(self, args, timeout):
        args = tuple(args)
        self.calls.append((args, timeout))
        if self.clock is not None:
            self.clock.advance(self.slow)
        for key in (args[0], " ".join(a for a in args if not a.startswith("-"))):
            if key in self.fail:
                raise self.fail[key]
        if args[0] == "list-buffers":
            return "".join(f"{n}\n" for n in reversed(self.buffers)).encode()
        name = args[args.index("-b") + 1]
        if name not in self.buffers:
            raise TmuxError(f"tmux {args[0]} exited with status 1")
        if args[0] == "show-buffer":
            return self.buffers[name]
        if args[0] == "delete-buffer":
            del self.buffers[name]
            return b""
        raise AssertionError(f"unexpected tmux call {args}")

    def argv_text(self) -> str:
        return repr([a for a, _ in self.calls])


def make(mode="auto", env=LOCAL, native=None, osc52=None, clear_after=45.0, clock=None, tmux=None):
    # A fake tmux unless given: a unit test never talks to a real tmux server.
    return Clipboard(mode, osc52=osc52, clear_after=clear_after, env=env,
                     native=FakeNative() if native is None else native, clock=clock or FakeClock(),
                     tmux=FakeTmux() if tmux is None else tmux)


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
    osc, tmux = FakeOsc52(), FakeTmux()
    cb = make(env={**LOCAL, "SSH_TTY": "/dev/pts/1"}, osc52=osc, tmux=tmux)
    cb.copy(Secret(VALUE))
    assert cb.clear_if_ours() is True
    assert osc.sent == [VALUE, ""]
    assert tmux.calls == []  # not inside tmux: no paste buffers to look at


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


# --- inside tmux: the paste buffers -------------------------------------------------------------------------

def test_in_tmux_the_clear_deletes_every_paste_buffer_holding_the_value():
    """tmux (set-clipboard on) keeps each OSC 52 copy in a paste buffer; an empty OSC 52 changes nothing there."""
    osc = FakeOsc52()
    tmux = FakeTmux({"buffer0": b"the user's own text", "buffer1": VALUE.encode(),
                     "notes": b"DATABASE_URL=" + VALUE.encode() + b"\n", "buffer2": b"postgresql://alex:old@x/app"})
    cb = make(env=IN_TMUX, osc52=osc, tmux=tmux)
    assert cb.copy(Secret(VALUE)) == "osc52"
    assert tmux.calls == []  # nothing is asked at copy time
    report = cb.clear()
    assert report.cleared and report.in_tmux
    assert report.tmux_deleted == 2 and report.tmux_left is None
    assert set(tmux.buffers) == {"buffer0", "buffer2"}  # the user's buffers are left alone
    # tmux drops an empty OSC 52: a blank travels where the copy went and replaces it there
    assert osc.sent == [VALUE, TMUX_BLANK] and TMUX_BLANK.strip() == ""
    assert report.message() == "Clipboard cleared; 2 tmux paste buffers deleted."
    assert report.severity == "information"
    assert {a[0] for a, _ in tmux.calls} == {"list-buffers", "show-buffer", "delete-buffer"}
    assert all(0 < t <= 2.0 for _, t in tmux.calls)
    assert_masked(tmux.argv_text(), report.message(), repr(report))  # never in a command line, a message or repr
    assert cb.remaining() is None and cb.clear() is None


def test_in_tmux_one_buffer_reads_in_the_singular_and_none_is_said_too():
    cb = make(env=IN_TMUX, osc52=FakeOsc52(), tmux=FakeTmux({"buffer0": VALUE.encode()}))
    cb.copy(Secret(VALUE))
    assert cb.clear().message() == "Clipboard cleared; 1 tmux paste buffer deleted."
    cb = make(env=IN_TMUX, osc52=FakeOsc52(), tmux=FakeTmux({"buffer0": b"other"}))
    cb.copy(Secret(VALUE))
    assert cb.clear().message() == "Clipboard cleared; no tmux paste buffer held it."


def test_when_tmux_cannot_be_asked_it_says_where_a_copy_may_remain():
    tmux = FakeTmux({"buffer0": VALUE.encode()})
    tmux.fail["list-buffers"] = TmuxError("tmux list-buffers exited with status 1")
    cb = make(env=IN_TMUX, osc52=FakeOsc52(), tmux=tmux)
    cb.copy(Secret(VALUE))
    report = cb.clear()
    assert report.cleared and report.tmux_deleted == 0 and report.copy_may_remain
    assert report.message() == ("Clipboard cleared; tmux paste buffers may still hold it (tmux list-buffers exited "
                                "with status 1): check tmux list-buffers.")
    assert report.severity == "warning"


def test_a_buffer_that_cannot_be_deleted_is_named():
    tmux = FakeTmux({"buffer0": VALUE.encode(), "buffer1": VALUE.encode()})
    tmux.fail["delete-buffer buffer0"] = TmuxError("tmux delete-buffer exited with status 1")
    cb = make(env=IN_TMUX, osc52=FakeOsc52(), tmux=tmux)
    cb.copy(Secret(VALUE))
    report = cb.clear()
    assert report.tmux_deleted == 1 and set(tmux.buffers) == {"buffer0"}
    assert report.message() == ("Clipboard cleared; 1 tmux paste buffer deleted, but tmux paste buffers may still "
                                "hold it (could not delete buffer0): check tmux list-buffers.")


def test_a_buffer_that_vanished_meanwhile_is_no_problem_but_an_unreadable_one_is():
    tmux = FakeTmux({"buffer0": VALUE.encode(), "gone": b"x", "locked": b"y"})
    tmux.fail["show-buffer gone"] = TmuxError("tmux show-buffer exited with status 1")
    tmux.fail["show-buffer locked"] = TmuxError("tmux show-buffer did not answer in time")
    del tmux.buffers["gone"]  # listed first, deleted by the user before we read it
    real_list = tmux.__call__

    listed = []

    def with_gone(args, timeout):
        if args[0] == "list-buffers" and not listed:
            listed.append(1)
            return b"gone\nlocked\nbuffer0\n"
        return real_list(args, timeout)

    cb = make(env=IN_TMUX, osc52=FakeOsc52(), tmux=with_gone)
    cb.copy(Secret(VALUE))
    report = cb.clear()
    assert report.tmux_deleted == 1
    assert report.tmux_left == "could not read locked"


def test_a_slow_tmux_is_given_two_seconds_in_all_then_left_with_a_warning():
    clock = FakeClock()
    tmux = FakeTmux({f"buffer{i}": b"other" for i in range(20)}, clock=clock, slow=0.3)
    cb = make(env=IN_TMUX, osc52=FakeOsc52(), tmux=tmux, clock=clock)
    cb.copy(Secret(VALUE))
    report = cb.clear()
    assert len(tmux.calls) <= 8
    assert all(t <= 1.0 for _, t in tmux.calls)
    assert "did not answer in time" in report.message() and "tmux list-buffers" in report.message()


def test_an_unexpected_error_from_tmux_never_escapes_the_clear():
    def broken(args, timeout):
        raise ValueError(f"weird {VALUE}")

    cb = make(env=IN_TMUX, osc52=FakeOsc52(), tmux=broken)
    cb.copy(Secret(VALUE))
    report = cb.clear()
    assert report.tmux_left == "tmux could not be asked (ValueError)"
    assert_masked(report.message())


def test_a_native_copy_inside_tmux_leaves_tmux_alone():
    tmux, native = FakeTmux({"buffer0": b"x"}), FakeNative()
    cb = make("native", env=IN_TMUX, native=native, tmux=tmux)
    assert cb.copy(Secret(VALUE)) == "native"
    report = cb.clear()
    assert report.message() == "Clipboard cleared." and native.text == ""
    assert tmux.calls == []


def test_a_failed_clear_says_the_clipboard_may_still_hold_it():
    def osc(text):
        if not text.strip():
            raise OSError("terminal gone")

    cb = make("osc52", env=LOCAL, osc52=osc)
    cb.copy(Secret(VALUE))
    report = cb.clear()
    assert not report.cleared
    assert report.message() == "Could not clear the terminal clipboard (OSError): it may still hold the copy."
    native = FakeNative()
    cb = make("native", native=native)
    cb.copy(Secret(VALUE))
    native.broken = True
    assert cb.clear().message() == ("Could not clear the system clipboard (PyperclipException): it may still hold "
                                    "the copy.")


def test_nothing_to_say_when_the_user_copied_something_else_since():
    native = FakeNative()
    cb = make("native", native=native)
    cb.copy(Secret(VALUE))
    native.text = "mine"
    report = cb.clear()
    assert report is not None and not report.cleared and report.message() is None


def test_the_real_runner_asks_the_server_named_in_TMUX_and_reports_failures_by_name(tmp_path, monkeypatch):
    log = tmp_path / "argv"
    tool = tmp_path / "tmux"
    sleep = shutil.which("sleep")
    tool.write_text(f"#!/bin/sh\nprintf '%s\\n' \"$@\" > {log}\ncase \"$3\" in\n"
                    "  list-buffers) printf 'buffer0\\n';;\n  show-buffer) echo secret-ish >&2; exit 1;;\n"
                    f"  hang) exec {sleep} 5;;\nesac\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    run = run_tmux("/tmp/tmux-0/neon-test")
    assert run(["list-buffers", "-F", "#{buffer_name}"], 1.0) == b"buffer0\n"
    assert log.read_text().split() == ["-S", "/tmp/tmux-0/neon-test", "list-buffers", "-F", "#{buffer_name}"]
    with pytest.raises(TmuxError, match="^tmux show-buffer exited with status 1$"):
        run(["show-buffer", "-b", "buffer0"], 1.0)  # stderr is not repeated
    with pytest.raises(TmuxError, match="^tmux hang did not answer in time$"):
        run(["hang"], 0.2)
    monkeypatch.setenv("PATH", str(tmp_path / "nowhere"))
    with pytest.raises(TmuxError, match="^tmux list-buffers could not be run"):
        run(["list-buffers"], 1.0)


def test_the_clipboard_finds_its_tmux_server_from_TMUX(monkeypatch):
    seen = []
    monkeypatch.setattr("neon_tui.clipboard.run_tmux", lambda socket: seen.append(socket) or FakeTmux())
    cb = Clipboard("osc52", osc52=FakeOsc52(), env=IN_TMUX, clock=FakeClock())
    cb.copy(Secret(VALUE))
    cb.clear()
    assert seen == ["/tmp/tmux-0/neon-test"]


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


# --- what the app says ----------------------------------------------------------------------------------------

def _app_in_tmux(tmp_path, tmux, clock):
    from ui_helpers import make_app, make_sim

    app = make_app(make_sim(), tmp_path)
    app.clip = Clipboard("auto", osc52=app.copy_to_clipboard, clear_after=45, env=IN_TMUX, clock=clock, tmux=tmux)
    return app


async def test_the_auto_clear_in_tmux_says_how_many_paste_buffers_went(tmp_path):
    clock = FakeClock()
    tmux = FakeTmux({"buffer0": b"mine"})
    app = _app_in_tmux(tmp_path, tmux, clock)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        assert app.copy_secret(Secret(VALUE), "the connection string")
        tmux.buffers["buffer1"] = VALUE.encode()  # what tmux (set-clipboard on) made of the OSC 52 copy
        clock.advance(45)
        app._clipboard_tick()
        await pilot.pause()
        notes = [(n.message, n.severity) for n in app.notices]
        assert ("Clipboard cleared; 1 tmux paste buffer deleted.", "information") in notes
        assert tmux.buffers == {"buffer0": b"mine"}
        assert app.clipboard == TMUX_BLANK
        assert_masked(*(m for m, _ in notes))


async def test_the_auto_clear_in_tmux_warns_when_a_copy_may_remain(tmp_path):
    clock = FakeClock()
    tmux = FakeTmux({"buffer0": VALUE.encode()})
    tmux.fail["list-buffers"] = TmuxError("tmux list-buffers could not be run (FileNotFoundError)")
    app = _app_in_tmux(tmp_path, tmux, clock)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        app.copy_secret(Secret(VALUE), "the connection string")
        clock.advance(46)
        app._clipboard_tick()
        await pilot.pause()
        warning = next(n for n in app.notices if n.severity == "warning")
        assert warning.message == ("Clipboard cleared; tmux paste buffers may still hold it (tmux list-buffers could "
                                   "not be run (FileNotFoundError)): check tmux list-buffers.")
        assert warning.timeout >= 20
        assert not any(n.message == "Clipboard cleared." for n in app.notices)


async def test_quitting_clears_tmux_too_and_says_so_on_the_way_out(tmp_path, capsys):
    clock = FakeClock()
    tmux = FakeTmux()
    app = _app_in_tmux(tmp_path, tmux, clock)
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        app.copy_secret(Secret(VALUE), "the connection string")
        tmux.buffers["buffer0"] = VALUE.encode()
        await pilot.press("q")
        await pilot.pause()
    assert not tmux.buffers
    said = capsys.readouterr()
    assert "Clipboard cleared; 1 tmux paste buffer deleted." in said.err + said.out
    assert_masked(said.err, said.out)


async def test_quitting_with_nothing_pending_says_nothing(tmp_path, capsys):
    app = _app_in_tmux(tmp_path, FakeTmux(), FakeClock())
    async with app.run_test(size=(100, 30)) as pilot:
        await pilot.pause()
        await pilot.press("q")
        await pilot.pause()
    said = capsys.readouterr()
    assert "Clipboard" not in said.err + said.out
