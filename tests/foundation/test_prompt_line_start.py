import pytest

from codetailor.prompt_format import completion_at_line_start, cursor_parts


@pytest.mark.parametrize("completion,expected", [
    ("\n    return x\n", "    return x\n"),       # the model opened the new line itself
    ("  # done\n    return x", "    return x"),   # it finished the previous line first: dropped
    ("return x", ""),                             # never reached the cursor's line
])
def test_completion_at_line_start(completion, expected):
    assert completion_at_line_start(completion) == expected


def test_cursor_at_line_start_ends_prompt_before_the_newline():
    src = "def f(x):\n    y = x\n    return y\n"
    prefix, suffix = cursor_parts(src, 3)
    assert prefix == "def f(x):\n    y = x" and suffix.startswith("    return y")
    assert prefix + "\n" + suffix == src
    prefix, suffix = cursor_parts(src, 2, 8)
    assert prefix + suffix == src and prefix.endswith("y = ")
