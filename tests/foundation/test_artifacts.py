"""The artifact base: versioned, typed, atomic, loud about what it does not know."""

from __future__ import annotations

import json
import logging
import stat
from typing import Any

import pytest

from codetailor.artifacts import Artifact, ArtifactError


class Thing(Artifact):
    SCHEMA_VERSION = 2
    name: str
    count: int = 0

    @classmethod
    def migrate(cls, data: dict[str, Any], version: int) -> dict[str, Any]:
        if version < 2 and "n" in data:  # version 1 called it n
            data["count"] = data.pop("n")
        return data


def test_round_trip_is_atomic_private_and_versioned(tmp_path):
    p = tmp_path / "thing.json"
    Thing(name="a", count=3).write(p)
    assert json.loads(p.read_text())["schema_version"] == 2
    assert stat.S_IMODE(p.stat().st_mode) == 0o600
    back = Thing.read(p)
    assert (back.name, back.count, back.schema_version) == ("a", 3, 2)
    assert not [q for q in tmp_path.iterdir() if q.name.startswith(".")]
    with pytest.raises(Exception):
        back.count = 4  # frozen


def test_older_files_migrate_and_unversioned_ones_count_as_zero(tmp_path):
    p = tmp_path / "thing.json"
    p.write_text(json.dumps({"schema_version": 1, "name": "a", "n": 7}))
    assert Thing.read(p).count == 7
    p.write_text(json.dumps({"name": "b", "n": 2}))
    assert Thing.read(p).count == 2


def test_newer_files_are_refused_with_a_clear_message(tmp_path):
    p = tmp_path / "thing.json"
    p.write_text(json.dumps({"schema_version": 3, "name": "a"}))
    with pytest.raises(ArtifactError, match="newer codetailor"):
        Thing.read(p)


def test_unknown_keys_are_warned_about_and_dropped(tmp_path, caplog):
    p = tmp_path / "thing.json"
    p.write_text(json.dumps({"schema_version": 2, "name": "a", "colour": "red"}))
    with caplog.at_level(logging.WARNING):
        t = Thing.read(p)
    assert "colour" in caplog.text
    assert "colour" not in t.to_dict()


@pytest.mark.parametrize("text,match", [("{", "not valid JSON"), ("[1]", "JSON object"),
                                        ('{"count": 1}', "name"), ('{"schema_version": -1, "name": "a"}',
                                                                   "non-negative")])
def test_bad_files_raise_artifact_errors(tmp_path, text, match):
    p = tmp_path / "thing.json"
    p.write_text(text)
    with pytest.raises(ArtifactError, match=match):
        Thing.read(p)


def test_absence_is_the_callers_decision(tmp_path):
    with pytest.raises(FileNotFoundError):
        Thing.read(tmp_path / "missing.json")
    assert Thing.read_or_none(tmp_path / "missing.json") is None


def test_an_unversioned_adapter_meta_migrates(tmp_path):
    """A meta.json as training wrote it before versioning (and older key spellings) still reads."""
    from codetailor.artifacts import AdapterMeta

    p = tmp_path / "meta.json"
    p.write_text(json.dumps({"base_model": {"path": "/m", "checksum": "abc"}, "uid": "u1", "version": "v0001",
                             "split": {"seed": 1, "heldout_fraction": 0.1, "by": "file", "train_files": 3,
                                       "heldout_files": ["a.py"]},
                             "evaluation": {"cqi": 7.5, "eval_id": "e", "system": "ft+rag"},
                             "public_loss_change": 0.01, "losses": {"train": 1.0, "heldout": None}}))
    m = AdapterMeta.read(p)
    assert (m.uid, m.base_model.checksum, m.heldout, m.cqi, m.evaluation.system) == ("u1", "abc", ("a.py",), 7.5, "ft+rag")
    p.write_text(json.dumps({"heldout": ["b.py"], "base_model_checksum": "def"}))
    m = AdapterMeta.read(p)
    assert (m.heldout, m.base_model.checksum) == (("b.py",), "def")
    p.write_text(json.dumps({"split": {"held_out": ["c.py"]}}))
    assert AdapterMeta.read(p).heldout == ("c.py",)


def test_adapter_records_refuse_bad_systems_and_newer_files(tmp_path):
    from codetailor.artifacts import AdapterMeta, AdapterState

    p = tmp_path / "state.json"
    p.write_text(json.dumps({"active": "v0001", "system": "magic"}))
    with pytest.raises(ArtifactError, match="system"):
        AdapterState.read(p)
    p.write_text(json.dumps({"schema_version": AdapterMeta.SCHEMA_VERSION + 1}))
    with pytest.raises(ArtifactError, match="newer codetailor"):
        AdapterMeta.read(p)
