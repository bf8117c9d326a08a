from retrieval.chunking import chunk_text
from retrieval.tokens import code_tokens, split_identifier
from tests.retrieval.conftest import GO, JAVA, PY_MAIN


def spans(chunks):
    return [(c.start_line, c.end_line, c.symbol) for c in chunks]


def test_python_functions_classes_and_statements():
    chunks = chunk_text("app/main.py", "python", PY_MAIN, "syntax", max_lines=60)
    assert spans(chunks) == [(1, 1, None), (4, 7, "parse_config"), (10, 15, "InvoiceLedger")]
    assert chunks[1].text.startswith("def parse_config(path):")
    assert all(c.language == "python" and c.path == "app/main.py" for c in chunks)


def test_big_class_splits_into_methods_with_qualified_symbols():
    chunks = chunk_text("app/main.py", "python", PY_MAIN, "syntax", max_lines=4)
    assert (11, 12, "InvoiceLedger.add_invoice") in spans(chunks)
    assert (14, 15, "InvoiceLedger.total_amount") in spans(chunks)


def test_java_methods_and_deprecated_annotation():
    chunks = chunk_text("src/PaymentGateway.java", "java", JAVA, "syntax", max_lines=6)
    by_symbol = {c.symbol: c for c in chunks}
    assert by_symbol["PaymentGateway.chargeCard"].start_line == 4
    assert by_symbol["PaymentGateway.chargeCard"].end_line == 6
    assert by_symbol["PaymentGateway.legacyRefund"].deprecated
    assert not by_symbol["PaymentGateway.chargeCard"].deprecated
    assert chunks[0].text.startswith("package com.acme;")


def test_go_comment_attaches_to_function():
    chunks = chunk_text("ship/freight.go", "go", GO, "syntax", max_lines=60)
    assert spans(chunks) == [(1, 1, None), (3, 6, "ComputeFreight")]


def test_javascript_and_typescript():
    js = 'const x = require("y");\n\nfunction add(a, b) {\n  return a + b;\n}\n\nclass Cart {\n  total() { return 0; }\n}\n'
    assert spans(chunk_text("a.js", "javascript", js, "syntax", max_lines=60)) == [
        (1, 1, None), (3, 5, "add"), (7, 9, "Cart")]
    ts = ('import { a } from "b";\n/** @deprecated use g */\nexport function f(x: number): number {\n'
          '  return x;\n}\ninterface Shape { area(): number }\n')
    chunks = chunk_text("a.ts", "typescript", ts, "syntax", max_lines=60)
    assert spans(chunks) == [(1, 1, None), (2, 5, "f"), (6, 6, "Shape")]
    assert chunks[1].deprecated and not chunks[2].deprecated


def test_python_deprecation_forms():
    src = ('def a():\n    """Deprecated: use b."""\n\n\n'
           'def c():\n    warnings.warn("old", DeprecationWarning)\n\n\n'
           '@deprecated("x")\ndef d():\n    pass\n\n\ndef e():\n    return 1\n')
    flags = {c.symbol: c.deprecated for c in chunk_text("m.py", "python", src, "syntax")}
    assert flags == {"a": True, "c": True, "d": True, "e": False}


def test_line_windows_with_overlap_and_fallback():
    text = "".join(f"line {i}\n" for i in range(1, 26))
    chunks = chunk_text("notes.txt", "text", text, "syntax", chunk_lines_n=10, overlap=3)
    assert spans(chunks) == [(1, 10, None), (8, 17, None), (15, 24, None), (22, 25, None)]
    assert chunk_text("a.py", "python", PY_MAIN, "lines", chunk_lines_n=10, overlap=0)[0].end_line == 10


def test_huge_function_is_cut_into_windows_keeping_symbol():
    body = "".join(f"    x{i} = {i}\n" for i in range(30))
    chunks = chunk_text("big.py", "python", "def huge():\n" + body, "syntax", max_lines=10)
    assert [c.symbol for c in chunks] == ["huge"] * 4
    assert chunks[0].start_line == 1 and chunks[-1].end_line == 31


def test_code_tokens_split_identifiers():
    assert split_identifier("parseHTTPResponse_v2") == ["parse", "http", "response", "v2"]
    toks = code_tokens("total_amount = InvoiceLedger.getTotal()")
    assert {"total_amount", "total", "amount", "invoiceledger", "invoice", "ledger", "gettotal", "get"} <= set(toks)


def _reference_tokens(text):
    """The definition, without memo or fast paths: every identifier whole, plus its camel/snake words."""
    import re

    out = []
    for ident in re.findall(r"[A-Za-z_][A-Za-z0-9_]*|\d+", text):
        parts = [m.lower() for piece in ident.split("_") if piece
                 for m in re.findall(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+\d*|[A-Z]+\d*|\d+", piece)]
        out += [ident.lower()] if len(ident) > 1 else []
        out += [p for p in parts if len(p) > 1] if len(parts) > 1 else []
    return out


def test_memoised_tokens_equal_the_definition_and_the_memo_stays_bounded(monkeypatch):
    import random

    from retrieval import tokens

    monkeypatch.setattr(tokens, "_MEMO_MAX", 50)
    monkeypatch.setattr(tokens, "_memo", {})
    rng = random.Random(0)
    words = ["".join(rng.choice("aZ_09bYxX1q") for _ in range(rng.randint(1, 9))) for _ in range(3000)]
    for i in range(0, len(words), 7):
        text = " + ".join(words[i:i + 7]) + "\n\tfoo_bar(ABCDef2)"
        assert code_tokens(text) == _reference_tokens(text), text
        assert len(tokens._memo) <= 50


def test_segment_scores_match_bm25s(tmp_path):
    import random

    import numpy as np

    from retrieval.postings import Postings
    from retrieval.segments import load_segment, write_segment

    rng = random.Random(3)
    words = [f"w{i}" for i in range(40)]
    rows = [{"id": i, "source": "main", "path": f"p{i % 7}.py", "symbol": None,
             "text": " ".join(rng.choice(words) for _ in range(rng.randint(1, 30)))} for i in range(300)]
    write_segment(tmp_path, rows)
    seg = load_segment(tmp_path, tombstones=[3, 5])
    table = Postings([seg])
    for _ in range(20):
        q = [rng.choice(words) for _ in range(rng.randint(1, 8))] + ["unknown_token"]
        ours = table.scores(q, exclude_paths=["p1.py"])
        mask = seg.live.copy()
        mask[seg.rows_by_path["p1.py"]] = 0
        ref = seg.bm25.get_scores([t for t in q if t in seg.bm25.vocab_dict], weight_mask=mask)
        assert np.allclose(ours, ref, atol=1e-5)
        assert ours[3] == ours[5] == 0
