"""Unit tests of the client: retries reuse the idempotency key, errors are typed, money is
Decimal, and the order feed yields every frame once across reconnects, gaps and restarts.

REST runs against a scripted HTTP server on loopback; the feed's frame logic against a
scripted connection. Run: ``python3 -m unittest discover -s clients/python/tests``
(gf-daemon's ``gateway_python`` test runs it in CI).
"""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import unittest
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from galfriday import (  # noqa: E402
    ApiError,
    Client,
    ExchangeRefused,
    Halted,
    OrderFeed,
    RateLimited,
    RiskRefused,
    Unreachable,
)

# A scripted answer: (status, body, headers), or None to drop the connection unanswered.
Answer = Optional[Tuple[int, Any, Dict[str, str]]]


class Scripted:
    """An HTTP server on loopback answering from a script, recording every request."""

    def __init__(self, answers: List[Answer]) -> None:
        self.answers = list(answers)
        self.requests: List[Tuple[str, str, Dict[str, str], Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def handle_any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                outer.requests.append((self.command, self.path, dict(self.headers), body))
                answer = outer.answers.pop(0) if outer.answers else (500, "script ended", {})
                if answer is None:
                    # Lost: the connection closes with no answer.
                    self.close_connection = True
                    return
                status, payload, headers = answer
                data = (payload if isinstance(payload, str) else json.dumps(payload)).encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_DELETE = handle_any

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def order(cid: str, **fields: Any) -> Dict[str, Any]:
    o = {"client_order_id": cid, "status": "open", "qty": "10", "filled_qty": "0"}
    o.update(fields)
    return o


def error(code: str, detail: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    e: Dict[str, Any] = {"code": code, "message": code.replace("_", " ")}
    if detail is not None:
        e["detail"] = detail
    return {"error": e}


class RestTests(unittest.TestCase):
    def serve(self, answers: List[Answer]) -> Tuple[Scripted, Client]:
        server = Scripted(answers)
        self.addCleanup(server.close)
        return server, Client(server.url, "gf_tok", timeout=5, retries=3, backoff=0.01)

    def test_a_lost_answer_is_retried_with_the_same_client_order_id(self) -> None:
        server, client = self.serve(
            [
                None,
                (503, error("not_journaled"), {}),
                (200, {"order": order("x", limit_price="2.1"), "replayed": True}, {}),
            ]
        )
        got = client.place_order("XRP/USD", "buy", "limit", Decimal("10"), Decimal("2.10"))
        self.assertEqual(len(server.requests), 3)
        ids = {r[3]["client_order_id"] for r in server.requests}
        self.assertEqual(len(ids), 1, server.requests)
        first = server.requests[0]
        self.assertEqual(first[0], "POST")
        self.assertEqual(first[1], "/api/v1/orders")
        self.assertEqual(first[2]["Authorization"], "Bearer gf_tok")
        # Money goes out as decimal strings, exactly as given.
        self.assertEqual(first[3]["qty"], "10")
        self.assertEqual(first[3]["limit_price"], "2.10")
        self.assertEqual(got["limit_price"], Decimal("2.1"))
        self.assertIsInstance(got["qty"], Decimal)

    def test_an_order_never_answered_raises_unreachable_after_the_retries(self) -> None:
        server, client = self.serve([None, None, None, None])
        with self.assertRaises(Unreachable) as caught:
            client.place_order("XRP/USD", "buy", "market", 1, client_order_id="mine-1")
        self.assertEqual(caught.exception.status, 0)
        self.assertEqual([r[3]["client_order_id"] for r in server.requests], ["mine-1"] * 4)

    def test_refusals_are_typed_and_not_retried(self) -> None:
        cases: List[Tuple[Answer, type, Callable[[Any], None]]] = [
            (
                (409, error("halted", {"halt_id": 7, "reason": "drawdown", "source": "auto:x"}), {}),
                Halted,
                lambda e: self.assertEqual((e.halt_id, e.reason), (7, "drawdown")),
            ),
            (
                (
                    422,
                    error(
                        "risk_refused",
                        {"check": "price_collar", "market": "2.18", "collar_pct": "5"},
                    ),
                    {},
                ),
                RiskRefused,
                lambda e: self.assertEqual(
                    (e.check, e.detail["market"]), ("price_collar", Decimal("2.18"))
                ),
            ),
            (
                (
                    429,
                    error("rate_limited", {"limit": "open_orders", "retry_after_secs": 9}),
                    {"Retry-After": "3"},
                ),
                RateLimited,
                lambda e: self.assertEqual((e.retry_after, e.limit), (3.0, "open_orders")),
            ),
            (
                (409, error("exchange_cancel_only", {"exchange_status": "cancel_only"}), {}),
                ExchangeRefused,
                lambda e: self.assertEqual(e.exchange_status, "cancel_only"),
            ),
            (
                (502, error("exchange_rejected", {"reason": "EOrder:Insufficient funds"}), {}),
                ExchangeRefused,
                lambda e: self.assertEqual(e.reason, "EOrder:Insufficient funds"),
            ),
            (
                (409, error("idempotency_conflict", {"fields": ["qty"]}), {}),
                ApiError,
                lambda e: self.assertEqual((e.code, e.status), ("idempotency_conflict", 409)),
            ),
            (
                (500, "<html>oops</html>", {}),
                ApiError,
                lambda e: self.assertEqual((e.code, e.status), ("http_500", 500)),
            ),
        ]
        for answer, kind, check in cases:
            with self.subTest(kind=kind.__name__, answer=answer):
                server, client = self.serve([answer])
                with self.assertRaises(ApiError) as caught:
                    client.place_order("XRP/USD", "buy", "market", "1")
                self.assertIs(type(caught.exception), kind)
                check(caught.exception)
                self.assertEqual(len(server.requests), 1)

    def test_floats_and_non_numbers_are_refused_before_sending(self) -> None:
        server, client = self.serve([])
        with self.assertRaises(TypeError):
            client.place_order("XRP/USD", "buy", "market", 1.5)  # type: ignore[arg-type]
        with self.assertRaises(TypeError):
            client.place_order("XRP/USD", "buy", "limit", 1, 2.1)  # type: ignore[arg-type]
        for bad in ("abc", "NaN", "Infinity"):
            with self.assertRaises(ValueError):
                client.place_order("XRP/USD", "buy", "market", bad)
        self.assertEqual(server.requests, [])

    def test_exponents_are_written_out(self) -> None:
        server, client = self.serve([(201, {"order": order("a"), "replayed": False}, {})])
        client.place_order("XRP/USD", "buy", "limit", Decimal("1E+2"), Decimal("25E-1"))
        self.assertEqual(server.requests[0][3]["qty"], "100")
        self.assertEqual(server.requests[0][3]["limit_price"], "2.5")

    def test_reads_and_cancels_use_their_routes(self) -> None:
        server, client = self.serve(
            [
                (200, {"orders": [order("a/b")]}, {}),
                (200, {"order": order("a/b")}, {}),
                (200, {"cancelled": ["a/b"], "failed": []}, {}),
                (200, {"cancelled": [], "failed": []}, {}),
                (200, {"fills": [{"price": "2.1", "qty": "3", "fee": "0.01"}]}, {}),
                (200, {"state": "running", "gate_open": True}, {}),
            ]
        )
        self.assertEqual(client.orders(status="open")[0]["qty"], Decimal("10"))
        client.order("a/b")
        client.cancel("a/b")
        client.cancel_all()
        fills = client.fills(since="2026-03-02T14:00:00Z")
        self.assertEqual(fills[0]["fee"], Decimal("0.01"))
        self.assertTrue(client.status()["gate_open"])
        self.assertEqual(
            [(r[0], r[1]) for r in server.requests],
            [
                ("GET", "/api/v1/orders?status=open"),
                ("GET", "/api/v1/orders/a%2Fb"),
                ("DELETE", "/api/v1/orders/a%2Fb"),
                ("DELETE", "/api/v1/orders"),
                ("GET", "/api/v1/fills?since=2026-03-02T14%3A00%3A00Z"),
                ("GET", "/api/v1/halt/status"),
            ],
        )


class ScriptedWs:
    """One feed connection's frames."""

    def __init__(self, frames: List[Dict[str, Any]]) -> None:
        self.texts = [json.dumps(f) for f in frames]

    def __aiter__(self) -> Any:
        return self._frames()

    async def _frames(self) -> Any:
        for t in self.texts:
            yield t


class StubClient(Client):
    """A client whose order re-read is counted, not sent."""

    def __init__(self) -> None:
        super().__init__("http://127.0.0.1:9", "gf_tok")
        self.rereads = 0

    def orders(self, status: Optional[str] = None) -> List[Dict[str, Any]]:
        self.rereads += 1
        return [order("a", status="filled")]


def hello(epoch: str, head: int) -> Dict[str, Any]:
    return {"type": "hello", "epoch": epoch, "head_seq": head, "oldest_seq": 1, "status": {}}


def upd(seq: int) -> Dict[str, Any]:
    return {"type": "order", "seq": seq, "order": order("a", qty="1.5")}


class FeedTests(unittest.TestCase):
    def session(self, feed: OrderFeed, frames: List[Dict[str, Any]]) -> List[Tuple[str, Any]]:
        async def run() -> List[Dict[str, Any]]:
            return [f async for f in feed._session(ScriptedWs(frames))]

        out = asyncio.run(run())
        self.last = out
        return [(f["type"], f.get("seq")) for f in out]

    def test_every_frame_once_across_reconnects_gaps_and_restarts(self) -> None:
        client = StubClient()
        feed = OrderFeed(client)
        # Live from the head; a repeat is dropped; money is Decimal.
        self.assertEqual(
            self.session(feed, [hello("e1", 3), upd(4), upd(5), upd(5), upd(4)]),
            [("hello", None), ("order", 4), ("order", 5)],
        )
        self.assertEqual(self.last[1]["order"]["qty"], Decimal("1.5"))
        self.assertEqual(feed._ws_url(), "ws://127.0.0.1:9/ws/orders?since=5")
        # Resumed: the overlap is dropped; a hole the daemon did not announce is a gap
        # with the orders re-read.
        self.assertEqual(
            self.session(feed, [hello("e1", 7), upd(5), upd(6), upd(7), upd(9)]),
            [("hello", None), ("order", 6), ("order", 7), ("gap", None), ("order", 9)],
        )
        self.assertEqual(self.last[3]["orders"][0]["status"], "filled")
        self.assertEqual(client.rereads, 1)
        # The daemon's own gap: re-read, continue from its head.
        gap = {"type": "gap", "since": 9, "oldest_seq": 15, "head_seq": 20}
        self.assertEqual(
            self.session(feed, [hello("e1", 20), gap, upd(21)]),
            [("hello", None), ("gap", None), ("order", 21)],
        )
        self.assertEqual(client.rereads, 2)
        # A restart (new epoch) whose head is below our seq: one gap, not two.
        gap = {"type": "gap", "since": 21, "oldest_seq": 1, "head_seq": 3}
        self.assertEqual(
            self.session(feed, [hello("e2", 3), gap, upd(4)]),
            [("hello", None), ("gap", None), ("order", 4)],
        )
        self.assertTrue(self.last[1]["epoch_changed"])
        self.assertEqual((feed.epoch, client.rereads), ("e2", 3))
        # A restart whose head is above our seq: the replayed frames of the new life that
        # the re-read already covers are dropped.
        feed.last_seq = 2
        self.assertEqual(
            self.session(feed, [hello("e3", 5), upd(3), upd(4), upd(5), upd(6)]),
            [("hello", None), ("gap", None), ("order", 6)],
        )
        self.assertEqual(feed.last_seq, 6)

    def test_a_first_frame_other_than_hello_is_an_error(self) -> None:
        with self.assertRaises(ValueError):
            self.session(OrderFeed(StubClient()), [upd(1)])


if __name__ == "__main__":
    unittest.main()
