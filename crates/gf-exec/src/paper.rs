//! The paper exchange: an in-process [`Exchange`] that fills against its own view of each
//! pair's order book, built from the bus's `BookSnapshot` / `BookUpdate` events.
//!
//! - Market orders walk the opposite side of the book level by level (one fill per level,
//!   taker fee), consuming the liquidity they take; what the book cannot fill is cancelled.
//! - Limit orders execute what crosses on arrival (taker), then rest (GTC) or are cancelled
//!   (IOC); a resting order fills at its limit price (maker fee) when a later book crosses it.
//! - A post-only limit order that would take liquidity on arrival is cancelled without
//!   executing (reason [`POST_ONLY_CANCEL_REASON`], as Kraken); one that does not cross
//!   rests as a maker.
//! - Balances are checked and moved per fill; resting orders reserve their funds.
//! - Reduce-only orders are rejected, as Kraken rejects them without a margin position:
//!   this is a spot account (a halt's closure sells the balance instead).
//! - The dead man's switch cancels everything once the clock passes its deadline.
//!
//! It emits `OrderUpdate` and `Fill` events exactly as the live client does, stamped by its
//! clock, so the same inputs always give the same outputs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gf_core::config::ExchangeConfig;
use gf_core::{
    ApiErrorKind, ClientOrderId, Event, EventBus, EventKind, Fill, KindSet, OrderId, OrderPurpose,
    OrderRequest, OrderStatus, OrderType, Pair, Payload, Position, Price, Qty, RecvError, Side,
    TimeInForce,
};
use parking_lot::Mutex;
use rust_decimal::Decimal;

use crate::events::Publisher;
use crate::{DeadManStatus, Error, Exchange, OrderAck, OrderInfo, OrderRef};

/// The reason Kraken gives for a post-only order it cancelled because it would have taken
/// liquidity on arrival; the paper exchange's cancel reason starts with it.
pub const POST_ONLY_CANCEL_REASON: &str = "Post only order";

/// Paper exchange settings.
#[derive(Debug, Clone, PartialEq)]
pub struct PaperConfig {
    /// Taker fee, percent of notional.
    pub taker_fee_pct: Decimal,
    /// Maker fee, percent of notional.
    pub maker_fee_pct: Decimal,
    /// Starting balances per asset.
    pub balances: BTreeMap<String, Decimal>,
}

impl Default for PaperConfig {
    fn default() -> Self {
        Self::from_config(&ExchangeConfig::default())
    }
}

impl PaperConfig {
    /// From the `[exchange]` section (`paper_*` keys).
    #[must_use]
    pub fn from_config(cfg: &ExchangeConfig) -> Self {
        Self {
            taker_fee_pct: cfg.paper_taker_fee_pct,
            maker_fee_pct: cfg.paper_maker_fee_pct,
            balances: cfg.paper_balances.clone(),
        }
    }
}

#[derive(Debug, Default, Clone)]
struct Book {
    bids: BTreeMap<Price, Qty>,
    asks: BTreeMap<Price, Qty>,
    /// The subscribed depth: the snapshot's levels per side.
    depth: usize,
}

impl Book {
    /// Kraken's book channel sends no delete for a level that falls out of the subscribed
    /// depth (a better price pushed it out); the client truncates each side to the depth
    /// after applying an update (docs.kraken.com, WebSocket v2 `book`: "Maintaining the
    /// book"; gf-market's `Book::apply_update` does the same). Without it a level that
    /// scrolled out stays here forever and the paper exchange fills at a price the
    /// market left long ago.
    fn truncate(&mut self) {
        if self.depth == 0 {
            return;
        }
        while self.bids.len() > self.depth {
            self.bids.pop_first();
        }
        while self.asks.len() > self.depth {
            self.asks.pop_last();
        }
    }

    fn apply(levels: &[gf_core::Level], side: &mut BTreeMap<Price, Qty>) {
        for l in levels {
            if l.qty.is_zero() {
                side.remove(&l.price);
            } else if l.qty > Decimal::ZERO && l.price > Decimal::ZERO {
                side.insert(l.price, l.qty);
            }
        }
    }

    fn mid(&self) -> Option<Price> {
        let bid = self.bids.keys().next_back()?;
        let ask = self.asks.keys().next()?;
        Some(bid.checked_add(*ask)? / Decimal::TWO)
    }
}

#[derive(Debug, Clone)]
struct PaperOrder {
    info: OrderInfo,
    purpose: OrderPurpose,
    notional: Decimal,
    /// Funds still reserved for the resting remainder (quote for buys, base for sells).
    reserved: Decimal,
}

#[derive(Debug, Default, Clone)]
struct Holding {
    avg_entry: Price,
    realised: Decimal,
    fees: Decimal,
}

#[derive(Debug, Default)]
struct State {
    books: HashMap<Pair, Book>,
    orders: BTreeMap<u64, PaperOrder>,
    /// Sequence numbers of the orders that are not terminal, in placement order.
    open: BTreeSet<u64>,
    by_id: HashMap<OrderId, u64>,
    by_client: HashMap<ClientOrderId, u64>,
    balances: BTreeMap<String, Decimal>,
    reserved: BTreeMap<String, Decimal>,
    holdings: BTreeMap<Pair, Holding>,
    next_order: u64,
    next_trade: u64,
    dead_man: Option<DateTime<Utc>>,
}

impl State {
    fn available(&self, asset: &str) -> Decimal {
        self.balances.get(asset).copied().unwrap_or_default()
            - self.reserved.get(asset).copied().unwrap_or_default()
    }

    fn open_orders(&self) -> impl Iterator<Item = (u64, &PaperOrder)> {
        self.open
            .iter()
            .filter_map(|seq| self.orders.get(seq).map(|o| (*seq, o)))
    }

    fn adjust(map: &mut BTreeMap<String, Decimal>, asset: &str, delta: Decimal) {
        *map.entry(asset.to_owned()).or_default() += delta;
    }
}

/// The paper exchange. Share it with `Arc`; feed it with [`PaperExchange::on_event`] or
/// [`PaperExchange::spawn_feed`].
///
/// ```
/// use std::sync::Arc;
/// use gf_core::{BookSnapshot, ClientOrderId, Event, Level, ManualClock, Clock, OrderRequest,
///     Pair, Payload, Side, Source};
/// use gf_exec::{events::Publisher, Exchange, PaperConfig, PaperExchange};
/// use rust_decimal::Decimal;
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let clock = Arc::new(ManualClock::default());
/// let paper = PaperExchange::new(PaperConfig::default(), Publisher::new(None, clock.clone(), Source::Paper));
/// let pair: Pair = "XRP/USD".parse().unwrap();
/// paper.on_event(&Event::new(clock.now(), Source::Replay, Payload::BookSnapshot(BookSnapshot {
///     pair: pair.clone(),
///     bids: vec![Level::new(Decimal::new(49, 2), Decimal::from(100))],
///     asks: vec![Level::new(Decimal::new(50, 2), Decimal::from(100)),
///                Level::new(Decimal::new(51, 2), Decimal::from(100))],
///     checksum: 0,
/// })));
/// let ack = paper.place_order(&OrderRequest::market(
///     ClientOrderId::new("b1"),
///     pair,
///     Side::Buy,
///     Decimal::from(150),
/// )).await.unwrap();
/// let info = paper.order_status(&gf_exec::OrderRef::Exchange(ack.order_id)).await.unwrap();
/// // 100 @ 0.50 + 50 @ 0.51 = 75.5 over 150.
/// assert_eq!(info.avg_price, Some("0.5033333333333333333333333333".parse().unwrap()));
/// # });
/// ```
#[derive(Debug)]
pub struct PaperExchange {
    cfg: PaperConfig,
    state: Mutex<State>,
    events: Publisher,
}

