"""Action journals: header, replay, torn tail, and the secret guard."""

import pytest

from neon_tui.incident.actions import create_action_journal, list_action_journals, read_action_journal
from neon_tui.neon.secret import Secret
from neon_tui.rotation.journal import JournalError


def test_round_trip_and_order(tmp_path):
    j = create_action_journal("keys", host="console.neon.tech", account="u1", key_kind="personal", directory=tmp_path)
    j.write("key_created", key_id=7, name="neon-tui", scope="personal")
    j.write("key_revoked", key_id=3, which="old")
    j.close()
    (path,) = list_action_journals("keys", directory=tmp_path)
    log = read_action_journal(path)
    assert log.kind == "keys" and log.header["account"] == "u1"
    assert set(log.header["operator"]) == {"user", "hostname"}
    assert [r["event"] for r in log.records] == ["key_created", "key_revoked"]
    assert log.events("key_revoked")[0]["key_id"] == 3
    assert list_action_journals("ipallow", directory=tmp_path) == []


def test_torn_tail_dropped_damaged_line_reported(tmp_path):
    j = create_action_journal("roles", host="h", account="a", directory=tmp_path)
    j.write("role_dropped", project_id="p", branch_id="b", role="r")
    j.close()
    with open(j.path, "a") as fh:
        fh.write("garbage\n{\"event\": \"role_kept\"}\n{\"event\": \"role_dr")
    log = read_action_journal(j.path)
    assert [r["event"] for r in log.records] == ["role_dropped", "role_kept"]
    assert len(log.problems) == 1 and ":2:" not in log.problems[0]


def test_refuses_secrets_and_foreign_files(tmp_path):
    j = create_action_journal("keys", host="h", account="a", directory=tmp_path)
    with pytest.raises(JournalError):
        j.write("key_created", key="napi_secret")
    with pytest.raises(JournalError):
        j.write("key_created", token=Secret("x"))
    j.close()
    other = tmp_path / "keys-x.jsonl"
    other.write_text('{"event": "run"}\n')
    with pytest.raises(JournalError):
        read_action_journal(other)
    with pytest.raises(ValueError):
        create_action_journal("nonsense", host="h", account="a", directory=tmp_path)
