#!/usr/bin/env python3
"""Trades a paper daemon through the order gateway and reacts to a halt.

Connects the order feed, waits for its hello, then places a small market buy and,
once it has filled, a resting limit buy ``--offset-pct`` below that fill (inside the
daemon's price collar, 5 % by default). Every order, fill and halt frame is printed as
one JSON line. When a ``halt`` frame arrives it stops placing, checks that the resting
order went to ``cancelled`` (the halt cancels resting orders), prints
``HALT_SEEN <halt_id> <reason>`` and exits 0.

Other lines on stdout: ``PLACED <client_order_id> <status>`` after each order,
``READY <resting client_order_id>`` once both are placed, ``RESTING_CANCELLED
<client_order_id>`` before ``HALT_SEEN``, ``RECONNECTED since=<seq>`` when the feed
resumed after a lost connection (``--drop-feed-once`` loses it on purpose, once, after the
first order or fill frame), ``WAITING <check>`` while the daemon has no fresh price yet.
Any unexpected error, or no halt within ``--timeout`` seconds, ends it with one
``trade_paper: error: …`` line on stderr and a non-zero exit.

    python3 examples/trade_paper.py --url http://127.0.0.1:8080 --token-file trader.token
    GF_TOKEN=gf_… python3 examples/trade_paper.py
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from decimal import ROUND_DOWN, Decimal
from pathlib import Path
from typing import Any, Dict, Optional

# Runs from a checkout without installing: the package is beside this directory.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from galfriday import (  # noqa: E402
    ApiError,
    Client,
    Halted,
    OrderFeed,
    RiskRefused,
    dumps,
    new_client_order_id,
)


# Risk refusals that only say market data has not arrived yet.
WAIT_FOR_MARKET = ("no_market_price", "stale_price", "unpriced_holding")


class Failure(Exception):
    """An unexpected outcome: the one line printed before exiting non-zero."""


def say(line: str) -> None:
    """One line on stdout, flushed at once (a supervising process reads it live)."""
    print(line, flush=True)


class Trader:
    """The example strategy's state, shared by the feed loop and the order placer."""

    def __init__(self, client: Client, args: argparse.Namespace) -> None:
        self.client = client
        self.args = args
        self.halted = asyncio.Event()
        self.market_id = new_client_order_id("mkt")
        self.resting_id = new_client_order_id("rest")
        self.resting_placed = False
        # The latest status of each of our orders, from the feed.
        self.status: Dict[str, str] = {}
        self.changed = asyncio.Event()
        self.fill_price: Optional[Decimal] = None

    def note_fill(self, fill: Dict[str, Any]) -> None:
        price = fill.get("price")
        if fill.get("client_order_id") == self.market_id and isinstance(price, Decimal):
            if self.fill_price is None and price > 0:
                self.fill_price = price
                self.changed.set()

    def note(self, order: Dict[str, Any]) -> None:
        cid = str(order.get("client_order_id", ""))
        self.status[cid] = str(order.get("status", ""))
        price = order.get("avg_fill_price")
        if cid == self.market_id and isinstance(price, Decimal) and price > 0:
            self.fill_price = price
        self.changed.set()

    async def wait_for(self, predicate: Any) -> None:
        """Until ``predicate()`` holds (re-checked on every feed update)."""
        while not predicate():
            self.changed.clear()
            await self.changed.wait()

    async def place(self, **order: Any) -> Optional[Dict[str, Any]]:
        """Places one order unless halted; ``None`` when the halt refused it."""
        if self.halted.is_set():
            return None
        try:
            placed = await asyncio.to_thread(self.client.place_order, **order)
        except Halted as e:
            # The halt frame follows on the feed; it decides what happens next.
            say(f"REFUSED {order['client_order_id']} halted {e.halt_id}")
            return None
        say(f"PLACED {placed['client_order_id']} {placed['status']}")
        self.note(placed)
        return placed

    async def trade(self) -> None:
        """The market buy, then the resting limit buy below its fill."""
        a = self.args
        loop = asyncio.get_running_loop()
        deadline = loop.time() + a.fill_timeout
        while True:
            try:
                market = await self.place(
                    client_order_id=self.market_id,
                    pair=a.pair,
                    side="buy",
                    type="market",
                    qty=a.qty,
                )
                break
            except RiskRefused as e:
                # No (fresh) price yet, just after the daemon started: wait for market
                # data. A refusal is final for its id, so the next try takes a new one.
                if e.check not in WAIT_FOR_MARKET or loop.time() > deadline:
                    raise
                say(f"WAITING {e.check}")
                await asyncio.sleep(0.2)
                self.market_id = new_client_order_id("mkt")
        if market is None:
            return
        if market["status"] in ("rejected", "cancelled", "expired"):
            raise Failure(f"the market buy ended {market['status']}: {market.get('reason')}")
        # The reference price: the market buy's average fill price (from the reply or
        # the feed).
        try:
            await asyncio.wait_for(
                self.wait_for(lambda: self.fill_price is not None or self.halted.is_set()),
                a.fill_timeout,
            )
        except (asyncio.TimeoutError, TimeoutError):
            raise Failure(
                f"the market buy {self.market_id} did not fill within {a.fill_timeout:g} s"
            ) from None
        if self.halted.is_set() or self.fill_price is None:
            return
        step = Decimal(1).scaleb(-a.price_decimals)
        price = (self.fill_price * (1 - a.offset_pct / 100)).quantize(step, ROUND_DOWN)
        resting = await self.place(
            client_order_id=self.resting_id,
            pair=a.pair,
            side="buy",
            type="limit",
            qty=a.qty,
            limit_price=price,
            time_in_force="gtc",
        )
        if resting is None:
            return
        if resting["status"] in ("filled", "rejected", "cancelled", "expired"):
            raise Failure(f"the resting buy at {price} ended {resting['status']}")
        self.resting_placed = True
        say(f"READY {self.resting_id}")