impl PaperExchange {
    /// A paper exchange with the configured balances and no books.
    #[must_use]
    pub fn new(cfg: PaperConfig, events: Publisher) -> Self {
        let state = State {
            balances: cfg.balances.clone(),
            ..State::default()
        };
        Self {
            cfg,
            state: Mutex::new(state),
            events,
        }
    }

    /// The best bid and ask of the paper book of `pair`, once both sides have a level.
    #[must_use]
    pub fn best_bid_ask(&self, pair: &Pair) -> Option<(Price, Price)> {
        let st = self.state.lock();
        let book = st.books.get(pair)?;
        Some((*book.bids.keys().next_back()?, *book.asks.keys().next()?))
    }

    /// Subscribes to the bus's book events and applies them until the bus closes.
    /// A lagging subscription keeps the books it has (the next snapshot repairs them).
    pub fn spawn_feed(self: &Arc<Self>, bus: &EventBus) -> tokio::task::JoinHandle<()> {
        let mut sub = bus.subscribe(KindSet::of(&[
            EventKind::BookSnapshot,
            EventKind::BookUpdate,
            EventKind::BookInvalid,
        ]));
        let me = Arc::clone(self);
        tokio::spawn(async move {
            loop {
                match sub.recv().await {
                    Ok(ev) => me.on_event(&ev),
                    Err(RecvError::Lagged { missed }) => {
                        tracing::warn!(missed, "paper exchange lagged behind the book feed");
                    }
                    Err(RecvError::Closed) => break,
                }
            }
        })
    }

    /// Applies one market-data event: books are replaced, updated or dropped, then resting
    /// orders of that pair that the book now crosses are filled. Other events are ignored.
    pub fn on_event(&self, event: &Event) {
        let mut out = Vec::new();
        {
            let mut st = self.state.lock();
            self.expire_dead_man(&mut st, &mut out);
            let pair = match &event.payload {
                Payload::BookSnapshot(s) => {
                    let mut book = Book {
                        depth: s.bids.len().max(s.asks.len()),
                        ..Book::default()
                    };
                    Book::apply(&s.bids, &mut book.bids);
                    Book::apply(&s.asks, &mut book.asks);
                    st.books.insert(s.pair.clone(), book);
                    Some(s.pair.clone())
                }
                Payload::BookUpdate(u) => match st.books.get_mut(&u.pair) {
                    Some(book) => {
                        Book::apply(&u.bids, &mut book.bids);
                        Book::apply(&u.asks, &mut book.asks);
                        book.truncate();
                        Some(u.pair.clone())
                    }
                    None => None,
                },
                Payload::BookInvalid { pair, .. } => {
                    st.books.remove(pair);
                    None
                }
                _ => None,
            };
            if let Some(pair) = pair {
                self.match_resting(&mut st, &pair, &mut out);
            }
        }
        self.flush(out);
    }

    fn flush(&self, out: Vec<Payload>) {
        for p in out {
            self.events.publish(p);
        }
    }

    fn fee(&self, notional: Decimal, maker: bool) -> Decimal {
        let pct = if maker {
            self.cfg.maker_fee_pct
        } else {
            self.cfg.taker_fee_pct
        };
        notional
            .checked_mul(pct)
            .map_or(Decimal::MAX, |x| x / Decimal::ONE_HUNDRED)
    }

    fn expire_dead_man(&self, st: &mut State, out: &mut Vec<Payload>) {
        if let Some(deadline) = st.dead_man
            && self.events.clock().now() >= deadline
        {
            st.dead_man = None;
            Self::cancel_all_locked(st, out, "dead man's switch expired");
        }
    }

    fn cancel_all_locked(st: &mut State, out: &mut Vec<Payload>, reason: &str) -> u32 {
        let open: Vec<u64> = st.open.iter().copied().collect();
        for seq in &open {
            Self::cancel_locked(st, *seq, out, reason);
        }
        u32::try_from(open.len()).unwrap_or(u32::MAX)
    }

    fn cancel_locked(st: &mut State, seq: u64, out: &mut Vec<Payload>, reason: &str) {
        st.open.remove(&seq);
        let Some(order) = st.orders.get_mut(&seq) else {
            return;
        };
        order.info.status = OrderStatus::Cancelled;
        let release = std::mem::take(&mut order.reserved);
        let info = order.info.clone();
        let asset = match info.side {
            Side::Buy => info.pair.quote().to_owned(),
            Side::Sell => info.pair.base().to_owned(),
        };
        State::adjust(&mut st.reserved, &asset, -release);
        out.push(update_payload(&info, Some(reason.to_owned())));
    }

    /// Executes `qty` at `price` for order `seq`, moving balances and emitting a fill.
    fn execute(
        &self,
        st: &mut State,
        seq: u64,
        price: Price,
        qty: Qty,
        maker: bool,
        out: &mut Vec<Payload>,
    ) {
        let now = self.events.clock().now();
        let notional = price * qty;
        let fee = self.fee(notional, maker);
        st.next_trade += 1;
        let trade_id = format!("PAPER-T{:08}", st.next_trade);
        let Some(order) = st.orders.get_mut(&seq) else {
            return;
        };
        order.info.filled_qty += qty;
        order.notional += notional;
        order.info.avg_price = Some(order.notional / order.info.filled_qty);
        let info = order.info.clone();
        let purpose = order.purpose;
        if maker {
            // Release what the resting remainder had reserved for this quantity.
            let release = match info.side {
                Side::Buy => (notional + fee).min(order.reserved),
                Side::Sell => qty.min(order.reserved),
            };
            order.reserved -= release;
            let asset = match info.side {
                Side::Buy => info.pair.quote(),
                Side::Sell => info.pair.base(),
            };
            State::adjust(&mut st.reserved, asset, -release);
        }
        let (base, quote) = (info.pair.base(), info.pair.quote());
        let holding = st.holdings.entry(info.pair.clone()).or_default();
        let position = st.balances.get(base).copied().unwrap_or_default();
        match info.side {
            Side::Buy => {
                let new_pos = position + qty;
                if new_pos > Decimal::ZERO {
                    holding.avg_entry =
                        (holding.avg_entry * position.max(Decimal::ZERO) + notional) / new_pos;
                }
                State::adjust(&mut st.balances, base, qty);
                State::adjust(&mut st.balances, quote, -(notional + fee));
            }
            Side::Sell => {
                holding.realised += (price - holding.avg_entry) * qty;
                State::adjust(&mut st.balances, base, -qty);
                State::adjust(&mut st.balances, quote, notional - fee);
            }
        }
        holding.fees += fee;
        out.push(Payload::Fill(Fill {
            trade_id,
            order_id: info.order_id.clone(),
            client_order_id: info.client_order_id.clone(),
            pair: info.pair.clone(),
            side: info.side,
            qty,
            price,
            fee,
            ts: now,
            purpose,
        }));
    }

    /// Takes up to `qty` from the side of `pair`'s book opposite to `side`, at prices no
    /// worse than `limit`; returns the (price, qty) slices taken, best first.
    fn take_liquidity(
        st: &mut State,
        pair: &Pair,
        side: Side,
        qty: Qty,
        limit: Option<Price>,
    ) -> Vec<(Price, Qty)> {
        let Some(book) = st.books.get_mut(pair) else {
            return Vec::new();
        };
        let mut taken = Vec::new();
        let mut remaining = qty;
        while remaining > Decimal::ZERO {
            let level = match side {
                Side::Buy => book.asks.iter().next().map(|(p, q)| (*p, *q)),
                Side::Sell => book.bids.iter().next_back().map(|(p, q)| (*p, *q)),
            };
            let Some((price, available)) = level else {
                break;
            };
            let acceptable = match (side, limit) {
                (_, None) => true,
                (Side::Buy, Some(l)) => price <= l,
                (Side::Sell, Some(l)) => price >= l,
            };
            if !acceptable {
                break;
            }
            let q = available.min(remaining);
            remaining -= q;
            let levels = match side {
                Side::Buy => &mut book.asks,
                Side::Sell => &mut book.bids,
            };
            if q == available {
                levels.remove(&price);
            } else {
                levels.insert(price, available - q);
            }
            taken.push((price, q));
        }
        taken
    }

