"""Gal-Friday's order gateway client: place, cancel and follow orders through the
daemon's gate and risk checks (role ``trader``).

>>> from galfriday import Client, OrderFeed, Halted
"""

from .client import (
    ApiError,
    Client,
    ExchangeRefused,
    Halted,
    OrderFeed,
    RateLimited,
    RiskRefused,
    Unreachable,
    dumps,
    new_client_order_id,
)

__all__ = [
    "ApiError",
    "Client",
    "ExchangeRefused",
    "Halted",
    "OrderFeed",
    "RateLimited",
    "RiskRefused",
    "Unreachable",
    "dumps",
    "new_client_order_id",
]

__version__ = "0.1.0"
