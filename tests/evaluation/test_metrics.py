"""Each metric on a table of (prediction, reference, expected)."""

import pytest

from evaluation import metrics


@pytest.mark.parametrize("pred, ref, expected", [
    ("x = foo(a, b)", "x = foo(a, b)", 1.0),
    ("  x = foo(a, b)   ", "x = foo(a, b)", 1.0),      # whitespace at the ends does not count
    ("x = foo(a,b)", "x = foo(a, b)", 0.0),            # inner spacing does
    ("x = foo(a, c)", "x = foo(a, b)", 0.0),
    ("", "return x", 0.0),
    ("", "", 1.0),
])
def test_exact_match(pred, ref, expected):
    assert metrics.exact_match(pred, ref) == expected


@pytest.mark.parametrize("pred, ref, expected", [
    ("return x", "return x", 1.0),
    ("", "abcd", 0.0),
    ("abcd", "abce", 0.75),          # one substitution in four characters
    ("abc", "abcdef", 0.5),          # three insertions over the longer length six
    ("", "", 1.0),
    ("  abcd  ", "abcd", 1.0),
])
def test_edit_similarity(pred, ref, expected):
    assert metrics.edit_similarity(pred, ref) == pytest.approx(expected)


@pytest.mark.parametrize("pred, ref, expected", [
    ("foo(bar, baz)", "foo(bar, baz)", 1.0),
    ("foo(bar)", "foo(bar, baz)", 0.8),              # P=1, R=2/3 -> F1 0.8
    ("qux(1)", "foo(bar)", 0.0),
    ("1 + 2", "3 + 4", 1.0),                          # no identifiers on either side
    ("x", "", 0.0),
    ("a a b", "a b b", pytest.approx(2 / 3)),          # multisets: one a and one b match
])
def test_identifier_match(pred, ref, expected):
    assert metrics.identifier_match(pred, ref) == expected


@pytest.mark.parametrize("code, expected", [
    ("load_config(path)", {"load_config"}),
    ("self.store.load_config(path, parse(x))", {"load_config"}),
    ("print(len(items))", set()),
    ("Parser(text).parse()", {"Parser"}),
])
def test_api_calls(code, expected):
    apis = frozenset({"load_config", "Parser", "unused_api"})
    assert metrics.api_calls(code, apis) == expected


def test_codebleu_identical_python_is_high_and_different_is_lower():
    same = metrics.codebleu("total = compute(a, b)", "total = compute(a, b)", "python")
    diff = metrics.codebleu("print('hello')", "total = compute(a, b)", "python")
    assert same is not None and diff is not None
    assert same > 0.9 and diff < 0.5


@pytest.mark.parametrize("pred, ref, lang, expected", [
    ("x", "return a", "rust", None),         # codebleu cannot parse it here: null, not a made-up number
    ("x", "return a", None, None),
    ("x", "return a", "markdown", None),
    ("", "return a", "python", 0.0),
])
def test_codebleu_unsupported_or_empty(pred, ref, lang, expected):
    assert metrics.codebleu(pred, ref, lang) == expected


def test_codebleu_orders_closer_predictions_higher():
    ref = "result = parse_header(lines, strict=True)"
    scores = [metrics.codebleu(p, ref, "python") for p in
              (ref, "result = parse_header(lines)", "x = 1")]
    assert scores[0] > scores[1] > scores[2]


@pytest.mark.parametrize("lang", ["java", "javascript", "go"])
def test_codebleu_other_supported_languages(lang):
    ref = "int total = compute(alpha, beta);" if lang == "java" else "total = compute(alpha, beta);"
    same, other = metrics.codebleu(ref, ref, lang), metrics.codebleu("x", ref, lang)
    assert same > 0.9 and other < same
