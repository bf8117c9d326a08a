"""`codetailor index` / `codetailor search` through the real CLI entry point."""

import json

from codetailor.cli import main
from retrieval.vectors import close_edge_shards


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_index_and_search_cli(tmp_home, sample_repo, capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("CODETAILOR_RETRIEVAL__EXACT_VECTORS", "true")
    assert run(capsys, "tenant", "create", "acme")[0] == 0
    code, out, err = run(capsys, "index", "--tenant", "acme", str(sample_repo.root), "--exclude", "*.java", "--json")
    assert code == 0, err
    summary = json.loads(out)
    assert summary["files_indexed"] == 2 and summary["skipped"] == {"excluded": 1} and summary["chunks"] > 0
    code, out, _ = run(capsys, "search", "--tenant", "acme", "--query", "InvoiceLedger total", "--top-k", "1",
                       "--mode", "bm25", "--json")
    hits = json.loads(out)
    assert code == 0 and set(hits["hits"][0]) == {"path", "start_line", "end_line", "score", "text"}
    assert hits["vectors_pending"] == 0 and hits["hits"][0]["path"] == "app/main.py"
    editing = tmp_path / "editing.py"
    editing.write_text("from app.main import InvoiceLedger\nledger = InvoiceLedger()\nledger.total_amount()\n")
    code, out, _ = run(capsys, "search", "--tenant", "acme", "--file", str(editing), "--line", "3", "--json")
    assert code == 0 and json.loads(out)["hits"][0]["path"] == "app/main.py"
    close_edge_shards()


def test_cli_errors_are_one_line(tmp_home, capsys, tmp_path):
    code, _, err = run(capsys, "index", "--tenant", "nobody", str(tmp_path))
    assert code != 0 and err.strip().count("\n") == 0 and "unknown tenant" in err
    run(capsys, "tenant", "create", "acme")
    code, _, err = run(capsys, "search", "--tenant", "acme", "--query", "x")
    assert code != 0 and "no index yet" in err
    code, _, err = run(capsys, "index", "--tenant", "acme", str(tmp_path / "nope"))
    assert code != 0 and "does not exist" in err
    code, _, err = run(capsys, "index", "--tenant", "acme", str(tmp_path), "--since", "yesterday")
    assert code != 0 and "invalid duration" in err
    code, _, err = run(capsys, "search", "--tenant", "acme", "--file", str(tmp_path / "f.py"), "--line", "1")
    assert code != 0 and "does not exist" in err


def test_search_symbols_cli(tmp_home, capsys, tmp_path):
    from pathlib import Path

    from codetailor.config import load_settings
    from codetailor.tenants import registry_from_settings
    from retrieval.selection import SourceFile
    from retrieval.symbol_table import forget_tables, update_symbols

    assert run(capsys, "tenant", "create", "acme")[0] == 0
    editing = tmp_path / "editing.py"
    editing.write_text("from app.main import InvoiceLedger\nledger = InvoiceLedger()\nledger.add\n")
    code, _, err = run(capsys, "search", "--tenant", "acme", "--symbols", "--file", str(editing), "--line", "3")
    assert code != 0 and "no symbol table yet" in err and err.count("\n") == 1
    paths = registry_from_settings(load_settings(home=tmp_home)).tenant("acme")
    main_py = ("class InvoiceLedger:\n    def add_invoice(self, invoice):\n        pass\n\n"
               "    def total_amount(self):\n        return 0\n")
    update_symbols(paths, "main", [SourceFile("app/main.py", Path("/x"), "python", main_py)])
    try:
        code, out, err = run(capsys, "search", "--tenant", "acme", "--symbols", "--file", str(editing),
                             "--line", "3", "--column", "11", "--json")
        assert code == 0, err
        got = json.loads(out)
        assert got[0] == {"name": "add_invoice", "kind": "method", "signature": "def add_invoice(self, invoice):",
                          "path": "app/main.py", "line": 2}
        code, out, _ = run(capsys, "search", "--tenant", "acme", "--symbols", "--file", str(editing), "--line", "3",
                           "--column", "11")
        assert code == 0 and out.splitlines()[0] == "app/main.py:2  method   def add_invoice(self, invoice):"
        for argv, message in [(["--line", "9"], "line 9 is outside"), (["--line", "3", "--column", "40"], "column 40"),
                              ([], "--file needs --line")]:
            code, _, err = run(capsys, "search", "--tenant", "acme", "--symbols", "--file", str(editing), *argv)
            assert code != 0 and message in err and err.count("\n") == 1, err
        code, _, err = run(capsys, "search", "--tenant", "acme", "--symbols", "--query", "x")
        assert code != 0 and "--symbols needs --file" in err
    finally:
        forget_tables()
