"""`neon-tui --check-config` (and the start-up notification) never repeat a sink's argv: one holding a secret and
an unbalanced brace used to be printed whole (found by issue 11's adversarial review)."""

from __future__ import annotations

from neon_tui.cli import main


def test_check_config_never_prints_a_secret_from_a_sink_argv(tmp_path, monkeypatch, capsys):
    cfg = tmp_path / "config.toml"
    cfg.write_text('[sinks.hook]\nargv = ["curl", "-H", "Authorization: Bearer napi_Sup3rS3cretKeyValue{", '
                   '"https://hooks.example.com"]\nstdin = "value"\n', encoding="utf-8")
    monkeypatch.setenv("NEON_TUI_CONFIG", str(cfg))
    assert main(["--check-config"]) == 1
    out = capsys.readouterr()
    assert "sinks.hook" in out.out
    assert "napi_Sup3rS3cretKeyValue" not in out.out + out.err
    assert "argv[2]" in out.out  # the problem is still named, by position
