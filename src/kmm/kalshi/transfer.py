"""Move collateral between exchange shards: ``python -m kmm.kalshi.transfer``.

Kalshi checks collateral inside each shard (kalshi-api.md section 10): before trading a market on
shard N, the account's balance on shard N must cover it. ``KalshiRest.check_shard_balances`` names the
shortfall and this command; the command calls ``POST /portfolio/intra_exchange_instance_transfer``.

    python -m kmm.kalshi.transfer --config kmm.toml --from-shard 0 --to-shard 2 --amount 20.00 --yes

Without ``--yes`` it prints the balances per shard and the request it would send, and sends nothing.
Exit codes: 0 done (or dry run), 1 the exchange refused or could not be reached, 2 bad arguments/config.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import uuid
from collections.abc import Sequence

from kmm._core.fixed import format_price, parse_money
from kmm.errors import ConfigError, KmmError


def _args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m kmm.kalshi.transfer",
                                description="Move collateral between Kalshi exchange shards.")
    p.add_argument("--config", help="kmm config file whose [kalshi] section names the key (or $KMM_CONFIG)")
    p.add_argument("--from-shard", type=int, required=True, help="exchange_index to take the money from")
    p.add_argument("--to-shard", type=int, required=True, help="exchange_index to move it to")
    p.add_argument("--amount", required=True, help="dollars, up to 4 decimals, e.g. 20.00")
    p.add_argument("--client-transfer-id", help="UUID making a retry safe (default: a new one)")
    p.add_argument("--yes", action="store_true", help="send it (without: show what would be sent)")
    return p.parse_args(argv)


async def _run(ns: argparse.Namespace) -> int:
    from kmm.config import load_config
    from kmm.kalshi.config import ConnectorConfig
    from kmm.kalshi.rest import KalshiRest, transfer_body

    try:
        amount = parse_money(ns.amount)
    except ValueError:
        raise ConfigError(f"--amount {ns.amount!r} is not a dollar amount with at most 4 decimals") from None
    if amount <= 0 or ns.from_shard < 0 or ns.to_shard < 0:
        raise ConfigError("--amount must be above 0 and shards must be >= 0")
    cfg = load_config(ns.config)
    conn = ConnectorConfig.resolve(cfg.kalshi, {}, os.environ)
    tid = ns.client_transfer_id or str(uuid.uuid4())
    async with KalshiRest(conn) as rest:
        bal = await rest.get_balance()
        for shard, money in bal.breakdown:
            print(f"shard {shard}: ${format_price(money)}")
        body = transfer_body(amount, ns.from_shard, ns.to_shard, tid)
        if not ns.yes:
            print(f"would send POST /portfolio/intra_exchange_instance_transfer {body}; add --yes to send it")
            return 0
        transfer_id = await rest.transfer_between_shards(amount, ns.from_shard, ns.to_shard, client_transfer_id=tid)
        print(f"transfer {transfer_id}: ${format_price(amount)} from shard {ns.from_shard} to shard {ns.to_shard}")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    ns = _args(argv)
    try:
        return asyncio.run(_run(ns))
    except ConfigError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KmmError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