async def run(args: argparse.Namespace, token: str) -> None:
    client = Client(args.url, token)
    # Reachable, and the token may trade: said in one line now rather than a timeout later.
    me = await asyncio.to_thread(client.whoami)
    if me.get("role") != "trader":
        raise Failure(f"the token is {me.get('name')}'s with role {me.get('role')}, not trader")
    trader = Trader(client, args)
    feed = OrderFeed(client)
    placer: Optional[asyncio.Task[None]] = None
    try:
        async for frame in feed:
            kind = frame.get("type")
            if kind == "hello":
                if feed.connects > 1:
                    say(f"RECONNECTED since={feed.last_seq}")
                status = frame.get("status") or {}
                if placer is None:
                    if not status.get("gate_open", False):
                        halt = status.get("halt") or {}
                        raise Failure(
                            f"the daemon is {status.get('state')} (halt {halt.get('id')}: "
                            f"{halt.get('reason')}); start it running"
                        )
                    placer = asyncio.create_task(trader.trade())
                    # A failed placement ends the feed, hence the run, at once.
                    placer.add_done_callback(
                        lambda t: None
                        if t.cancelled() or t.exception() is None
                        else asyncio.ensure_future(feed.close())
                    )
                continue
            if kind in ("order", "fill"):
                say(dumps(frame))
                if kind == "order":
                    trader.note(frame["order"])
                else:
                    trader.note_fill(frame["fill"])
                if args.drop_feed_once and feed.connects == 1:
                    # A drill: lose the connection once, mid-trade; the feed resumes from
                    # the last seq and nothing is missed or repeated.
                    await feed.drop()
                continue
            if kind == "gap":
                for order in frame.get("orders", []):
                    trader.note(order)
                continue
            if kind == "halt":
                say(dumps(frame))
                halt = frame.get("halt") or {}
                trader.halted.set()
                trader.changed.set()
                if placer is not None:
                    # Stop placing; an order in flight finishes (refused, or cancelled by
                    # the halt).
                    await placer
                if trader.resting_placed:
                    # The halt cancels resting orders: the feed says so, and so does the
                    # order itself.
                    await wait_resting_cancelled(feed, trader)
                    order = await asyncio.to_thread(client.order, trader.resting_id)
                    if order.get("status") != "cancelled":
                        raise Failure(
                            f"resting order {trader.resting_id} is {order.get('status')} "
                            "after the halt, not cancelled"
                        )
                    say(f"RESTING_CANCELLED {trader.resting_id}")
                reason = " ".join(str(halt.get("reason", "")).split())
                say(f"HALT_SEEN {halt.get('id')} {reason}")
                return
            # resume and anything newer: nothing to do in this example.
    finally:
        if placer is not None and not placer.done():
            placer.cancel()
        await feed.close()
    if placer is not None and placer.done() and not placer.cancelled():
        error = placer.exception()
        if error is not None:
            raise error
    raise Failure("the order feed ended")


