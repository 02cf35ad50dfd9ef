"""A small client for Gal-Friday's order gateway (role ``trader``).

REST goes through the standard library (``urllib.request``); the order feed
(``WS /ws/orders``) needs the ``websockets`` package. Money is
:class:`decimal.Decimal` both ways: quantities and prices are sent as decimal
strings, and the money fields of every answer (``qty``, ``limit_price``,
``filled_qty``, ``avg_fill_price``, ``fees``, ``price``, ``fee``) come back as
``Decimal``. A ``float`` is refused: it cannot hold most prices exactly.

The wire contract is the daemon's ``/api/v1/openapi.json``; the types are
defined once in the Rust crate ``gf-api``.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import http.client
import json
import random
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from decimal import Decimal, InvalidOperation
from typing import Any, AsyncIterator, Dict, List, Mapping, Optional, Union

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

Money = Union[Decimal, int, str]
"""A quantity or price: a ``Decimal``, an ``int`` or a decimal string — never a float."""

Json = Dict[str, Any]

# The fields of GatewayOrder / GatewayFill (and risk refusal details) that are money.
_MONEY_FIELDS = frozenset(
    {
        "qty",
        "limit_price",
        "filled_qty",
        "avg_fill_price",
        "fees",
        "price",
        "fee",
        "max",
        "notional",
        "limit",
        "market",
        "deviation_pct",
        "collar_pct",
    }
)

# Connection failures that a retry may cure.
_TRANSIENT = (
    urllib.error.URLError,
    http.client.HTTPException,
    ConnectionError,
    socket.timeout,
    TimeoutError,
)


class ApiError(Exception):
    """The daemon refused a request, or could not be reached.

    Every error answer of the daemon is ``{"error": {"code", "message", "detail"?}}``;
    ``status`` is the HTTP status (0 when no answer arrived).
    """

    def __init__(
        self,
        code: str,
        status: int,
        message: str,
        detail: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.code: str = code
        self.status: int = status
        self.message: str = message
        self.detail: Dict[str, Any] = dict(detail or {})


class Unreachable(ApiError):
    """No answer: the connection failed or timed out (after the retries allowed)."""


class Halted(ApiError):
    """Trading is halted: the order was refused (409 ``halted``).

    ``halt_id`` and ``reason`` name the halt in force; an operator resumes it.
    """

    def __init__(
        self,
        code: str,
        status: int,
        message: str,
        detail: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__(code, status, message, detail)
        raw_id = self.detail.get("halt_id")
        self.halt_id: Optional[int] = int(raw_id) if raw_id is not None else None
        self.reason: str = str(self.detail.get("reason", ""))
        self.source: str = str(self.detail.get("source", ""))
        self.state: str = str(self.detail.get("state", ""))


class RiskRefused(ApiError):
    """A pre-trade risk check refused the order (422 ``risk_refused``).

    ``check`` is the check's code (``price_collar``, ``order_notional``, …); ``detail``
    holds its figures (``max``, ``market``, ``collar_pct``, … as ``Decimal``).
    """

    def __init__(
        self,
        code: str,
        status: int,
        message: str,
        detail: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__(code, status, message, detail)
        self.check: str = str(self.detail.get("check", ""))


class RateLimited(ApiError):
    """Too many orders, or too many open (429 ``rate_limited``).

    ``retry_after`` is how long to wait, in seconds (the ``Retry-After`` header).
    """

    def __init__(
        self,
        code: str,
        status: int,
        message: str,
        detail: Optional[Mapping[str, Any]] = None,
        retry_after: Optional[float] = None,
    ) -> None:
        super().__init__(code, status, message, detail)
        if retry_after is None:
            raw = self.detail.get("retry_after_secs")
            retry_after = float(raw) if raw is not None else 1.0
        self.retry_after: float = retry_after
        self.limit: str = str(self.detail.get("limit", ""))


class ExchangeRefused(ApiError):
    """The venue refused the order: its trading mode (409 ``exchange_cancel_only``,
    ``exchange_post_only``, ``exchange_maintenance``, ``exchange_unknown``) or the
    exchange itself (502 ``exchange_rejected``, ``reason`` says why)."""

    def __init__(
        self,
        code: str,
        status: int,
        message: str,
        detail: Optional[Mapping[str, Any]] = None,
    ) -> None:
        super().__init__(code, status, message, detail)
        self.exchange_status: Optional[str] = self.detail.get("exchange_status")
        self.reason: Optional[str] = self.detail.get("reason")


def new_client_order_id(prefix: str = "py") -> str:
    """A fresh client order id: ``<prefix>-<32 hex digits>`` (at most 64 characters)."""
    return f"{prefix}-{uuid.uuid4().hex}"[:64]


def _money_text(value: Money, field: str) -> str:
    """``value`` as a plain decimal string (no exponent); refuses floats and non-numbers."""
    if isinstance(value, bool) or isinstance(value, float):
        raise TypeError(f"{field} must be a Decimal, int or decimal string, not {type(value).__name__}")
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value).strip())
    except InvalidOperation:
        raise ValueError(f"{field} is not a decimal: {value!r}") from None
    if not d.is_finite():
        raise ValueError(f"{field} is not a finite decimal: {value!r}")
    return format(d, "f")


def _decimals(value: Any) -> Any:
    """Converts the money fields of a decoded answer to ``Decimal``, recursively."""
    if isinstance(value, list):
        return [_decimals(v) for v in value]
    if isinstance(value, dict):
        out: Dict[str, Any] = {}
        for k, v in value.items():
            if k in _MONEY_FIELDS and isinstance(v, str):
                try:
                    out[k] = Decimal(v)
                except InvalidOperation:
                    out[k] = v
            else:
                out[k] = _decimals(v)
        return out
    return value


def _loads(text: Union[str, bytes]) -> Any:
    """JSON with every number as ``Decimal`` or ``int`` (never float) and money fields as
    ``Decimal``."""
    return _decimals(json.loads(text, parse_float=Decimal))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return format(obj, "f")
    if isinstance(obj, (_dt.datetime, _dt.date)):
        return obj.isoformat()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def dumps(obj: Any) -> str:
    """One line of JSON, ``Decimal`` written as a decimal string."""
    return json.dumps(obj, default=_json_default, separators=(",", ":"), sort_keys=True)


def _error_from(status: int, body: bytes, headers: Mapping[str, str]) -> ApiError:
    """The typed exception for an error answer."""
    code, message, detail = f"http_{status}", body.decode("utf-8", "replace")[:300], {}
    try:
        err = _loads(body).get("error", {})
        if isinstance(err, dict):
            code = str(err.get("code", code))
            message = str(err.get("message", message))
            raw = err.get("detail")
            detail = raw if isinstance(raw, dict) else {}
    except (ValueError, AttributeError):
        pass
    if code == "halted":
        return Halted(code, status, message, detail)
    if code == "risk_refused":
        return RiskRefused(code, status, message, detail)
    if code == "rate_limited" or status == 429:
        retry_after: Optional[float] = None
        header = headers.get("Retry-After")
        if header is not None:
            try:
                retry_after = float(header)
            except ValueError:
                retry_after = None
        return RateLimited(code, status, message, detail, retry_after)
    if code.startswith("exchange_"):
        return ExchangeRefused(code, status, message, detail)
    return ApiError(code, status, message, detail)


class Client:
    """Blocking REST client for one daemon and one token.

    ``url`` is the daemon's base address (``http://127.0.0.1:8080``); ``token`` a bearer
    token, role ``trader`` to trade. ``timeout`` bounds every request, in seconds.
    ``retries`` is how often a request that got no answer is sent again (reads, and
    orders with the same client order id, which the daemon answers with the first
    result instead of placing a second order).
    """

    def __init__(
        self,
        url: str,
        token: str,
        *,
        timeout: float = 10.0,
        retries: int = 3,
        backoff: float = 0.2,
    ) -> None:
        parsed = urllib.parse.urlsplit(url)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise ValueError(f"the daemon URL must be http(s)://host:port, not {url!r}")
        self.url: str = url.rstrip("/")
        self.token: str = token.strip()
        self.timeout: float = timeout
        self.retries: int = max(0, retries)
        self.backoff: float = backoff

    # -- transport -------------------------------------------------------------------

    def _once(self, method: str, path: str, body: Optional[bytes]) -> Any:
        req = urllib.request.Request(self.url + path, data=body, method=method)
        req.add_header("Authorization", f"Bearer {self.token}")
        req.add_header("Accept", "application/json")
        if body is not None:
            req.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                data = resp.read()
        except urllib.error.HTTPError as e:
            data = e.read() if e.fp is not None else b""
            raise _error_from(e.code, data, e.headers or {}) from None
        return _loads(data) if data else {}

    def _request(
        self, method: str, path: str, body: Optional[Json] = None, *, retry: bool = True
    ) -> Any:
        """Sends one request; retries (same body) when no answer arrived and ``retry``,
        and on ``503 not_journaled`` (nothing was placed)."""
        raw = dumps(body).encode() if body is not None else None
        attempts = 1 + (self.retries if retry else 0)
        delay = self.backoff
        last: Optional[BaseException] = None
        for attempt in range(attempts):
            if attempt:
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 5.0)
            try:
                return self._once(method, path, raw)
            except ApiError as e:
                if e.code == "not_journaled" and retry:
                    last = e
                    continue
                raise
            except _TRANSIENT as e:
                last = e
        if isinstance(last, ApiError):
            raise last
        raise Unreachable(
            "unreachable", 0, f"{method} {path}: no answer after {attempts} attempt(s): {last}"
        )

    # -- orders ----------------------------------------------------------------------

    def place_order(
        self,
        pair: str,
        side: str,
        type: str,  # noqa: A002 - the wire field's name
        qty: Money,
        limit_price: Optional[Money] = None,
        *,
        time_in_force: Optional[str] = None,
        post_only: bool = False,
        client_order_id: Optional[str] = None,
    ) -> Json:
        """Places an order (``POST /api/v1/orders``) and returns it as the daemon tracks it
        (``status``, ``filled_qty``, …; money as ``Decimal``).

        ``client_order_id`` is the idempotency key; one is generated when not given. A
        request that got no answer is sent again with the same id, so the order is placed
        at most once. A repeat of an id already used returns that order (or its refusal).

        Raises :class:`Halted`, :class:`RiskRefused`, :class:`RateLimited`,
        :class:`ExchangeRefused`, :class:`Unreachable` or :class:`ApiError` (``code`` says
        which: ``invalid_field``, ``idempotency_conflict``, ``forbidden``, …).
        """
        body: Json = {
            "client_order_id": client_order_id or new_client_order_id(),
            "pair": pair,
            "side": side,
            "type": type,
            "qty": _money_text(qty, "qty"),
            "post_only": bool(post_only),
        }
        if limit_price is not None:
            body["limit_price"] = _money_text(limit_price, "limit_price")
        if time_in_force is not None:
            body["time_in_force"] = time_in_force
        reply = self._request("POST", "/api/v1/orders", body)
        return reply["order"]

    def cancel(self, client_order_id: str) -> Json:
        """Cancels one of this trader's orders; returns ``{"cancelled": [...], "failed":
        [...]}``. Raises :class:`ApiError` ``unknown_order`` (404) or ``order_closed``
        (409, already terminal). Not retried: a lost answer shows as an error."""
        path = "/api/v1/orders/" + urllib.parse.quote(client_order_id, safe="")
        return self._request("DELETE", path, retry=False)

    def cancel_all(self) -> Json:
        """Cancels every open order of this trader (never another's)."""
        return self._request("DELETE", "/api/v1/orders", retry=False)

    def orders(self, status: Optional[str] = None) -> List[Json]:
        """This trader's orders, newest first; ``status``: ``open``, ``closed``, ``all``
        or one order status (``filled``, ``cancelled``, …)."""
        path = "/api/v1/orders"
        if status is not None:
            path += "?" + urllib.parse.urlencode({"status": status})
        return list(self._request("GET", path).get("orders", []))

    def order(self, client_order_id: str) -> Json:
        """One of this trader's orders; :class:`ApiError` ``unknown_order`` (404)."""
        path = "/api/v1/orders/" + urllib.parse.quote(client_order_id, safe="")
        return self._request("GET", path)["order"]

    def fills(self, since: Union[None, str, _dt.datetime] = None) -> List[Json]:
        """This trader's fills, oldest first; ``since`` (an aware datetime or RFC 3339
        text) keeps the later ones."""
        path = "/api/v1/fills"
        if since is not None:
            if isinstance(since, _dt.datetime):
                if since.tzinfo is None:
                    raise ValueError("since must be timezone-aware")
                since = since.isoformat()
            path += "?" + urllib.parse.urlencode({"since": since})
        return list(self._request("GET", path).get("fills", []))

    def status(self) -> Json:
        """The halt status (``GET /api/v1/halt/status``): ``state``, ``gate_open``,
        ``halt``, …"""
        return self._request("GET", "/api/v1/halt/status")

    def whoami(self) -> Json:
        """The token's name and role."""
        return self._request("GET", "/api/v1/whoami")

    def conditions(self) -> List[Json]:
        """The halt conditions with their latest values."""
        return list(self._request("GET", "/api/v1/conditions").get("conditions", []))

    def feed(self, **kwargs: Any) -> "OrderFeed":
        """An :class:`OrderFeed` on this client (keyword arguments as its own)."""
        return OrderFeed(self, **kwargs)


def _ws_connect(url: str, token: str, open_timeout: float) -> Any:
    """``websockets``' connect, the asyncio API (13+) or the legacy one."""
    headers = {"Authorization": f"Bearer {token}"}
    try:
        from websockets.asyncio.client import connect  # websockets >= 13
    except ImportError:  # pragma: no cover - older websockets
        import websockets

        return websockets.connect(  # type: ignore[attr-defined]
            url,
            extra_headers=headers,
            open_timeout=open_timeout,
            close_timeout=2,
            max_size=2**22,
        )
    return connect(
        url,
        additional_headers=headers,
        open_timeout=open_timeout,
        close_timeout=2,
        max_size=2**22,
    )


def _handshake_status(exc: BaseException) -> Optional[int]:
    """The HTTP status of a refused WebSocket handshake, when ``exc`` is one."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    if status is None:
        status = getattr(exc, "status_code", None)
    return int(status) if status is not None else None


class OrderFeed:
    """The trader's order feed (``WS /ws/orders``), as an async iterator of frames.

    It remembers the daemon's ``epoch`` and the last ``seq`` it yielded, and reconnects
    (exponential backoff, ``backoff_initial`` to ``backoff_max`` seconds, reset by every
    hello) with ``?since=<last seq>``, so every frame with a ``seq`` is yielded exactly
    once. Frames: ``hello`` (on every connect), ``order``, ``fill``, ``halt``,
    ``resume``, and ``gap`` when frames were lost (the daemon no longer kept them, it
    restarted — a new epoch — or a sequence number was skipped): the feed then re-reads
    ``GET /api/v1/orders`` and adds the result to the gap frame as ``orders``, the state
    to continue from. Money fields are ``Decimal``.

    ``since`` (with the ``epoch`` it belongs to) starts from an earlier position;
    otherwise the feed starts with live frames. A refused handshake (401, 403) raises
    :class:`ApiError`; so does running out of ``max_reconnects`` (``None``: never).
    """

    def __init__(
        self,
        client: Client,
        *,
        since: Optional[int] = None,
        epoch: Optional[str] = None,
        backoff_initial: float = 0.1,
        backoff_max: float = 5.0,
        open_timeout: float = 10.0,
        max_reconnects: Optional[int] = None,
    ) -> None:
        self.client: Client = client
        self.epoch: Optional[str] = epoch
        self.last_seq: Optional[int] = since
        self.hello: Optional[Json] = None
        self.connects: int = 0
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._open_timeout = open_timeout
        self._max_reconnects = max_reconnects
        self._ws: Any = None
        self._closed = False
        self._frames: Optional[AsyncIterator[Json]] = None

    def _ws_url(self) -> str:
        parts = urllib.parse.urlsplit(self.client.url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        query = ""
        if self.last_seq is not None:
            query = urllib.parse.urlencode({"since": self.last_seq})
        path = parts.path.rstrip("/") + "/ws/orders"
        return urllib.parse.urlunsplit((scheme, parts.netloc, path, query, ""))

    async def drop(self) -> None:
        """Drops the current connection abruptly, as a network failure would (no closing
        handshake); the feed reconnects and resumes after the last ``seq``. For tests
        and drills."""
        ws = self._ws
        transport = getattr(ws, "transport", None)
        if transport is not None:
            transport.abort()
        elif ws is not None:
            await ws.close()

    async def close(self) -> None:
        """Closes the connection; the iteration ends."""
        self._closed = True
        if self._ws is not None:
            await self._ws.close()

    async def _resync(self, frame: Json) -> Json:
        """A gap: re-reads the orders and continues from ``head_seq``."""
        orders = await asyncio.to_thread(self.client.orders, "all")
        self.last_seq = int(frame.get("head_seq", 0))
        out = dict(frame)
        out["orders"] = orders
        return out

    def __aiter__(self) -> "OrderFeed":
        return self

    async def __anext__(self) -> Json:
        """The next frame. Iterating again (a second ``async for``) continues where the
        last one stopped: one connection, one sequence."""
        if self._frames is None:
            self._frames = self._run()
        return await self._frames.__anext__()

    async def _run(self) -> AsyncIterator[Json]:
        """Yields frames until :meth:`close`; see the class documentation."""
        delay = self._backoff_initial
        failures = 0
        while not self._closed:
            try:
                async with _ws_connect(
                    self._ws_url(), self.client.token, self._open_timeout
                ) as ws:
                    self._ws = ws
                    self.connects += 1
                    async for frame in self._session(ws):
                        failures = 0
                        delay = self._backoff_initial
                        yield frame
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - sorted below
                status = _handshake_status(e)
                if status in (401, 403):
                    raise ApiError(
                        "unauthorized" if status == 401 else "forbidden",
                        status,
                        f"the order feed refused the token ({status})",
                    ) from None
                if isinstance(e, (ApiError, ValueError, TypeError, KeyError)):
                    raise
                failures += 1
                if self._max_reconnects is not None and failures > self._max_reconnects:
                    raise Unreachable(
                        "unreachable", 0, f"order feed: {failures} failed connection(s): {e}"
                    ) from e
            finally:
                self._ws = None
            if self._closed:
                return
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, self._backoff_max)

    async def _session(self, ws: Any) -> AsyncIterator[Json]:
        """The frames of one connection, deduplicated and checked for holes."""
        asked_since = self.last_seq
        first = True
        # After a resync on a new epoch, the daemon's own gap for the stale `since` says
        # nothing new.
        skip_gap = False
        async for text in ws:
            frame = _loads(text)
            kind = frame.get("type")
            if first:
                first = False
                if kind != "hello":
                    raise ValueError(f"order feed: first frame is {kind!r}, not hello")
            if kind == "hello":
                epoch = str(frame.get("epoch", ""))
                changed = self.epoch is not None and epoch != self.epoch
                self.epoch = epoch
                self.hello = frame
                yield frame
                if changed and asked_since is not None:
                    # The daemon restarted: our seq belongs to its previous life. Continue
                    # from its head, with the orders as they stand now.
                    yield await self._resync(
                        {
                            "type": "gap",
                            "since": asked_since,
                            "oldest_seq": frame.get("oldest_seq", 0),
                            "head_seq": frame.get("head_seq", 0),
                            "epoch_changed": True,
                        }
                    )
                    # Frames replayed for the stale `since` are skipped by seq below.
                    asked_since = None
                    skip_gap = True
                elif self.last_seq is None:
                    self.last_seq = int(frame.get("head_seq", 0))
                continue
            if kind == "gap":
                if skip_gap:
                    skip_gap = False
                    self.last_seq = max(self.last_seq or 0, int(frame.get("head_seq", 0)))
                    continue
                yield await self._resync(frame)
                continue
            skip_gap = False
            seq = frame.get("seq")
            if not isinstance(seq, int):
                raise ValueError(f"order feed: frame without seq: {frame}")
            last = self.last_seq or 0
            if seq <= last:
                continue  # already yielded
            if seq > last + 1:
                # A hole the daemon did not announce: resync rather than miss an update.
                gap = await self._resync(
                    {
                        "type": "gap",
                        "since": last,
                        "oldest_seq": seq,
                        "head_seq": seq - 1,
                        "unannounced": True,
                    }
                )
                yield gap
            self.last_seq = seq
            yield frame
