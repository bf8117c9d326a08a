from codetailor.prompt_format import cursor_parts


def test_cursor_at_line_start_ends_prompt_before_the_newline():
    src = "def f(x):\n    y = x\n    return y\n"
    prefix, suffix = cursor_parts(src, 3)
    assert prefix == "def f(x):\n    y = x" and suffix.startswith("    return y")
    assert prefix + "\n" + suffix == src
    prefix, suffix = cursor_parts(src, 2, 8)
    assert prefix + suffix == src and prefix.endswith("y = ")
