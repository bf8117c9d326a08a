"""A base model without a recorded checksum is hashed once, not at every adapter activation;
a changed checkpoint is hashed again."""

from __future__ import annotations

import os

from codetailor import model


def test_the_checksum_is_computed_once_per_checkpoint_state(tmp_path, monkeypatch):
    (tmp_path / "config.json").write_text("{}")
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(b"w" * 1000)
    reads = []
    real = model._sha256
    monkeypatch.setattr(model, "_sha256", lambda p: reads.append(p.name) or real(p))

    first = model.model_checksum(tmp_path)
    assert model.model_checksum(tmp_path) == first
    assert reads == ["model.safetensors", "config.json"]  # the second call read nothing

    weights.write_bytes(b"v" * 1000)
    st = weights.stat()
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert model.model_checksum(tmp_path) != first
    assert len(reads) == 4
