from __future__ import annotations

import logging

import pytest

from kmm import protocol
from kmm.errors import ConfigError
from kmm.kalshi.config import ENV_KEY_ID, ENV_KEY_PATH, ConnectorConfig
from kmm.kalshi.signing import Signer


def test_resolve_demo_uses_kalshi_demo_urls(key_file):
    cfg = ConnectorConfig.resolve({"env": "demo", "api_key_id": "abc-123", "private_key_path": str(key_file)},
                                  {}, {})
    assert (cfg.rest_url, cfg.ws_url) == protocol.ENVIRONMENTS["demo"]
    assert cfg.api_key_id == "abc-123" and cfg.private_key_path == key_file


def test_resolve_precedence_is_cli_over_env_over_file(tmp_path, key_file):
    other = tmp_path / "other.pem"
    other.write_bytes(key_file.read_bytes())
    other.chmod(0o600)
    file = {"env": "demo", "api_key_id": "from-file", "private_key_path": "/nonexistent/file.pem"}
    env = {ENV_KEY_ID: "from-env", ENV_KEY_PATH: str(key_file)}
    cfg = ConnectorConfig.resolve(file, {}, env)
    assert cfg.api_key_id == "from-env" and cfg.private_key_path == key_file
    cfg = ConnectorConfig.resolve(file, {"api_key_id": "from-cli", "private_key": str(other)}, env)
    assert cfg.api_key_id == "from-cli" and cfg.private_key_path == other


def test_resolve_overrides_urls_for_a_compatible_server(key_file):
    cfg = ConnectorConfig.resolve({"env": "demo", "rest_url": "http://127.0.0.1:9/trade-api/v2/",
                                   "ws_url": "ws://127.0.0.1:9/trade-api/ws/v2"},
                                  {"api_key_id": "k", "private_key": str(key_file)}, {})
    assert cfg.rest_url == "http://127.0.0.1:9/trade-api/v2"
    assert cfg.ws_url == "ws://127.0.0.1:9/trade-api/ws/v2"


def test_resolve_prod_without_opt_in_raises_config_error(key_file):
    creds = {"api_key_id": "k", "private_key_path": str(key_file)}
    with pytest.raises(ConfigError, match="allow_prod"):
        ConnectorConfig.resolve({"env": "prod", **creds}, {}, {})
    # a demo env pointed at a production host is refused too
    with pytest.raises(ConfigError, match="production"):
        ConnectorConfig.resolve({"env": "demo", "rest_url": "https://api.elections.kalshi.com/trade-api/v2",
                                 **creds}, {}, {})


def test_resolve_prod_with_opt_in_from_file_or_cli_is_accepted(key_file):
    creds = {"api_key_id": "k", "private_key_path": str(key_file)}
    assert ConnectorConfig.resolve({"env": "prod", "allow_prod": True, **creds}, {}, {}).env == "prod"
    cfg = ConnectorConfig.resolve({"env": "prod", **creds}, {"allow_prod": True}, {})
    assert cfg.allow_prod and cfg.rest_url == protocol.ENVIRONMENTS["prod"][0]


def test_resolve_missing_credentials_names_all_three_sources():
    with pytest.raises(ConfigError) as exc:
        ConnectorConfig.resolve({"env": "demo"}, {}, {})
    text = str(exc.value)
    assert ENV_KEY_ID in text and "--private-key" in text and "api_key_id" in text