    /// Quantity available on the opposite side at prices no worse than `limit`, and the
    /// cost of taking `qty` of it (without consuming anything).
    fn quote_liquidity(
        st: &State,
        pair: &Pair,
        side: Side,
        qty: Qty,
        limit: Option<Price>,
    ) -> (Qty, Decimal) {
        let Some(book) = st.books.get(pair) else {
            return (Decimal::ZERO, Decimal::ZERO);
        };
        let levels: Box<dyn Iterator<Item = (&Price, &Qty)>> = match side {
            Side::Buy => Box::new(book.asks.iter()),
            Side::Sell => Box::new(book.bids.iter().rev()),
        };
        let mut filled = Decimal::ZERO;
        let mut cost = Decimal::ZERO;
        for (price, available) in levels {
            let ok = match (side, limit) {
                (_, None) => true,
                (Side::Buy, Some(l)) => *price <= l,
                (Side::Sell, Some(l)) => *price >= l,
            };
            if !ok || filled >= qty {
                break;
            }
            let q = (*available).min(qty - filled);
            filled += q;
            // Absurd sizes overflow Decimal: report them as unaffordable, never panic.
            cost = q
                .checked_mul(*price)
                .and_then(|n| cost.checked_add(n))
                .unwrap_or(Decimal::MAX);
        }
        (filled, cost)
    }

    fn match_resting(&self, st: &mut State, pair: &Pair, out: &mut Vec<Payload>) {
        let resting: Vec<u64> = st
            .open_orders()
            .filter(|(_, o)| &o.info.pair == pair)
            .map(|(seq, _)| seq)
            .collect();
        for seq in resting {
            let Some(order) = st.orders.get(&seq) else {
                continue;
            };
            let remaining = order.info.qty - order.info.filled_qty;
            let (side, limit) = (order.info.side, order.info.limit_price);
            let Some(limit) = limit else { continue };
            let taken = Self::take_liquidity(st, pair, side, remaining, Some(limit));
            if taken.is_empty() {
                continue;
            }
            for (_, q) in taken {
                self.execute(st, seq, limit, q, true, out);
            }
            if let Some(order) = st.orders.get_mut(&seq) {
                order.info.status = if order.info.filled_qty >= order.info.qty {
                    OrderStatus::Filled
                } else {
                    OrderStatus::PartiallyFilled
                };
                let info = order.info.clone();
                if info.status.is_terminal() {
                    st.open.remove(&seq);
                }
                out.push(update_payload(&info, None));
            }
        }
    }

    fn reject(order: &OrderRequest, kind: ApiErrorKind, reason: String) -> Error {
        Error::Rejected {
            client_order_id: order.client_order_id.0.clone(),
            reason,
            kind,
        }
    }

    fn place_locked(
        &self,
        st: &mut State,
        order: &OrderRequest,
        out: &mut Vec<Payload>,
    ) -> Result<OrderAck, Error> {
        if let Some(seq) = st.by_client.get(&order.client_order_id) {
            // Idempotent by client order id, as a retried live placement would be.
            let info = &st.orders[seq].info;
            return Ok(OrderAck {
                order_id: info.order_id.clone(),
                client_order_id: order.client_order_id.clone(),
                status: info.status,
            });
        }
        let (base, quote) = (order.pair.base(), order.pair.quote());
        if order.reduce_only {
            // As on Kraken: reduce-only only reduces an open margin position and is
            // rejected without one; a paper account is a spot account, where a balance is
            // not a position
            // (https://support.kraken.com/hc/en-us/articles/7987518770708-Other-order-options).
            return Err(Self::reject(
                order,
                ApiErrorKind::InvalidArguments,
                format!(
                    "EOrder:Reduce only:Non-PC: no margin position in {} to reduce (a spot \
                     account holds balances)",
                    order.pair
                ),
            ));
        }
        let limit = order.limit_price;
        let (takeable, cost) = Self::quote_liquidity(st, &order.pair, order.side, order.qty, limit);
        if order.order_type == OrderType::Market && takeable.is_zero() {
            return Err(Error::NoMarket(order.pair.to_string()));
        }
        let rests = order.order_type == OrderType::Limit
            && order.time_in_force == TimeInForce::Gtc
            && takeable < order.qty;
        let rest_qty = if rests {
            order.qty - takeable
        } else {
            Decimal::ZERO
        };
        let insufficient = |have: Decimal, need: Decimal, asset: &str| {
            Self::reject(
                order,
                ApiErrorKind::InsufficientFunds,
                format!("EOrder:Insufficient funds: need {need} {asset}, have {have}"),
            )
        };
        let reserve = match order.side {
            Side::Buy => {
                let rest_cost = limit.map_or(Decimal::ZERO, |l| {
                    let n = l.checked_mul(rest_qty).unwrap_or(Decimal::MAX);
                    n.checked_add(self.fee(n, true)).unwrap_or(Decimal::MAX)
                });
                let need = cost
                    .checked_add(self.fee(cost, false))
                    .and_then(|x| x.checked_add(rest_cost))
                    .unwrap_or(Decimal::MAX);
                let have = st.available(quote);
                if need > have {
                    return Err(insufficient(have, need, quote));
                }
                rest_cost
            }
            Side::Sell => {
                let need = takeable.checked_add(rest_qty).unwrap_or(Decimal::MAX);
                let have = st.available(base);
                if need > have {
                    return Err(insufficient(have, need, base));
                }
                rest_qty
            }
        };

        st.next_order += 1;
        let seq = st.next_order;
        let order_id = OrderId::new(format!("PAPER-O{seq:08}"));
        let info = OrderInfo {
            order_id: order_id.clone(),
            client_order_id: Some(order.client_order_id.clone()),
            pair: order.pair.clone(),
            side: order.side,
            order_type: order.order_type,
            qty: order.qty,
            filled_qty: Decimal::ZERO,
            limit_price: limit,
            avg_price: None,
            status: OrderStatus::Open,
            reduce_only: order.reduce_only,
            opened_at: Some(self.events.clock().now()),
        };
        st.orders.insert(
            seq,
            PaperOrder {
                info: info.clone(),
                purpose: order.purpose,
                notional: Decimal::ZERO,
                reserved: Decimal::ZERO,
            },
        );
        st.by_id.insert(order_id.clone(), seq);
        st.by_client.insert(order.client_order_id.clone(), seq);
        if order.post_only && !takeable.is_zero() {
            // Kraken: a post-only limit order "will either get posted to the order book or
            // be cancelled" — it "prevents placing a limit buy order that instantly matches
            // against the sell side of the order book (and vice versa for sell orders)"
            // (support.kraken.com/hc/en-us/articles/203053246, "Post limit order"). The
            // order is accepted, takes nothing, never rests and is cancelled with
            // Kraken's reason.
            let entry = st
                .orders
                .get_mut(&seq)
                .ok_or_else(|| Error::UnknownOrder(order_id.to_string()))?;
            entry.info.status = OrderStatus::Cancelled;
            let info = entry.info.clone();
            out.push(update_payload(
                &info,
                Some(format!(
                    "{POST_ONLY_CANCEL_REASON}: would take liquidity on arrival \
                     ({takeable} of {} would match at once), cancelled without executing",
                    order.qty
                )),
            ));
            return Ok(OrderAck {
                order_id,
                client_order_id: order.client_order_id.clone(),
                status: OrderStatus::Cancelled,
            });
        }
        out.push(update_payload(&info, None));

        for (price, q) in Self::take_liquidity(st, &order.pair, order.side, order.qty, limit) {
            self.execute(st, seq, price, q, false, out);
        }
        let reserve_asset = match order.side {
            Side::Buy => quote,
            Side::Sell => base,
        };
        let entry = st
            .orders
            .get_mut(&seq)
            .ok_or_else(|| Error::UnknownOrder(order_id.to_string()))?;
        let filled = entry.info.filled_qty;
        let (status, reason) = if filled >= order.qty {
            (OrderStatus::Filled, None)
        } else if rests {
            entry.reserved = reserve;
            State::adjust(&mut st.reserved, reserve_asset, reserve);
            let status = if filled.is_zero() {
                OrderStatus::Open
            } else {
                OrderStatus::PartiallyFilled
            };
            (status, None)
        } else {
            (
                OrderStatus::Cancelled,
                Some(format!(
                    "not enough liquidity: {filled} of {} filled, remainder cancelled",
                    order.qty
                )),
            )
        };
        let entry = st
            .orders
            .get_mut(&seq)
            .ok_or_else(|| Error::UnknownOrder(order_id.to_string()))?;
        entry.info.status = status;
        if status != OrderStatus::Open {
            let info = entry.info.clone();
            out.push(update_payload(&info, reason));
        }
        if !status.is_terminal() {
            st.open.insert(seq);
        }
        Ok(OrderAck {
            order_id,
            client_order_id: order.client_order_id.clone(),
            status,
        })
    }

