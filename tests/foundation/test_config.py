import pytest

from codetailor.config import load_settings
from codetailor.errors import ConfigError


def test_defaults_validate(tmp_home):
    s = load_settings()
    assert s.home == tmp_home.resolve()
    assert s.serving.host == "127.0.0.1"


def test_env_overrides_nested(tmp_home, monkeypatch):
    monkeypatch.setenv("CODETAILOR_ENGINE__MAX_LORAS", "3")
    assert load_settings().engine.max_loras == 3


def test_symbol_context_is_off_unless_asked_for(tmp_home, monkeypatch):
    assert load_settings().prompt.symbols is False
    monkeypatch.setenv("CODETAILOR_PROMPT__SYMBOLS", "true")
    assert load_settings().prompt.symbols is True


def test_bad_env_value_is_one_clear_line(tmp_home, monkeypatch):
    monkeypatch.setenv("CODETAILOR_SERVING__PORT", "99999")
    with pytest.raises(ConfigError) as e:
        load_settings()
    assert "serving.port" in str(e.value) and "\n" not in str(e.value)


def test_yaml_file(tmp_home, tmp_path, monkeypatch):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("engine:\n  max_loras: 5\nserving:\n  port: 6000\n")
    monkeypatch.setenv("CODETAILOR_CONFIG", str(cfg))
    s = load_settings()
    assert (s.engine.max_loras, s.serving.port) == (5, 6000)


@pytest.mark.parametrize("text,needle", [
    ("engine: [1, 2", "not valid YAML"),
    ("- a\n- b\n", "mapping"),
    ("engine:\n  no_such_field: 1\n", "engine.no_such_field"),
])
def test_bad_yaml(tmp_home, tmp_path, monkeypatch, text, needle):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(text)
    monkeypatch.setenv("CODETAILOR_CONFIG", str(cfg))
    with pytest.raises(ConfigError, match=needle):
        load_settings()


def test_missing_config_file(tmp_home, monkeypatch):
    monkeypatch.setenv("CODETAILOR_CONFIG", "/nonexistent/c.yaml")
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings()


def test_settings_are_frozen(tmp_home):
    s = load_settings()
    with pytest.raises(Exception):
        s.engine.max_loras = 9