def test_resolve_missing_key_file_raises_config_error(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        ConnectorConfig.resolve({"env": "demo", "api_key_id": "k", "private_key_path": str(tmp_path / "no.pem")},
                                {}, {})


def test_resolve_rejects_unknown_settings_and_bad_values(key_file):
    creds = {"api_key_id": "k", "private_key_path": str(key_file)}
    with pytest.raises(ConfigError, match="unknown setting"):
        ConnectorConfig.resolve({"env": "demo", "rest_ulr": "x", **creds}, {}, {})
    with pytest.raises(ConfigError, match="env"):
        ConnectorConfig.resolve({"env": "staging", **creds}, {}, {})
    with pytest.raises(ConfigError, match="request_timeout_s"):
        ConnectorConfig.resolve({"env": "demo", "request_timeout_s": "soon", **creds}, {}, {})
    with pytest.raises(ConfigError, match="rate_tier"):
        ConnectorConfig.resolve({"env": "demo", "rate_tier": "gold", **creds}, {}, {})


def test_resolve_sim_needs_no_credentials_or_urls():
    cfg = ConnectorConfig.resolve({"env": "sim"}, {}, {})
    assert cfg.env == "sim" and not cfg.has_credentials
    cfg2 = cfg.with_server("http://127.0.0.1:1/trade-api/v2", "ws://127.0.0.1:1/trade-api/ws/v2",
                           api_key_id="kid", private_key_pem=b"PEM")
    assert cfg2.has_credentials and cfg2.rest_url.startswith("http://127.0.0.1")


def test_key_file_readable_by_others_logs_a_warning(key_file, caplog):
    key_file.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="kmm.kalshi.config"):
        ConnectorConfig.resolve({"env": "demo", "api_key_id": "k", "private_key_path": str(key_file)}, {}, {})
    assert any("chmod 600" in r.getMessage() for r in caplog.records)


def test_key_file_private_to_owner_logs_no_warning(key_file, caplog):
    with caplog.at_level(logging.WARNING, logger="kmm.kalshi.config"):
        ConnectorConfig.resolve({"env": "demo", "api_key_id": "k", "private_key_path": str(key_file)}, {}, {})
    assert not caplog.records


def test_repr_of_config_and_signer_redacts_key_material(key_file, rsa_pem):
    key_id = "0123456789abcdef-secret-key-id"
    cfg = ConnectorConfig.resolve({"env": "sim"}, {}, {}).with_server(
        "http://127.0.0.1:1/trade-api/v2", "ws://127.0.0.1:1/trade-api/ws/v2",
        api_key_id=key_id, private_key_pem=rsa_pem)
    signer = Signer.from_pem(key_id, rsa_pem)
    for text in (repr(cfg), str(cfg), repr(signer), str(signer)):
        assert key_id not in text
        assert "PRIVATE KEY" not in text and rsa_pem[40:80].decode() not in text
    assert "<redacted>" in repr(cfg) and "<redacted>" in repr(signer)
    sig = signer.sign(1, "GET", "/trade-api/v2/x")
    assert sig not in repr(signer)


def test_command_line_flags_feed_resolve_and_win_over_environment(key_file):
    import argparse

    from kmm.kalshi.config import add_arguments, cli_values
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    ns = parser.parse_args(["--api-key-id", "cli-key", "--private-key", str(key_file), "--allow-prod"])
    cfg = ConnectorConfig.resolve({"env": "prod"}, cli_values(ns), {ENV_KEY_ID: "env-key"})
    assert (cfg.api_key_id, cfg.private_key_path, cfg.allow_prod) == ("cli-key", key_file, True)
    unset = cli_values(parser.parse_args([]))
    assert all(v is None for v in unset.values())


@pytest.mark.parametrize("url", ["https://external-api.kalshi.com./trade-api/v2",
                                 "https://trading-api.kalshi.com/trade-api/v2",
                                 "https://API.ELECTIONS.KALSHI.COM/trade-api/v2"])
def test_any_production_host_needs_the_opt_in_even_spelled_differently(url):
    with pytest.raises(ConfigError, match="production"):
        ConnectorConfig.resolve({"env": "demo", "rest_url": url, "ws_url": "wss://demo-api.kalshi.co/trade-api/ws/v2",
                                 "api_key_id": "k"}, {}, {})


def test_a_hand_built_prod_config_is_refused_by_the_clients():
    from kmm.kalshi import KalshiRest, KalshiWs
    cfg = ConnectorConfig(env="prod", rest_url="https://external-api.kalshi.com/trade-api/v2",
                          ws_url="wss://external-api-ws.kalshi.com/trade-api/ws/v2")
    with pytest.raises(ConfigError, match="production"):
        KalshiRest(cfg)
    with pytest.raises(ConfigError, match="production"):
        KalshiWs(cfg)