    fn find(st: &State, order: &OrderRef) -> Option<u64> {
        match order {
            OrderRef::Exchange(id) => st.by_id.get(id).copied(),
            OrderRef::Client(id) => st.by_client.get(id).copied(),
        }
    }
}

fn update_payload(info: &OrderInfo, reason: Option<String>) -> Payload {
    Payload::OrderUpdate {
        client_order_id: info
            .client_order_id
            .clone()
            .unwrap_or_else(|| ClientOrderId::new(info.order_id.as_str())),
        order_id: Some(info.order_id.clone()),
        pair: info.pair.clone(),
        status: info.status,
        filled_qty: info.filled_qty,
        reason,
    }
}

#[async_trait]
impl Exchange for PaperExchange {
    async fn place_order(&self, order: &OrderRequest) -> Result<OrderAck, Error> {
        order.validate()?;
        let started = std::time::Instant::now();
        let mut out = Vec::new();
        let result = {
            let mut st = self.state.lock();
            self.expire_dead_man(&mut st, &mut out);
            self.place_locked(&mut st, order, &mut out)
        };
        self.flush(out);
        if result.is_ok() {
            // As the Kraken client: placement to acknowledgement (here the simulated
            // book's answer, fills included).
            self.events.latency(
                gf_core::latency::stage::ORDER_ACK,
                gf_core::latency::micros(started.elapsed()),
            );
        }
        if let Err(err) = &result {
            self.events.order_update(
                &order.client_order_id,
                None,
                &order.pair,
                OrderStatus::Rejected,
                Decimal::ZERO,
                Some(err.to_string()),
            );
        }
        result
    }

    async fn cancel_order(&self, order: &OrderRef) -> Result<(), Error> {
        let mut out = Vec::new();
        let result = {
            let mut st = self.state.lock();
            self.expire_dead_man(&mut st, &mut out);
            match Self::find(&st, order) {
                Some(seq) if !st.orders[&seq].info.status.is_terminal() => {
                    Self::cancel_locked(&mut st, seq, &mut out, "cancelled by request");
                    Ok(())
                }
                _ => Err(Error::UnknownOrder(order_ref_text(order))),
            }
        };
        self.flush(out);
        result
    }

    async fn cancel_all(&self) -> Result<u32, Error> {
        let mut out = Vec::new();
        let n = {
            let mut st = self.state.lock();
            self.expire_dead_man(&mut st, &mut out);
            Self::cancel_all_locked(&mut st, &mut out, "cancel all")
        };
        self.flush(out);
        Ok(n)
    }

    async fn cancel_all_after(&self, timeout_secs: u32) -> Result<DeadManStatus, Error> {
        let mut out = Vec::new();
        let trigger_at = {
            let mut st = self.state.lock();
            self.expire_dead_man(&mut st, &mut out);
            st.dead_man = (timeout_secs > 0).then(|| {
                self.events.clock().now() + chrono::Duration::seconds(i64::from(timeout_secs))
            });
            st.dead_man
        };
        self.flush(out);
        Ok(DeadManStatus { trigger_at })
    }

    async fn open_orders(&self) -> Result<Vec<OrderInfo>, Error> {
        let mut out = Vec::new();
        let orders = {
            let mut st = self.state.lock();
            self.expire_dead_man(&mut st, &mut out);
            st.open_orders().map(|(_, o)| o.info.clone()).collect()
        };
        self.flush(out);
        Ok(orders)
    }

    async fn order_status(&self, order: &OrderRef) -> Result<OrderInfo, Error> {
        let st = self.state.lock();
        Self::find(&st, order)
            .map(|seq| st.orders[&seq].info.clone())
            .ok_or_else(|| Error::UnknownOrder(order_ref_text(order)))
    }

    async fn balances(&self) -> Result<BTreeMap<String, Decimal>, Error> {
        Ok(self.state.lock().balances.clone())
    }

    async fn open_positions(&self) -> Result<Vec<Position>, Error> {
        let st = self.state.lock();
        let mut pairs: Vec<&Pair> = st.books.keys().chain(st.holdings.keys()).collect();
        pairs.sort();
        pairs.dedup();
        let mut positions = Vec::new();
        for pair in pairs {
            let qty = st.balances.get(pair.base()).copied().unwrap_or_default();
            let holding = st.holdings.get(pair).cloned().unwrap_or_default();
            if qty.is_zero() && holding.realised.is_zero() {
                continue;
            }
            let mark = st.books.get(pair).and_then(Book::mid);
            let avg_entry = if qty.is_zero() {
                Decimal::ZERO
            } else {
                holding.avg_entry
            };
            positions.push(Position {
                pair: pair.clone(),
                qty,
                avg_entry,
                mark,
                realised_pnl: holding.realised,
                unrealised_pnl: mark
                    .and_then(|m| m.checked_sub(avg_entry)?.checked_mul(qty))
                    .unwrap_or_default(),
                fees: holding.fees,
            });
        }
        Ok(positions)
    }

    async fn check(&self) -> Result<(), Error> {
        Ok(())
    }
}

