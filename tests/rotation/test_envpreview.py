"""The stored-copies preview: copies listed with their targets, other roles' copies flagged, no password."""

from __future__ import annotations

from test_envfiles import OLD_A, OLD_B, TA, golden, uri

from neon_tui.rotation.envpreview import NEW_MASK, OLD_MASK, preview


def test_preview_lists_copies_marks_other_roles_and_masks_passwords(tmp_path):
    (tmp_path / ".env").write_bytes(golden().encode())
    sub = tmp_path / "svc"
    sub.mkdir()
    (sub / "prod.env").write_text(f"X={uri(OLD_A)}\n")
    pv = preview(tmp_path, [TA], {"ep-old-sun-d4e5f6": ("other", "dev")})
    rows = [(c.value.path.name, c.value.line, c.value.name, c.target, c.rotated) for c in pv.copies]
    assert (".env", 3, "DATABASE_URL", "acme/main/app", True) in rows
    assert (".env", 8, "OTHER_URL", "other/dev/svc", False) in rows       # not in the plan: stays stale
    assert (".env", 9, "NOT_MINE", "acme/main/someone_else", False) in rows
    assert ("prod.env", 1, "X", "acme/main/app", True) in rows
    text = "\n".join(line for d in pv.diffs.values() for line in d)
    assert OLD_MASK in text and NEW_MASK in text
    assert "- export DATABASE_URL_UNPOOLED='postgresql://app:********@" in text
    assert "# pooled" not in text  # comments are not part of the change
    for pw in (OLD_A, OLD_B, "npg_oldA%27pw%231", "npg_oldA"):
        assert pw not in text
    assert len(pv.diffs[tmp_path / ".env"]) == 4 * 3  # four copies of TA, three lines each


def test_preview_of_a_missing_path_is_a_problem_not_a_crash(tmp_path):
    pv = preview(tmp_path / "nope", [TA])
    assert pv.problems and not pv.copies
