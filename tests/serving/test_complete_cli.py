"""`codetailor complete` sends the editor's cursor as it is, with its kind, and prints the server's text."""

from __future__ import annotations

import json

import pytest

from codetailor.cli import main


class _Client:
    sent: list[dict] = []

    def __init__(self, *a, **k):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def complete(self, **fields):
        self.sent.append(fields)
        return {"id": "cmp-1", "text": "    return y", "system": "base", "adapter_version": "",
                "latency_ms": {"total": 1.0}}


@pytest.fixture
def client(monkeypatch):
    import serving.client

    _Client.sent = []
    monkeypatch.setattr(serving.client, "CompletionClient", _Client)
    return _Client


def test_a_line_start_in_a_file_travels_as_one(client, tmp_path, capsys):
    f = tmp_path / "m.py"
    f.write_text("def f(x):\n    y = x\n    return y\n")
    assert main(["complete", "--file", str(f), "--line", "3", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    sent = client.sent[-1]
    assert (sent["prefix"], sent["cursor_kind"], sent["path"]) == ("def f(x):\n    y = x\n", "line_start", "m.py")
    assert sent["suffix"].startswith("    return y")
    # the server already cut the text for the cursor: printed as it came, under generate's key
    assert out["completion"] == "    return y" and "text" not in out


@pytest.mark.parametrize("argv, kind", [
    (["--prefix", "x = 1\n"], None), (["--prefix", "x = 1\n", "--cursor-kind", "mid_line"], "mid_line"),
    (["--prefix", "x = ", "--suffix", "\nprint(x)"], None),
])
def test_a_prefix_is_sent_with_the_kind_asked_for(client, argv, kind, capsys):
    assert main(["complete", *argv]) == 0
    assert client.sent[-1]["cursor_kind"] == kind


def test_the_client_names_the_kinds_it_knows():
    from serving.client import CompletionClient, pb

    assert CompletionClient.request(prefix="x\n", cursor_kind="line_start").cursor_kind == \
        pb.CompleteRequest.CURSOR_KIND_LINE_START
    assert CompletionClient.request(prefix="x").cursor_kind == pb.CompleteRequest.CURSOR_KIND_UNSPECIFIED
    with pytest.raises(ValueError, match="cursor_kind must be one of"):
        CompletionClient.request(prefix="x", cursor_kind="explicit")