fn order_ref_text(order: &OrderRef) -> String {
    match order {
        OrderRef::Exchange(id) => id.to_string(),
        OrderRef::Client(id) => format!("client:{id}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gf_core::{BookSnapshot, BookUpdate, Clock, Level, ManualClock, Source};
    use rust_decimal_macros::dec;

    fn pair() -> Pair {
        Pair::new("XRP/USD").unwrap()
    }

    fn setup(balances: &[(&str, Decimal)]) -> (PaperExchange, ManualClock, EventBus) {
        let clock = ManualClock::default();
        let bus = EventBus::new(4096);
        let cfg = PaperConfig {
            taker_fee_pct: dec!(0.40),
            maker_fee_pct: dec!(0.25),
            balances: balances
                .iter()
                .map(|(a, v)| ((*a).to_owned(), *v))
                .collect(),
        };
        let paper = PaperExchange::new(
            cfg,
            Publisher::new(Some(bus.clone()), Arc::new(clock.clone()), Source::Paper),
        );
        (paper, clock, bus)
    }

    fn snapshot(
        clock: &ManualClock,
        bids: &[(Decimal, Decimal)],
        asks: &[(Decimal, Decimal)],
    ) -> Event {
        Event::new(
            clock.now(),
            Source::Replay,
            Payload::BookSnapshot(BookSnapshot {
                pair: pair(),
                bids: bids.iter().map(|(p, q)| Level::new(*p, *q)).collect(),
                asks: asks.iter().map(|(p, q)| Level::new(*p, *q)).collect(),
                checksum: 0,
            }),
        )
    }

    fn update(
        clock: &ManualClock,
        bids: &[(Decimal, Decimal)],
        asks: &[(Decimal, Decimal)],
    ) -> Event {
        Event::new(
            clock.now(),
            Source::Replay,
            Payload::BookUpdate(BookUpdate {
                pair: pair(),
                bids: bids.iter().map(|(p, q)| Level::new(*p, *q)).collect(),
                asks: asks.iter().map(|(p, q)| Level::new(*p, *q)).collect(),
                checksum: 0,
                best_bid: None,
                best_ask: None,
            }),
        )
    }

    #[test]
    fn a_level_pushed_out_of_the_subscribed_depth_is_dropped_not_filled() {
        // Kraken sends no delete for a level a better price pushes out of the depth: the
        // book is truncated to the snapshot's depth after each update.
        let (paper, clock, _bus) = setup(&[("XRP", dec!(100)), ("USD", dec!(1000))]);
        paper.on_event(&snapshot(
            &clock,
            &[(dec!(2.00), dec!(10)), (dec!(1.99), dec!(10))],
            &[(dec!(2.01), dec!(10)), (dec!(2.02), dec!(10))],
        ));
        // The market falls: two new, lower bids and asks arrive; the old top levels are
        // deleted, and the ones left beyond depth 2 scroll out without a delete.
        paper.on_event(&update(
            &clock,
            &[
                (dec!(2.00), dec!(0)),
                (dec!(1.90), dec!(10)),
                (dec!(1.89), dec!(10)),
            ],
            &[(dec!(1.91), dec!(10)), (dec!(1.92), dec!(10))],
        ));
        let (bid, ask) = paper.best_bid_ask(&pair()).unwrap();
        assert_eq!((bid, ask), (dec!(1.99), dec!(1.91)));
        let st = paper.state.lock();
        let book = &st.books[&pair()];
        assert_eq!(book.bids.len(), 2);
        assert_eq!(book.asks.len(), 2);
        assert!(!book.asks.contains_key(&dec!(2.02)), "{:?}", book.asks);
        assert!(!book.bids.contains_key(&dec!(1.89)), "{:?}", book.bids);
    }

    fn order(id: &str, side: Side, qty: Decimal, limit: Option<Decimal>) -> OrderRequest {
        let id = ClientOrderId::new(id);
        match limit {
            Some(price) => OrderRequest::limit(id, pair(), side, qty, price),
            None => OrderRequest::market(id, pair(), side, qty),
        }
    }

    fn fills(sub: &mut gf_core::Subscription) -> Vec<Fill> {
        let mut out = Vec::new();
        while let Ok(ev) = sub.try_recv() {
            if let Payload::Fill(f) = &ev.payload {
                out.push(f.clone());
            }
        }
        out
    }

    #[tokio::test]
    async fn market_buy_walks_the_book_with_average_price_and_taker_fees() {
        let (paper, clock, bus) = setup(&[("USD", dec!(1000))]);
        let mut sub = bus.subscribe(KindSet::of(&[EventKind::Fill, EventKind::OrderUpdate]));
        paper.on_event(&snapshot(
            &clock,
            &[(dec!(0.49), dec!(100))],
            &[
                (dec!(0.50), dec!(100)),
                (dec!(0.51), dec!(200)),
                (dec!(0.53), dec!(500)),
            ],
        ));
        let ack = paper
            .place_order(&order("m1", Side::Buy, dec!(250), None))
            .await
            .unwrap();
        assert_eq!(ack.status, OrderStatus::Filled);
        let fills = fills(&mut sub);
        assert_eq!(fills.len(), 2);
        assert_eq!((fills[0].price, fills[0].qty), (dec!(0.50), dec!(100)));
        assert_eq!((fills[1].price, fills[1].qty), (dec!(0.51), dec!(150)));
        // 50 + 76.5 = 126.5 notional; fees 0.4% = 0.2 + 0.306.
        assert_eq!(fills[0].fee, dec!(0.2));
        assert_eq!(fills[1].fee, dec!(0.306));
        let info = paper
            .order_status(&OrderRef::Exchange(ack.order_id))
            .await
            .unwrap();
        assert_eq!(info.avg_price, Some(dec!(126.5) / dec!(250)));
        assert_eq!(info.avg_price, Some(dec!(0.506)));
        let balances = paper.balances().await.unwrap();
        assert_eq!(balances["XRP"], dec!(250));
        assert_eq!(balances["USD"], dec!(1000) - dec!(126.5) - dec!(0.506));
        // The liquidity taken is gone from the paper book: the next buy starts at 0.51.
        paper
            .place_order(&order("m2", Side::Buy, dec!(10), None))
            .await
            .unwrap();
        let next = super::tests::fills(&mut sub);
        assert_eq!(next[0].price, dec!(0.51));
    }

    #[tokio::test]
    async fn an_accepted_order_reports_its_ack_latency_and_a_refused_one_none() {
        let (paper, clock, bus) = setup(&[("USD", dec!(1000))]);
        let mut sub = bus.subscribe(KindSet::of(&[EventKind::Latency]));
        paper.on_event(&snapshot(
            &clock,
            &[(dec!(0.49), dec!(100))],
            &[(dec!(0.50), dec!(100))],
        ));
        paper
            .place_order(&order("a1", Side::Buy, dec!(10), None))
            .await
            .unwrap();
        // A limit buy the balance cannot pay for: refused, not acknowledged.
        let err = paper
            .place_order(&order("a2", Side::Buy, dec!(100_000), Some(dec!(0.45))))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ApiErrorKind::InsufficientFunds, "{err}");
        let mut stages = Vec::new();
        while let Ok(ev) = sub.try_recv() {
            if let Payload::Latency { stage, .. } = &ev.payload {
                stages.push(stage.clone());
            }
        }
        assert_eq!(stages, ["order_ack"]);
    }

    #[tokio::test]
    async fn market_sell_walks_bids_and_cancels_what_the_book_cannot_fill() {
        let (paper, clock, _bus) = setup(&[("XRP", dec!(500)), ("USD", dec!(0))]);
        paper.on_event(&snapshot(
            &clock,
            &[(dec!(0.49), dec!(100)), (dec!(0.48), dec!(100))],
            &[(dec!(0.50), dec!(100))],
        ));
        let ack = paper
            .place_order(&order("s1", Side::Sell, dec!(300), None))
            .await
            .unwrap();
        assert_eq!(ack.status, OrderStatus::Cancelled);
        let info = paper
            .order_status(&OrderRef::Client(ClientOrderId::new("s1")))
            .await
            .unwrap();
        assert_eq!(info.filled_qty, dec!(200));
        assert_eq!(info.avg_price, Some(dec!(0.485)));
        let b = paper.balances().await.unwrap();
        assert_eq!(b["XRP"], dec!(300));
        assert_eq!(b["USD"], dec!(97) - dec!(97) * dec!(0.004));
    }

    #[tokio::test]
    async fn limit_order_rests_then_fills_at_its_price_with_maker_fee_when_crossed() {
        let (paper, clock, bus) = setup(&[("USD", dec!(100))]);
        let mut sub = bus.subscribe(KindSet::of(&[EventKind::Fill]));
        paper.on_event(&snapshot(
            &clock,
            &[(dec!(0.49), dec!(100))],
            &[(dec!(0.50), dec!(1000))],
        ));
        let ack = paper
            .place_order(&order("l1", Side::Buy, dec!(100), Some(dec!(0.45))))
            .await
            .unwrap();
        assert_eq!(ack.status, OrderStatus::Open);
        assert_eq!(paper.open_orders().await.unwrap().len(), 1);
        // Reserved: 45 + 0.25% = 45.1125, so a 60 USD market buy no longer fits.
        let err = paper
            .place_order(&order("m1", Side::Buy, dec!(110), None))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ApiErrorKind::InsufficientFunds, "{err}");
        // The ask falls to 0.44 for 60: the resting buy fills 60 at its limit 0.45.
        paper.on_event(&update(
            &clock,
            &[],
            &[(dec!(0.50), dec!(0)), (dec!(0.44), dec!(60))],
        ));
        let f = fills(&mut sub);
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].price, f[0].qty), (dec!(0.45), dec!(60)));
        assert_eq!(f[0].fee, dec!(27) * dec!(0.0025));
        let info = paper
            .order_status(&OrderRef::Exchange(ack.order_id.clone()))
            .await
            .unwrap();
        assert_eq!(info.status, OrderStatus::PartiallyFilled);
        paper.on_event(&update(&clock, &[], &[(dec!(0.45), dec!(1000))]));
        let info = paper
            .order_status(&OrderRef::Exchange(ack.order_id))
            .await
            .unwrap();
        assert_eq!(info.status, OrderStatus::Filled);
        let b = paper.balances().await.unwrap();
        assert_eq!(b["XRP"], dec!(100));
        assert_eq!(b["USD"], dec!(100) - dec!(45) - dec!(45) * dec!(0.0025));
        assert!(paper.open_orders().await.unwrap().is_empty());
    }

    /// The `OrderUpdate`s published for `id`, as (status, reason).
    fn updates(sub: &mut gf_core::Subscription, id: &str) -> Vec<(OrderStatus, Option<String>)> {
        let mut out = Vec::new();
        while let Ok(ev) = sub.try_recv() {
            if let Payload::OrderUpdate {
                client_order_id,
                status,
                reason,
                ..
            } = &ev.payload
                && client_order_id.as_str() == id
            {
                out.push((*status, reason.clone()));
            }
        }
        out
    }

    #[tokio::test]
    async fn post_only_orders_that_would_take_are_cancelled_unexecuted() {
        let (paper, clock, bus) = setup(&[("XRP", dec!(100)), ("USD", dec!(100))]);
        let mut sub = bus.subscribe(KindSet::of(&[EventKind::Fill, EventKind::OrderUpdate]));
        let (bids, asks) = ([(dec!(0.49), dec!(100))], [(dec!(0.50), dec!(100))]);
        paper.on_event(&snapshot(&clock, &bids, &asks));
        // A buy at or above the best ask, a sell at or below the best bid, would take.
        for (id, side, price) in [
            ("pb-at", Side::Buy, dec!(0.50)),
            ("pb-through", Side::Buy, dec!(0.60)),
            ("ps-at", Side::Sell, dec!(0.49)),
            ("ps-through", Side::Sell, dec!(0.40)),
        ] {
            let ack = paper
                .place_order(&order(id, side, dec!(10), Some(price)).post_only())
                .await
                .unwrap();
            assert_eq!(ack.status, OrderStatus::Cancelled, "{id}");
            let info = paper
                .order_status(&OrderRef::Client(ClientOrderId::new(id)))
                .await
                .unwrap();
            assert_eq!(
                (info.status, info.filled_qty),
                (OrderStatus::Cancelled, Decimal::ZERO),
                "{id}"
            );
            let seen = updates(&mut sub, id);
            assert_eq!(seen.len(), 1, "{id}: {seen:?}");
            assert_eq!(seen[0].0, OrderStatus::Cancelled, "{id}");
            let reason = seen[0].1.clone().unwrap();
            assert!(
                reason.starts_with(POST_ONLY_CANCEL_REASON),
                "{id}: {reason}"
            );
            assert!(reason.contains("would take liquidity"), "{id}: {reason}");
        }
        assert!(fills(&mut sub).is_empty(), "nothing executed");
        assert!(paper.open_orders().await.unwrap().is_empty());
        let b = paper.balances().await.unwrap();
        assert_eq!((b["XRP"], b["USD"]), (dec!(100), dec!(100)));
        // The book is untouched: a plain crossing limit still takes the whole best ask.
        let plain = paper
            .place_order(&order("plain", Side::Buy, dec!(100), Some(dec!(0.50))))
            .await
            .unwrap();
        assert_eq!(plain.status, OrderStatus::Filled);
        // The client order id stays taken, as on Kraken: a retry answers the first result.
        let again = paper
            .place_order(&order("pb-at", Side::Buy, dec!(10), Some(dec!(0.50))).post_only())
            .await
            .unwrap();
        assert_eq!(again.status, OrderStatus::Cancelled);
    }

    #[tokio::test]
    async fn post_only_orders_that_do_not_cross_rest_and_fill_as_makers() {
        let (paper, clock, bus) = setup(&[("XRP", dec!(100)), ("USD", dec!(100))]);
        let mut sub = bus.subscribe(KindSet::of(&[EventKind::Fill, EventKind::OrderUpdate]));
        paper.on_event(&snapshot(
            &clock,
            &[(dec!(0.49), dec!(100))],
            &[(dec!(0.50), dec!(100))],
        ));
        let buy = paper
            .place_order(&order("pb", Side::Buy, dec!(40), Some(dec!(0.495))).post_only())
            .await
            .unwrap();
        let sell = paper
            .place_order(&order("ps", Side::Sell, dec!(30), Some(dec!(0.505))).post_only())
            .await
            .unwrap();
        assert_eq!(
            (buy.status, sell.status),
            (OrderStatus::Open, OrderStatus::Open)
        );
        assert_eq!(paper.open_orders().await.unwrap().len(), 2);
        assert_eq!(updates(&mut sub, "pb"), [(OrderStatus::Open, None)]);
        // The market comes to both: each fills at its own price, with the maker fee.
        paper.on_event(&update(
            &clock,
            &[(dec!(0.51), dec!(100))],
            &[(dec!(0.50), dec!(0)), (dec!(0.48), dec!(100))],
        ));
        let f = fills(&mut sub);
        assert_eq!(f.len(), 2, "{f:?}");
        let by_price: BTreeMap<Decimal, &Fill> = f.iter().map(|x| (x.price, x)).collect();
        let (b, s) = (by_price[&dec!(0.495)], by_price[&dec!(0.505)]);
        assert_eq!((b.side, b.qty), (Side::Buy, dec!(40)));
        assert_eq!((s.side, s.qty), (Side::Sell, dec!(30)));
        assert_eq!(b.fee, dec!(40) * dec!(0.495) * dec!(0.0025));
        assert_eq!(s.fee, dec!(30) * dec!(0.505) * dec!(0.0025));
        assert!(paper.open_orders().await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn crossing_limit_takes_then_rests_and_ioc_cancels_remainder() {
        let (paper, clock, _bus) = setup(&[("USD", dec!(1000))]);
        paper.on_event(&snapshot(
            &clock,
            &[(dec!(0.49), dec!(100))],
            &[(dec!(0.50), dec!(50)), (dec!(0.52), dec!(50))],
        ));
        let ack = paper
            .place_order(&order("l1", Side::Buy, dec!(80), Some(dec!(0.51))))
            .await
            .unwrap();
        assert_eq!(ack.status, OrderStatus::PartiallyFilled);
        let mut ioc = order("l2", Side::Buy, dec!(80), Some(dec!(0.52)));
        ioc.time_in_force = TimeInForce::Ioc;
        let ack = paper.place_order(&ioc).await.unwrap();
        assert_eq!(ack.status, OrderStatus::Cancelled);
        let info = paper
            .order_status(&OrderRef::Exchange(ack.order_id))
            .await
            .unwrap();
        assert_eq!(info.filled_qty, dec!(50));
    }

    #[tokio::test]
    async fn reduce_only_is_rejected_on_a_spot_account() {
        let (paper, clock, _bus) = setup(&[("USD", dec!(1000)), ("XRP", dec!(100))]);
        paper.on_event(&snapshot(
            &clock,
            &[(dec!(0.49), dec!(1000))],
            &[(dec!(0.50), dec!(1000))],
        ));
        // Even a sell of less than the balance: a balance is not a margin position.
        for (id, side, qty) in [("r1", Side::Buy, dec!(10)), ("r2", Side::Sell, dec!(50))] {
            let mut o = order(id, side, qty, None);
            o.reduce_only = true;
            let err = paper.place_order(&o).await.unwrap_err();
            assert!(matches!(err, Error::Rejected { .. }), "{err}");
            assert!(err.to_string().contains("Reduce only"), "{err}");
        }
        assert_eq!(paper.balances().await.unwrap()["XRP"], dec!(100));
        // Flattening sells the balance without the flag.
        let mut flatten = order("r3", Side::Sell, dec!(100), None);
        flatten.purpose = OrderPurpose::HaltClosure;
        assert_eq!(
            paper.place_order(&flatten).await.unwrap().status,
            OrderStatus::Filled
        );
        assert_eq!(paper.balances().await.unwrap()["XRP"], dec!(0));
        assert!(
            paper
                .open_positions()
                .await
                .unwrap()
                .iter()
                .all(|p| p.qty.is_zero())
        );
    }

    #[tokio::test]
    async fn cancel_cancel_all_and_idempotent_client_ids() {
        let (paper, clock, _bus) = setup(&[("USD", dec!(1000)), ("XRP", dec!(100))]);
        paper.on_event(&snapshot(
            &clock,
            &[(dec!(0.49), dec!(1000))],
            &[(dec!(0.50), dec!(1000))],
        ));
        let a = paper
            .place_order(&order("a", Side::Buy, dec!(10), Some(dec!(0.40))))
            .await
            .unwrap();
        let again = paper
            .place_order(&order("a", Side::Buy, dec!(10), Some(dec!(0.40))))
            .await
            .unwrap();
        assert_eq!(a.order_id, again.order_id, "same client id, same order");
        paper
            .place_order(&order("b", Side::Sell, dec!(10), Some(dec!(0.60))))
            .await
            .unwrap();
        paper
            .place_order(&order("c", Side::Sell, dec!(10), Some(dec!(0.61))))
            .await
            .unwrap();
        paper
            .cancel_order(&OrderRef::Client(ClientOrderId::new("a")))
            .await
            .unwrap();
        let err = paper
            .cancel_order(&OrderRef::Client(ClientOrderId::new("a")))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::UnknownOrder(_)));
        assert_eq!(paper.cancel_all().await.unwrap(), 2);
        assert!(paper.open_orders().await.unwrap().is_empty());
        let st = paper.state.lock();
        assert!(
            st.reserved.values().all(Decimal::is_zero),
            "{:?}",
            st.reserved
        );
    }

    #[tokio::test]
    async fn dead_mans_switch_cancels_after_deadline() {
        let (paper, clock, _bus) = setup(&[("USD", dec!(1000))]);
        paper.on_event(&snapshot(
            &clock,
            &[(dec!(0.49), dec!(1000))],
            &[(dec!(0.50), dec!(1000))],
        ));
        paper
            .place_order(&order("a", Side::Buy, dec!(10), Some(dec!(0.40))))
            .await
            .unwrap();
        let status = paper.cancel_all_after(60).await.unwrap();
        assert_eq!(
            status.trigger_at,
            Some(clock.now() + chrono::Duration::seconds(60))
        );
        clock.advance(chrono::Duration::seconds(59));
        assert_eq!(paper.open_orders().await.unwrap().len(), 1);
        clock.advance(chrono::Duration::seconds(1));
        assert!(paper.open_orders().await.unwrap().is_empty());
        assert_eq!(paper.cancel_all_after(0).await.unwrap().trigger_at, None);
    }

    #[tokio::test]
    async fn no_book_means_no_market_and_invalid_book_is_dropped() {
        let (paper, clock, _bus) = setup(&[("USD", dec!(1000))]);
        let err = paper
            .place_order(&order("a", Side::Buy, dec!(1), None))
            .await
            .unwrap_err();
        assert!(matches!(err, Error::NoMarket(_)));
        paper.on_event(&snapshot(
            &clock,
            &[(dec!(0.49), dec!(1))],
            &[(dec!(0.50), dec!(1))],
        ));
        paper.on_event(&Event::new(
            clock.now(),
            Source::Market,
            Payload::BookInvalid {
                pair: pair(),
                reason: "checksum".into(),
            },
        ));
        assert!(
            paper
                .place_order(&order("b", Side::Buy, dec!(1), None))
                .await
                .is_err()
        );
        // An update for an unknown book is ignored rather than creating a partial book.
        paper.on_event(&update(&clock, &[], &[(dec!(0.50), dec!(5))]));
        assert!(
            paper
                .place_order(&order("c", Side::Buy, dec!(1), None))
                .await
                .is_err()
        );
        paper.check().await.unwrap();
    }

    #[tokio::test]
    async fn absurd_sizes_are_rejected_not_panicking() {
        let (paper, clock, _bus) = setup(&[("USD", dec!(1000)), ("XRP", dec!(10))]);
        paper.on_event(&snapshot(
            &clock,
            &[(dec!(0.49), Decimal::MAX)],
            &[(Decimal::MAX, Decimal::MAX)],
        ));
        let err = paper
            .place_order(&order("huge", Side::Buy, Decimal::MAX, None))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ApiErrorKind::InsufficientFunds, "{err}");
        let err = paper
            .place_order(&order(
                "huge-limit",
                Side::Buy,
                Decimal::MAX,
                Some(Decimal::MAX),
            ))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ApiErrorKind::InsufficientFunds, "{err}");
        let err = paper
            .place_order(&order("huge-sell", Side::Sell, Decimal::MAX, Some(dec!(1))))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ApiErrorKind::InsufficientFunds, "{err}");
        let positions = paper.open_positions().await.unwrap();
        assert_eq!(positions[0].qty, dec!(10), "extreme books never panic");
    }

    #[tokio::test]
    async fn positions_track_entry_realised_pnl_and_fees() {
        let (paper, clock, _bus) = setup(&[("USD", dec!(1000))]);
        paper.on_event(&snapshot(
            &clock,
            &[(dec!(0.60), dec!(1000))],
            &[(dec!(0.50), dec!(1000))],
        ));
        paper
            .place_order(&order("b", Side::Buy, dec!(100), None))
            .await
            .unwrap();
        paper
            .place_order(&order("s", Side::Sell, dec!(40), None))
            .await
            .unwrap();
        let pos = paper.open_positions().await.unwrap();
        assert_eq!(pos.len(), 1);
        assert_eq!(pos[0].qty, dec!(60));
        assert_eq!(pos[0].avg_entry, dec!(0.50));
        assert_eq!(pos[0].realised_pnl, dec!(4));
        assert_eq!(pos[0].fees, dec!(0.2) + dec!(0.096));
        assert_eq!(pos[0].mark, Some(dec!(0.55)));
    }

    #[tokio::test]
    async fn feed_task_applies_bus_books() {
        let (paper, clock, bus) = setup(&[("USD", dec!(1000))]);
        let paper = Arc::new(paper);
        let task = paper.spawn_feed(&bus);
        bus.publish(snapshot(
            &clock,
            &[(dec!(0.49), dec!(10))],
            &[(dec!(0.50), dec!(10))],
        ));
        for _ in 0..100 {
            if paper.state.lock().books.contains_key(&pair()) {
                break;
            }
            tokio::task::yield_now().await;
        }
        assert!(
            paper
                .place_order(&order("a", Side::Buy, dec!(1), None))
                .await
                .is_ok()
        );
        task.abort();
        assert!(task.await.unwrap_err().is_cancelled());
    }
}

