"""Config: example file and docs in step with the fields, precedence, unit conversion, errors."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path

import pytest

from kmm.config import (KALSHI_KEYS, SECTIONS, KmmConfig, StrategyParams, load_config, main,
                        parse_set_args, render_example)
from kmm.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "kmm.toml"
DOCS = ROOT / "docs" / "configuration.md"
NO_ENV: dict[str, str] = {}


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "kmm.toml"
    p.write_text(text)
    return p


# ---------------------------------------------------------------- example and docs cannot drift

def test_example_file_is_the_rendering_of_the_fields():
    assert EXAMPLE.read_text() == render_example(), \
        "examples/kmm.toml is stale: run `python -m kmm.config example > examples/kmm.toml`"


def test_example_file_sets_every_key_to_its_default():
    data = tomllib.loads(EXAMPLE.read_text())
    for section, cls in SECTIONS.items():
        assert set(data[section]) == {f.name for f in dataclasses.fields(cls)}, section
    assert set(data["kalshi"]) == set(KALSHI_KEYS)
    cfg = load_config(EXAMPLE, environ=NO_ENV)
    defaults = KmmConfig()
    for section in SECTIONS:
        assert getattr(cfg, section) == getattr(defaults, section), section
    assert cfg.markets == {}


def test_docs_name_every_key():
    text = DOCS.read_text()
    for section, cls in SECTIONS.items():
        assert f"[{section}]" in text
        for f in dataclasses.fields(cls):
            assert f"`{f.name}`" in text, f"docs/configuration.md lacks {section}.{f.name}"
    for key in KALSHI_KEYS:
        assert f"`{key}`" in text


def test_every_field_has_a_doc_string():
    for cls in SECTIONS.values():
        for f in dataclasses.fields(cls):
            assert len(f.metadata["doc"]) > 10, f"{cls.__name__}.{f.name}"


# ---------------------------------------------------------------- values and units

def test_no_file_gives_defaults():
    cfg = load_config(None, environ=NO_ENV)
    assert cfg.run.env == "sim" and cfg.source is None
    assert cfg.tickers() == ("KXSIMA-26-A", "KXSIMB-26-B", "KXSIMM-26-M")


def test_human_units_convert_to_kmm_units(tmp_path):
    p = write(tmp_path, """
[strategy]
quote_size = 2.5
min_edge = "0.0050"
[risk]
max_loss = 25
price_min = 0.05
""")
    cfg = load_config(p, environ=NO_ENV)
    assert cfg.strategy.quote_size == 250
    assert cfg.strategy.min_edge == 50
    assert cfg.risk.max_loss == 250_000
    assert cfg.risk.price_min == 500


def test_market_overrides_merge_over_strategy(tmp_path):
    p = write(tmp_path, """
[strategy]
gamma = 0.3
[markets.KXA-1]
max_position = 5
""")
    cfg = load_config(p, environ=NO_ENV)
    a = cfg.strategy_for("KXA-1")
    assert a.gamma == 0.3 and a.max_position == 500
    assert cfg.strategy_for("KXB-2") == cfg.strategy
    assert cfg.risk_limits().max_position_for("KXA-1") == 500
    assert cfg.risk_limits().max_position_for("KXB-2") == cfg.strategy.max_position


def test_kalshi_section_passes_through(tmp_path):
    p = write(tmp_path, """
