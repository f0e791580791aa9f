from __future__ import annotations

from pathlib import Path

import pytest

from monitor.settings import FIELDS, ConfigError, Settings, markdown_table


def test_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings.load(environ={})
    assert s.port == 4318
    assert s.dashboard_port == 8501
    assert s.host == "127.0.0.1"
    assert s.database == "llm_monitor"
    assert s.retention_days == 30
    assert s.api_keys == ()
    assert s.store.startswith("chdb:///") and s.store.endswith("/llm-monitor/store")
    assert s.config_file is None


def test_precedence_argument_env_file_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "llm-monitor.yaml").write_text(
        "port: 5000\ndashboard_port: 5001\nretention_days: 7\nproject: fromfile\n"
    )
    env = {"LLM_MONITOR_PORT": "6000", "LLM_MONITOR_DASHBOARD_PORT": "6001"}
    s = Settings.load({"port": 7000, "dashboard_port": None}, environ=env)
    assert s.port == 7000  # argument beats environment
    assert s.dashboard_port == 6001  # environment beats file
    assert s.retention_days == 7  # file beats default
    assert s.project == "fromfile"
    assert s.batch_size == 20000  # default
    assert s.config_file == "llm-monitor.yaml"


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"LLM_MONITOR_PORT": "abc"}, "invalid LLM_MONITOR_PORT='abc': expected an integer"),
        ({"LLM_MONITOR_PORT": "70000"}, "invalid LLM_MONITOR_PORT='70000': must be <= 65535"),
        ({"LLM_MONITOR_FLUSH_INTERVAL": "nan"}, "expected a finite number"),
        ({"LLM_MONITOR_STORE": "chdb://relative/path"}, "a chdb URL needs an absolute path"),
        ({"LLM_MONITOR_STORE": "postgres://x"}, "expected chdb:///abs/path or http(s)://"),
        ({"LLM_MONITOR_DATABASE": "drop table;"}, "expected letters, digits and underscores only"),
        ({"LLM_MONITOR_LOG_LEVEL": "loud"}, "expected DEBUG, INFO, WARNING or ERROR"),
    ],
)
def test_bad_environment_values_are_one_clear_line(
    env: dict[str, str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError) as e:
        Settings.load(environ=env)
    assert message in str(e.value)
    assert "\n" not in str(e.value)


def test_bad_config_file_lines(tmp_path: Path) -> None:
    bad_type = tmp_path / "a.yaml"
    bad_type.write_text("port: [1, 2]\n")
    with pytest.raises(ConfigError, match=r"a.yaml: port=\[1, 2\]: expected an integer"):
        Settings.load(config_file=bad_type, environ={})
    unknown = tmp_path / "b.yaml"
    unknown.write_text("prot: 4318\n")
    with pytest.raises(ConfigError, match="unknown setting 'prot'"):
        Settings.load(config_file=unknown, environ={})
    broken = tmp_path / "c.yaml"
    broken.write_text("port: 1\n  nested: : bad\n")
    with pytest.raises(ConfigError, match=r"c.yaml line \d+"):
        Settings.load(config_file=broken, environ={})
    not_mapping = tmp_path / "d.yaml"
    not_mapping.write_text("- a\n- b\n")
    with pytest.raises(ConfigError, match="expected a mapping"):
        Settings.load(config_file=not_mapping, environ={})
    with pytest.raises(ConfigError, match="does not exist"):
        Settings.load(config_file=tmp_path / "missing.yaml", environ={})


def test_lists_and_booleans(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings.load(environ={"LLM_MONITOR_API_KEYS": " k1, k2 ,,"})
    assert s.api_keys == ("k1", "k2")
    cfg = tmp_path / "x.yaml"
    cfg.write_text("api_keys: [a, b]\n")
    assert Settings.load(config_file=cfg, environ={}).api_keys == ("a", "b")


def test_with_overrides_validates() -> None:
    s = Settings.load(environ={})
    assert s.with_overrides(port="9000").port == 9000
    with pytest.raises(ConfigError, match="invalid port='x'"):
        s.with_overrides(port="x")


def test_markdown_table_lists_every_setting() -> None:
    table = markdown_table()
    for f in FIELDS:
        assert f"`{f.env}`" in table
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for f in FIELDS:
        assert f"`{f.env}`" in readme, f"README configuration table lacks {f.env}"