#[cfg(test)]
mod property_tests {
    use super::*;
    use gf_core::{BookSnapshot, BookUpdate, Clock, Level, ManualClock, Source};
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Snapshot(Vec<(u32, u32)>, Vec<(u32, u32)>),
        Update(Vec<(u32, u32)>, Vec<(u32, u32)>),
        Market(bool, u32),
        Limit(bool, u32, u32, bool),
        Cancel(usize),
        CancelAll,
    }

    fn op() -> impl Strategy<Value = Op> {
        let levels = || proptest::collection::vec((40u32..60, 0u32..50), 0..6);
        prop_oneof![
            (levels(), levels()).prop_map(|(b, a)| Op::Snapshot(b, a)),
            (levels(), levels()).prop_map(|(b, a)| Op::Update(b, a)),
            (any::<bool>(), 1u32..80).prop_map(|(buy, q)| Op::Market(buy, q)),
            (any::<bool>(), 1u32..80, 40u32..60, any::<bool>())
                .prop_map(|(buy, q, p, ioc)| Op::Limit(buy, q, p, ioc)),
            (0usize..20).prop_map(Op::Cancel),
            Just(Op::CancelAll),
        ]
    }

    fn lv(raw: &[(u32, u32)]) -> Vec<Level> {
        raw.iter()
            .map(|(p, q)| Level::new(Decimal::new(i64::from(*p), 2), Decimal::from(*q)))
            .collect()
    }

    proptest! {
        #[test]
        fn prop_random_sessions_keep_balances_and_reservations_sound(
            ops in proptest::collection::vec(op(), 1..60),
        ) {
            let clock = ManualClock::default();
            let paper = PaperExchange::new(
                PaperConfig {
                    balances: BTreeMap::from([
                        ("USD".to_owned(), Decimal::from(40)),
                        ("XRP".to_owned(), Decimal::from(60)),
                    ]),
                    ..PaperConfig::default()
                },
                Publisher::new(None, Arc::new(clock.clone()), Source::Paper),
            );
            let pair = Pair::new("XRP/USD").unwrap();
            let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
            let mut placed = Vec::new();
            for (i, op) in ops.into_iter().enumerate() {
                let order = |buy: bool, q: u32, limit: Option<u32>, ioc: bool| {
                    let id = ClientOrderId::new(format!("o{i}"));
                    let side = if buy { Side::Buy } else { Side::Sell };
                    let tif = if ioc { TimeInForce::Ioc } else { TimeInForce::Gtc };
                    match limit {
                        Some(p) => {
                            let price = Decimal::new(i64::from(p), 2);
                            OrderRequest::limit(id, pair.clone(), side, Decimal::from(q), price)
                                .with_time_in_force(tif)
                        }
                        None => OrderRequest::market(id, pair.clone(), side, Decimal::from(q)),
                    }
                };
                match op {
                    Op::Snapshot(b, a) => paper.on_event(&Event::new(clock.now(), Source::Replay,
                        Payload::BookSnapshot(BookSnapshot { pair: pair.clone(), bids: lv(&b), asks: lv(&a), checksum: 0 }))),
                    Op::Update(b, a) => paper.on_event(&Event::new(clock.now(), Source::Replay,
                        Payload::BookUpdate(BookUpdate { pair: pair.clone(), bids: lv(&b).into(), asks: lv(&a).into(),
                            checksum: 0, best_bid: None, best_ask: None }))),
                    Op::Market(buy, q) => {
                        if let Ok(ack) = rt.block_on(paper.place_order(&order(buy, q, None, false))) {
                            placed.push(ack.order_id);
                        }
                    }
                    Op::Limit(buy, q, p, ioc) => {
                        if let Ok(ack) = rt.block_on(paper.place_order(&order(buy, q, Some(p), ioc))) {
                            placed.push(ack.order_id);
                        }
                    }
                    Op::Cancel(k) => {
                        if let Some(id) = placed.get(k) {
                            let _ = rt.block_on(paper.cancel_order(&OrderRef::Exchange(id.clone())));
                        }
                    }
                    Op::CancelAll => {
                        rt.block_on(paper.cancel_all()).unwrap();
                    }
                }
                let st = paper.state.lock();
                for asset in ["USD", "XRP"] {
                    let balance = st.balances.get(asset).copied().unwrap_or_default();
                    let reserved = st.reserved.get(asset).copied().unwrap_or_default();
                    prop_assert!(balance >= Decimal::ZERO, "{} balance {}", asset, balance);
                    prop_assert!(reserved >= Decimal::ZERO, "{} reserved {}", asset, reserved);
                    prop_assert!(reserved <= balance, "{} reserved {} > {}", asset, reserved, balance);
                }
                for o in st.orders.values() {
                    prop_assert!(o.info.filled_qty <= o.info.qty);
                    prop_assert_eq!(st.open.contains(&st.by_id[&o.info.order_id]), !o.info.status.is_terminal());
                }
            }
        }

        #[test]
        fn prop_market_buy_conserves_value_and_is_deterministic(
            asks in proptest::collection::vec((1u32..1000, 1u32..500), 1..30),
            qty in 1u32..3000,
        ) {
            let run = || {
                let clock = ManualClock::default();
                let paper = PaperExchange::new(
                    PaperConfig { balances: BTreeMap::from([("USD".to_owned(), Decimal::from(10_000_000))]), ..PaperConfig::default() },
                    Publisher::new(None, Arc::new(clock.clone()), Source::Paper),
                );
                let pair = Pair::new("XRP/USD").unwrap();
                paper.on_event(&Event::new(clock.now(), Source::Replay, Payload::BookSnapshot(BookSnapshot {
                    pair: pair.clone(),
                    bids: vec![],
                    asks: asks.iter().map(|(p, q)| Level::new(Decimal::new(i64::from(*p), 3), Decimal::from(*q))).collect(),
                    checksum: 0,
                })));
                let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
                let res = rt.block_on(paper.place_order(&OrderRequest::market(
                    ClientOrderId::new("p"),
                    pair,
                    Side::Buy,
                    Decimal::from(qty),
                )));
                let balances = rt.block_on(paper.balances()).unwrap();
                (res.map(|a| a.status).map_err(|e| e.to_string()), balances)
            };
            let (first, b1) = run();
            let (second, b2) = run();
            prop_assert_eq!(&first, &second);
            prop_assert_eq!(&b1, &b2);
            let bought = b1.get("XRP").copied().unwrap_or_default();
            // A snapshot level repeated at the same price replaces the earlier one.
            let levels: BTreeMap<u32, u32> = asks.iter().copied().collect();
            let total: Decimal = levels.values().map(|q| Decimal::from(*q)).sum();
            prop_assert_eq!(bought, Decimal::from(qty).min(total));
            prop_assert!(b1["USD"] <= Decimal::from(10_000_000));
            prop_assert!(b1["USD"] >= Decimal::ZERO);
        }
    }
}
