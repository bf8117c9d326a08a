"""The Qdrant service's API key reaches the client (the chart sets it on both sides from one Secret)."""

from __future__ import annotations

from codetailor.config import load_settings
from codetailor.home import Home


def test_the_service_client_sends_the_configured_api_key(tmp_path, monkeypatch):
    import qdrant_client

    from retrieval import vectors

    made = []

    class Recorder:
        def __init__(self, **kw):
            made.append(kw)

    monkeypatch.setattr(qdrant_client, "QdrantClient", Recorder)
    monkeypatch.setattr(vectors, "_clients", {})
    monkeypatch.setenv("CODETAILOR_RETRIEVAL__QDRANT_API_KEY", "k-123")
    settings = load_settings(home=tmp_path, retrieval={"vector_store": "service", "qdrant_url": "http://q:6333"})
    assert "k-123" not in repr(settings)  # a secret, never printed with the settings
    vectors.open_store(settings, Home(tmp_path).tenant("acme"), 384)
    assert made == [{"url": "http://q:6333", "api_key": "k-123", "timeout": 5}]


def test_no_key_configured_sends_none(tmp_path, monkeypatch):
    import qdrant_client

    from retrieval import vectors

    made = []
    monkeypatch.setattr(qdrant_client, "QdrantClient", lambda **kw: made.append(kw))
    monkeypatch.setattr(vectors, "_clients", {})
    monkeypatch.delenv("CODETAILOR_RETRIEVAL__QDRANT_API_KEY", raising=False)
    settings = load_settings(home=tmp_path, retrieval={"vector_store": "service", "qdrant_url": "http://q:6333"})
    vectors.open_store(settings, Home(tmp_path).tenant("acme"), 384)
    assert made[0]["api_key"] is None