async def wait_resting_cancelled(feed: OrderFeed, trader: Trader) -> None:
    """Reads the feed on until the resting order's status is ``cancelled``."""
    done = ("filled", "rejected", "expired")
    if trader.status.get(trader.resting_id) == "cancelled":
        return
    async for frame in feed:
        if frame.get("type") in ("order", "fill"):
            say(dumps(frame))
        if frame.get("type") == "order":
            trader.note(frame["order"])
        for order in frame.get("orders", []) if frame.get("type") == "gap" else []:
            trader.note(order)
        status = trader.status.get(trader.resting_id)
        if status == "cancelled":
            return
        if status in done:
            raise Failure(f"resting order {trader.resting_id} ended {status}, not cancelled")
    raise Failure("the order feed ended before the resting order was cancelled")


def read_token(args: argparse.Namespace) -> str:
    if args.token_file:
        token = Path(args.token_file).read_text(encoding="utf-8").strip()
    else:
        token = os.environ.get("GF_TOKEN", "").strip()
    if not token:
        raise Failure("no token: pass --token-file FILE or set GF_TOKEN (role trader)")
    return token


def parse_args(argv: Optional[list] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8080", help="the daemon's address")
    p.add_argument("--token-file", help="a file holding a trader token (else $GF_TOKEN)")
    p.add_argument("--pair", default="XRP/USD")
    p.add_argument("--qty", type=Decimal, default=Decimal("10"), help="base quantity")
    p.add_argument(
        "--offset-pct",
        type=Decimal,
        default=Decimal("2"),
        help="how far below the fill the resting buy rests, percent (inside the collar)",
    )
    p.add_argument("--price-decimals", type=int, default=5, help="the pair's price precision")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for a halt")
    p.add_argument(
        "--drop-feed-once",
        action="store_true",
        help="drop the feed's connection after the first order or fill frame (a drill)",
    )
    p.add_argument(
        "--fill-timeout", type=float, default=15.0, help="seconds for the market buy to fill"
    )
    return p.parse_args(argv)


def main(argv: Optional[list] = None) -> int:
    args = parse_args(argv)
    try:
        token = read_token(args)
        asyncio.run(asyncio.wait_for(run(args, token), args.timeout))
    except (asyncio.TimeoutError, TimeoutError):
        print(f"trade_paper: error: no halt within {args.timeout:g} s", file=sys.stderr, flush=True)
        return 1
    except Failure as e:
        print(f"trade_paper: error: {e}", file=sys.stderr, flush=True)
        return 1
    except ApiError as e:
        print(f"trade_paper: error: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt:
        print("trade_paper: error: interrupted", file=sys.stderr, flush=True)
        return 130
    except Exception as e:  # noqa: BLE001 - one clear line, whatever it was
        print(f"trade_paper: error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
