"""The connector's typed configuration: environment, URLs, credentials and tuning knobs.

``ConnectorConfig.resolve(file_section, cli, environ)`` merges three sources with the precedence
command line > environment > config file. The engine's kmm.toml loader passes its ``[kalshi]`` table
as ``file_section``; the CLI passes its parsed flags (``api_key_id``, ``private_key``, ``env``,
``rest_url``, ``ws_url``, ``allow_prod``); ``environ`` is usually ``os.environ``.

Secrets: the private key's *content* never enters this object unless the caller hands it PEM bytes
(the simulator does); ``repr`` redacts both the key and most of the key id.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import ssl
import stat
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from kmm import protocol
from kmm.errors import ConfigError

log = logging.getLogger("kmm.kalshi.config")

ENV_KEY_ID = "KALSHI_API_KEY_ID"
ENV_KEY_PATH = "KALSHI_PRIVATE_KEY_PATH"
ENVIRONMENT_NAMES = ("sim", "demo", "prod")

# Names accepted in the [kalshi] table (besides the credential names), with their types.
_TUNING: dict[str, type] = {
    "rate_tier": str,
    "read_rate": float,
    "write_rate": float,
    "burst_s": float,
    "cancel_reserve_tokens": float,
    "request_timeout_s": float,
    "connect_timeout_s": float,
    "read_retries": int,
    "create_lookup_window_s": float,
    "retry_backoff_s": float,
    "pool_connections": int,
    "order_connections": int,
    "fast_writes": bool,
    "compiled_listener": bool,
    "max_pages": int,
    "sig_pool_depth": int,
    "sig_pool_max_age_s": float,
    "ws_dead_after_s": float,
    "ws_handshake_timeout_s": float,
    "reconnect_min_s": float,
    "reconnect_max_s": float,
    "backoff_429_base_s": float,
    "backoff_429_max_s": float,
    "ca_file": Path,
}


def redact(value: str | None, keep: int = 4) -> str:
    """Show only the first ``keep`` characters of an identifier (never used for key material)."""
    if not value:
        return "None"
    return f"{value[:keep]}…" if len(value) > keep else "…"


@dataclass(slots=True, frozen=True)
class ConnectorConfig:
    """Everything the connector needs to reach one Kalshi(-compatible) server."""

    env: str = "demo"                        # "sim" | "demo" | "prod"
    rest_url: str = ""                       # base ending in /trade-api/v2
    ws_url: str = ""                         # ending in /trade-api/ws/v2
    api_key_id: str | None = None
    private_key_path: Path | None = None
    private_key_pem: bytes | None = field(default=None, repr=False)  # in-memory key (sim)
    allow_prod: bool = False
    # Rate limits (kalshi-api.md section 5). read_rate/write_rate override the tier (tokens/s).
    rate_tier: str = "basic"
    read_rate: float | None = None
    write_rate: float | None = None
    burst_s: float = protocol.BURST_SECONDS  # [U] bucket depth in seconds of budget
    cancel_reserve_tokens: float = 20.0      # write tokens places/amends may not use (cancels only)
    backoff_429_base_s: float = 0.25
    backoff_429_max_s: float = 8.0
    # REST.
    request_timeout_s: float = 5.0
    connect_timeout_s: float = 3.0
    read_retries: int = 3
    create_lookup_window_s: float = 3.0      # after a create timeout, look the order up for this long
    retry_backoff_s: float = 0.1
    pool_connections: int = 8                # aiohttp keep-alive pool (reads)
    order_connections: int = 2               # warm connections of the order-path client (writes); the maker
                                             # opens 2 per quoted market (at most 16) if that is more
    fast_writes: bool = True                 # writes through kmm.kalshi.fasthttp instead of aiohttp
    compiled_listener: bool = True           # WebSocket frames through kmm._core.listener (else the Python one)
    max_pages: int = 1000
    # Signature pool.
    sig_pool_depth: int = 4
    sig_pool_max_age_s: float = 5.0          # well inside the exchange's (undocumented [U]) skew
    signer_cpus: frozenset[int] = frozenset()  # the signer process's CPUs (kmm run: [run] signer_cpus)
    signer_nice: int = 10                    # niceness the signer process adds (kmm run: [run] signer_nice)
    # WebSocket.
    ws_dead_after_s: float = 25.0            # nothing received (pings included) for this long = dead
    ws_handshake_timeout_s: float = 5.0
    reconnect_min_s: float = 0.25
    reconnect_max_s: float = 30.0
    # TLS: None = the system's trust store. A PEM bundle here replaces it (only its CAs are trusted).
    # Verification (chain and host name) is always on; there is no switch to turn it off.
    ca_file: Path | None = None

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):
            if f.name == "private_key_pem":
                shown.append(f"private_key_pem={'<redacted>' if self.private_key_pem else None}")
            elif f.name == "api_key_id":
                shown.append(f"api_key_id={redact(self.api_key_id)}")
            else:
                shown.append(f"{f.name}={getattr(self, f.name)!r}")
        return f"ConnectorConfig({', '.join(shown)})"

    __str__ = __repr__

    @property
    def has_credentials(self) -> bool:
        return bool(self.api_key_id) and (self.private_key_path is not None or self.private_key_pem is not None)

    def rates(self) -> tuple[float, float]:
        """(read, write) budget in tokens/s: the explicit rates, else the tier preset."""
        try:
            read, write = protocol.RATE_TIERS[self.rate_tier]
        except KeyError:
            raise ConfigError(
                f"kalshi.rate_tier {self.rate_tier!r} is unknown; use one of {sorted(protocol.RATE_TIERS)}"
            ) from None
        return (float(self.read_rate if self.read_rate is not None else read),
                float(self.write_rate if self.write_rate is not None else write))

    def ssl_context(self) -> ssl.SSLContext:
        """The client TLS context shared by REST reads (aiohttp), order writes (fasthttp) and the
        WebSocket (picows): full chain and host-name verification, trusting ``ca_file`` if set, else
        the system store. Raises ConfigError if ``ca_file`` cannot be used."""
        cafile = str(self.ca_file) if self.ca_file is not None else None
        if cafile is not None:
            _check_ca_file(Path(cafile))
        try:
            ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile)
        except ssl.SSLError as exc:
            raise ConfigError(f"kalshi.ca_file {cafile!r} holds no usable CA certificate ({exc}); "
                              "point it at a PEM bundle of the CA(s) that signed the server's certificate") from None
        ctx.set_alpn_protocols(["http/1.1"])  # all three transports speak HTTP/1.1 (WS upgrades over it)
        return ctx

    def require_prod_opt_in(self) -> None:
        """Raise ConfigError when this config points at Kalshi production without ``allow_prod``.
        The REST and WebSocket clients call it too, so a config built by hand cannot skip the check."""
        _require_prod_opt_in(self.env, self.rest_url, self.ws_url, self.allow_prod)

    def with_server(self, rest_url: str, ws_url: str, *, api_key_id: str | None = None,
                    private_key_pem: bytes | None = None) -> ConnectorConfig:
        """A copy pointed at another server (an in-process ``kmm sim``), optionally with its key."""
        return dataclasses.replace(
            self, rest_url=rest_url.rstrip("/"), ws_url=ws_url,
            api_key_id=api_key_id if api_key_id is not None else self.api_key_id,
            private_key_pem=private_key_pem if private_key_pem is not None else self.private_key_pem,
            private_key_path=None if private_key_pem is not None else self.private_key_path)

    @classmethod
    def resolve(cls, file_section: Mapping[str, Any] | None = None, cli: Mapping[str, Any] | None = None,
                environ: Mapping[str, str] | None = None) -> ConnectorConfig:
        """Merge file < environment < command line, validate, and return the config.

        Raises ConfigError naming the offending setting and what to do about it.
        """
        file_section = dict(file_section or {})
        cli = {k: v for k, v in (cli or {}).items() if v is not None}
        environ = os.environ if environ is None else environ

        known = {"env", "rest_url", "ws_url", "api_key_id", "private_key_path", "private_key", "allow_prod",
                 *_TUNING}
        unknown = sorted(set(file_section) - known)
        if unknown:
            raise ConfigError(f"[kalshi] has unknown setting(s) {unknown}; known: {sorted(known)}")

        def pick(name: str, env_name: str | None = None, cli_name: str | None = None) -> Any:
            if (cli_name or name) in cli:
                return cli[cli_name or name]
            if env_name and environ.get(env_name):
                return environ[env_name]
            return file_section.get(name)

        env = str(pick("env") or "demo").lower()
        if env not in ENVIRONMENT_NAMES:
            raise ConfigError(f"kalshi.env {env!r} is unknown; use one of {list(ENVIRONMENT_NAMES)}")

        default_rest, default_ws = protocol.ENVIRONMENTS.get(env, ("", ""))
        rest_url = str(pick("rest_url") or default_rest).rstrip("/")
        ws_url = str(pick("ws_url") or default_ws)
        if env != "sim" and not (rest_url and ws_url):
            raise ConfigError(f"kalshi.env {env!r} needs rest_url and ws_url")
        for name, url, schemes in (("rest_url", rest_url, ("http", "https")), ("ws_url", ws_url, ("ws", "wss"))):
            if url and urlsplit(url).scheme not in schemes:
                raise ConfigError(f"kalshi.{name} {url!r} must start with one of {[s + '://' for s in schemes]}")

        allow_prod = _as_bool(pick("allow_prod"), "allow_prod")
        _require_prod_opt_in(env, rest_url, ws_url, allow_prod)

        key_id = pick("api_key_id", ENV_KEY_ID)
        key_path_raw = cli.get("private_key") or cli.get("private_key_path") or environ.get(ENV_KEY_PATH) \
            or file_section.get("private_key_path") or file_section.get("private_key")
        key_path = Path(str(key_path_raw)).expanduser() if key_path_raw else None
        if key_path is not None:
            _check_key_file(key_path)
        if env != "sim" and (not key_id or key_path is None):
            missing = [n for n, v in (("api key id", key_id), ("private key path", key_path)) if not v]
            raise ConfigError(
                f"kalshi.env {env!r} needs credentials; missing {', '.join(missing)}: set api_key_id / "
                f"private_key_path in [kalshi], {ENV_KEY_ID} / {ENV_KEY_PATH} in the environment, or "
                "--api-key-id / --private-key on the command line")

        tuning: dict[str, Any] = {}
        for name, typ in _TUNING.items():
            raw = pick(name)
            if raw is None:
                continue
            try:
                value = _as_bool(raw, name) if typ is bool else typ(raw)
            except (TypeError, ValueError):
                raise ConfigError(f"kalshi.{name} = {raw!r} is not a valid {typ.__name__}") from None
            if typ is Path:
                value = Path(str(raw)).expanduser()
            if typ in (int, float) and value < 0:  # bool is handled above
                raise ConfigError(f"kalshi.{name} = {raw!r} must be >= 0")
            tuning[name] = value
        cfg = cls(env=env, rest_url=rest_url, ws_url=ws_url, api_key_id=str(key_id) if key_id else None,
                  private_key_path=key_path, allow_prod=allow_prod, **tuning)
        cfg.rates()  # validates rate_tier
        if cfg.ca_file is not None:
            cfg.ssl_context()  # validates ca_file: exists, and holds a CA certificate
        if cfg.sig_pool_max_age_s > 30:
            raise ConfigError(f"kalshi.sig_pool_max_age_s = {cfg.sig_pool_max_age_s} is too old for the "
                              "exchange's timestamp check; keep it under 30 s (default 5)")
        return cfg


def is_prod_host(host: str | None) -> bool:
    """Kalshi production is every host under kalshi.com (demo lives under kalshi.co)."""
    if not host:
        return False
    h = host.lower().rstrip(".")
    return h in protocol.PROD_HOSTS or h == "kalshi.com" or h.endswith(".kalshi.com")


def _require_prod_opt_in(env: str, rest_url: str, ws_url: str, allow_prod: bool) -> None:
    if allow_prod:
        return
    if env == "prod" or any(is_prod_host(urlsplit(u).hostname) for u in (rest_url, ws_url) if u):
        raise ConfigError(
            "refusing to trade on Kalshi production without an explicit opt-in: set allow_prod = true "
            "in [kalshi] or pass --allow-prod (use env = \"demo\" or \"sim\" to practise)")


def _as_bool(value: Any, name: str) -> bool:
    if value is None:
        return False
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"kalshi.{name} = {value!r} is not a boolean (true/false)")


def _check_key_file(path: Path) -> None:
    """The key must exist and be readable; warn (never fail) when others may read it too."""
    try:
        st = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"private key file {str(path)!r} does not exist; pass the path of the PEM file "
                          "Kalshi let you download") from None
    except OSError as exc:
        raise ConfigError(f"private key file {str(path)!r} cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ConfigError(f"private key path {str(path)!r} is not a regular file")
    warn_if_key_exposed(path, st.st_mode)


def _check_ca_file(path: Path) -> None:
    if not path.is_file():
        raise ConfigError(f"kalshi.ca_file {str(path)!r} does not exist or is not a file; point it at a PEM "
                          "bundle of the CA(s) to trust, or remove it to use the system's trust store")


def warn_if_key_exposed(path: Path, mode: int | None = None) -> bool:
    """Log a warning when the key file is readable by group or others. Returns True if it warned."""
    if mode is None:
        mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        log.warning("private key file %s is accessible by other users (mode %o); run: chmod 600 %s",
                    path, stat.S_IMODE(mode), path)
        return True
    return False


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the connector's command-line flags (for the ``kmm`` entry points)."""
    g = parser.add_argument_group("Kalshi connection")
    g.add_argument("--api-key-id", dest="kalshi_api_key_id", metavar="UUID",
                   help=f"Kalshi API key id (else {ENV_KEY_ID} or [kalshi] api_key_id)")
    g.add_argument("--private-key", dest="kalshi_private_key", metavar="PATH",
                   help=f"RSA private key file, PEM (else {ENV_KEY_PATH} or [kalshi] private_key_path)")
    g.add_argument("--allow-prod", dest="kalshi_allow_prod", action="store_true", default=None,
                   help="allow trading on Kalshi production (required with env prod)")
    g.add_argument("--rest-url", dest="kalshi_rest_url", metavar="URL", help="override the REST base URL")
    g.add_argument("--ws-url", dest="kalshi_ws_url", metavar="URL", help="override the WebSocket URL")


def cli_values(ns: argparse.Namespace) -> dict[str, Any]:
    """The ``cli`` mapping for ``ConnectorConfig.resolve`` from flags added by ``add_arguments``
    (unset flags are None and therefore ignored)."""
    return {
        "api_key_id": getattr(ns, "kalshi_api_key_id", None),
        "private_key": getattr(ns, "kalshi_private_key", None),
        "allow_prod": getattr(ns, "kalshi_allow_prod", None),
        "rest_url": getattr(ns, "kalshi_rest_url", None),
        "ws_url": getattr(ns, "kalshi_ws_url", None),
    }
