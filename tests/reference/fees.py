"""Plain-Python reference for kmm._core.fees, written from kalshi-api.md section 6 with exact fractions."""

from fractions import Fraction
from math import ceil


def trade_fee(count: int, price: int, rate_e6: int) -> int:
    if count <= 0 or rate_e6 <= 0 or not 0 < price < 10000:
        return 0
    contracts = Fraction(count, 100)
    p = Fraction(price, 10000)
    dollars = Fraction(rate_e6, 1_000_000) * contracts * p * (1 - p)
    return ceil(dollars * 10000)


def cent_fee(fee: int, carry: int) -> tuple[int, int]:
    charged = -(-fee // 100) * 100
    carry += charged - fee
    refund = carry - carry % 100
    return charged - refund, carry - refund