[kalshi]
rest_url = "http://127.0.0.1:1/trade-api/v2"
something_new = 3
""")
    cfg = load_config(p, environ=NO_ENV, cli={"kalshi.api_key_id": "abc"})
    assert cfg.kalshi == {"rest_url": "http://127.0.0.1:1/trade-api/v2", "something_new": 3}
    assert cfg.kalshi_cli == {"api_key_id": "abc"}


# ---------------------------------------------------------------- precedence

def test_precedence_default_file_env_cli(tmp_path):
    p = write(tmp_path, "[risk]\nmax_loss = 20\ncooldown_s = 10\nstale_after_s = 3\n")
    env = {"KMM_RISK_COOLDOWN_S": "20", "KMM_RISK_STALE_AFTER_S": "4"}
    cfg = load_config(p, environ=env, cli={"risk.stale_after_s": "6", "risk.max_open_orders_total": None})
    assert cfg.risk.max_loss == 200_000             # file
    assert cfg.risk.cooldown_s == 20.0              # environment over file
    assert cfg.risk.stale_after_s == 6.0            # command line over environment
    assert cfg.risk.max_open_orders_total == 100    # unset flag: default


def test_env_parses_bools_and_lists():
    cfg = load_config(None, environ={"KMM_RUN_MARKETS": "KXA-1, KXB-2", "KMM_RISK_AUTO_RESUME": "yes"})
    assert cfg.run.markets == ("KXA-1", "KXB-2")
    assert cfg.risk.auto_resume is True


def test_config_path_from_environment(tmp_path):
    p = write(tmp_path, "[sim]\nseed = 7\n")
    assert load_config(environ={"KMM_CONFIG": str(p)}).sim.seed == 7


def test_cli_market_override_and_typed_values():
    cfg = load_config(None, environ=NO_ENV, cli={"markets.KXA-1.gamma": 0.5, "run.duration_s": 30})
    assert cfg.strategy_for("KXA-1").gamma == 0.5
    assert cfg.run.duration_s == 30.0


def test_parse_set_args():
    assert parse_set_args(["risk.max_loss=25", "run.env = demo"]) == {"risk.max_loss": "25",
                                                                      "run.env": "demo"}
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_set_args(["max_loss"])


# ---------------------------------------------------------------- errors

def test_unknown_key_names_key_file_and_suggestion(tmp_path):
    p = write(tmp_path, "[risk]\nmax_los = 5\n")
    with pytest.raises(ConfigError) as exc:
        load_config(p, environ=NO_ENV)
    msg = str(exc.value)
    assert str(p) in msg and "'max_los'" in msg and "[risk]" in msg and "'max_loss'" in msg


def test_unknown_section_is_an_error(tmp_path):
    p = write(tmp_path, "[strategyy]\ngamma = 1\n")
    with pytest.raises(ConfigError, match=r"unknown section 'strategyy'.*'strategy'"):
        load_config(p, environ=NO_ENV)


def test_unknown_key_in_market_override(tmp_path):
    p = write(tmp_path, "[markets.KXA-1]\ngama = 1\n")
    with pytest.raises(ConfigError, match=r"\[markets.KXA-1\].*'gamma'"):
        load_config(p, environ=NO_ENV)


def test_unknown_cli_setting_names_it_and_suggests():
    with pytest.raises(ConfigError, match=r"command line risk.max_lost.*'max_loss'"):
        load_config(None, environ=NO_ENV, cli={"risk.max_lost": "1"})
    with pytest.raises(ConfigError, match=r"unknown setting 'rsk.max_loss'.*'risk.max_loss'"):
        load_config(None, environ=NO_ENV, cli={"rsk.max_loss": "1"})


@pytest.mark.parametrize("text,needle", [
    ("[risk]\nmax_loss = -5\n", "must be > 0 dollars"),
    ("[risk]\nmax_loss = \"lots\"\n", "expected a number of dollars"),
    ("[strategy]\nquote_size = 1.005\n", "at most 2 decimal places"),
    ("[run]\nenv = \"live\"\n", "expected one of sim, demo, prod"),
    ("[run]\nallow_prod = \"yes\"\n", "expected true or false"),
    ("[risk]\nmax_open_orders_total = 2.5\n", "expected a whole number"),
    ("[run]\nmarkets = \"KXA\"\n", "expected a list"),
    ("[risk]\nreduce_only_at = 1.5\n", "must be <= 1"),
])
def test_bad_values_say_what_where_and_what_to_do(tmp_path, text, needle):
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as exc:
        load_config(p, environ=NO_ENV)
    msg = str(exc.value)
    assert needle in msg and str(p) in msg and "remove it to use the default" in msg


def test_bad_env_value_names_the_variable():
    with pytest.raises(ConfigError, match="environment KMM_RISK_COOLDOWN_S"):
        load_config(None, environ={"KMM_RISK_COOLDOWN_S": "soon"})


def test_prod_needs_allow_prod():
    with pytest.raises(ConfigError, match="allow_prod"):
        load_config(None, environ=NO_ENV, cli={"run.env": "prod", "run.markets": "KXA-1"})
    cfg = load_config(None, environ=NO_ENV, cli={"run.env": "prod", "run.allow_prod": "true",
                                                 "run.markets": "KXA-1"})
    assert cfg.run.env == "prod"


def test_live_env_needs_markets():
    with pytest.raises(ConfigError, match="markets is empty"):
        load_config(None, environ=NO_ENV, cli={"run.env": "demo"})


def test_cross_field_checks(tmp_path):
    with pytest.raises(ConfigError, match="price_min"):
        load_config(write(tmp_path, "[risk]\nprice_min = 0.6\nprice_max = 0.4\n"), environ=NO_ENV)
    with pytest.raises(ConfigError, match="max_order_size"):
        load_config(None, environ=NO_ENV, cli={"markets.KXA.quote_size": "500"})


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml", environ=NO_ENV)
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(write(tmp_path, "[risk\n"), environ=NO_ENV)


def test_check_command_reports_errors(tmp_path, capsys):
    assert main(["check", str(EXAMPLE)]) == 0
    assert main(["check", str(write(tmp_path, "[risk]\nnope = 1\n"))]) == 2  # as kmm run exits
    assert "nope" in capsys.readouterr().err


def test_strategy_params_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        StrategyParams().gamma = 1.0  # type: ignore[misc]
