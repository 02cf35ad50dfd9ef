//! Domain types shared by every crate: pairs, sides, orders, fills and positions.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::error::Error;
use crate::gate::ClosureSeal;

/// A price in quote currency. Always exact: never `f64`.
pub type Price = Decimal;
/// A quantity in base currency. Always exact: never `f64`.
pub type Qty = Decimal;

/// Maximum length of one side of a pair (`"1INCH"`, `"USDT"`, …).
const MAX_ASSET_LEN: usize = 16;

/// A spot pair in Kraken's WebSocket v2 form, `BASE/QUOTE` (e.g. `XRP/USD`).
///
/// Each asset is 1–16 characters of ASCII upper-case letters or digits and contains at
/// least one letter. Lower case, spaces, a missing or doubled `/` are rejected.
///
/// ```
/// use gf_core::Pair;
/// let pair: Pair = "XRP/USD".parse().unwrap();
/// assert_eq!(pair.base(), "XRP");
/// assert_eq!(pair.quote(), "USD");
/// assert!("xrp/usd".parse::<Pair>().is_err());
/// ```
///
/// Cloning a pair copies no text (the symbol is shared), so events that carry one cost
/// no allocation.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Pair {
    symbol: std::sync::Arc<str>,
    slash: usize,
}

impl Pair {
    /// Parses and validates a pair.
    ///
    /// # Errors
    /// [`Error::InvalidPair`] naming the text and what is wrong with it.
    pub fn new(text: &str) -> Result<Self, Error> {
        let invalid = |why: &str| Error::InvalidPair {
            text: text.to_owned(),
            reason: why.to_owned(),
        };
        let mut parts = text.split('/');
        let (Some(base), Some(quote), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(invalid("expected exactly one '/' as in \"XRP/USD\""));
        };
        for (name, asset) in [("base", base), ("quote", quote)] {
            if asset.is_empty() || asset.len() > MAX_ASSET_LEN {
                return Err(invalid(&format!(
                    "{name} asset must be 1 to {MAX_ASSET_LEN} characters"
                )));
            }
            if !asset
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
            {
                return Err(invalid(&format!(
                    "{name} asset must be upper-case letters and digits"
                )));
            }
            if !asset.bytes().any(|b| b.is_ascii_uppercase()) {
                return Err(invalid(&format!("{name} asset must contain a letter")));
            }
        }
        if base == quote {
            return Err(invalid("base and quote must differ"));
        }
        Ok(Self {
            symbol: std::sync::Arc::from(text),
            slash: base.len(),
        })
    }

    /// The base asset (`XRP` in `XRP/USD`).
    #[must_use]
    pub fn base(&self) -> &str {
        &self.symbol[..self.slash]
    }

    /// The quote asset (`USD` in `XRP/USD`).
    #[must_use]
    pub fn quote(&self) -> &str {
        &self.symbol[self.slash + 1..]
    }

    /// The full symbol, `BASE/QUOTE`.
    #[must_use]
    pub fn as_str(&self) -> &str {
        &self.symbol
    }
}

impl FromStr for Pair {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl fmt::Display for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.symbol)
    }
}

impl fmt::Debug for Pair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pair({})", self.symbol)
    }
}

impl Serialize for Pair {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.symbol)
    }
}

impl<'de> Deserialize<'de> for Pair {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Pair::new(&text).map_err(serde::de::Error::custom)
    }
}

/// Buy or sell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    /// Buy the base asset.
    Buy,
    /// Sell the base asset.
    Sell,
}

impl Side {
    /// The other side.
    #[must_use]
    pub fn opposite(self) -> Self {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// `+1` for buy, `-1` for sell: multiplies a quantity into a signed position change.
    #[must_use]
    pub fn sign(self) -> Decimal {
        match self {
            Side::Buy => Decimal::ONE,
            Side::Sell => Decimal::NEGATIVE_ONE,
        }
    }
}

impl fmt::Display for Side {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        })
    }
}

/// The order types Gal-Friday submits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderType {
    /// Execute immediately against the book.
    Market,
    /// Rest at a limit price until filled or cancelled.
    Limit,
}

/// How long a limit order rests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum TimeInForce {
    /// Good till cancelled.
    #[default]
    Gtc,
    /// Immediate or cancel.
    Ioc,
}

macro_rules! string_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub String);

        impl $name {
            /// Wraps an identifier.
            pub fn new(id: impl Into<String>) -> Self {
                Self(id.into())
            }
            /// The identifier text.
            #[must_use]
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

string_id!(
    /// The exchange's identifier of an order (Kraken's `txid`, e.g. `OQCLML-BW3P3-BUCMWZ`).
    OrderId
);
string_id!(
    /// Our identifier of an order, chosen before submission; it makes retries idempotent
    /// (Kraken's `cl_ord_id`).
    ClientOrderId
);

/// Longest free-text client order id Kraken accepts.
pub const KRAKEN_FREE_TEXT_MAX: usize = 18;

/// A client order id Kraken would refuse (see [`ClientOrderId::check_kraken`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("client order id {id:?} is not one Kraken accepts: {reason}")]
pub struct ClientOrderIdError {
    /// The id refused.
    pub id: String,
    /// Why.
    pub reason: String,
}

impl ClientOrderId {
    /// 128 bits as 32 lowercase hex digits: the simple (dash-less) form of a UUID, which
    /// Kraken accepts as `cl_ord_id`.
    #[must_use]
    pub fn from_u128(bits: u128) -> Self {
        Self(format!("{bits:032x}"))
    }

    /// An id Kraken accepts, or the reason it would not.
    ///
    /// # Errors
    /// [`ClientOrderIdError`] naming the id, per [`ClientOrderId::check_kraken`].
    pub fn kraken(id: impl Into<String>) -> Result<Self, ClientOrderIdError> {
        let id = Self(id.into());
        id.check_kraken()?;
        Ok(id)
    }

    /// Checks the id against Kraken's `cl_ord_id` format
    /// (<https://docs.kraken.com/exchange/guides/general/clordid>; `AddOrder`): a UUID —
    /// 36 characters with dashes (8-4-4-4-12 hex digits) or 32 hex digits — or free text
    /// of at most [`KRAKEN_FREE_TEXT_MAX`] printable ASCII characters.
    ///
    /// # Errors
    /// [`ClientOrderIdError`] naming the id and what is wrong with it.
    pub fn check_kraken(&self) -> Result<(), ClientOrderIdError> {
        let text = self.0.as_str();
        let hex = |s: &str| s.bytes().all(|b| b.is_ascii_hexdigit());
        let uuid_dashed = text.len() == 36
            && text.split('-').map(str::len).eq([8, 4, 4, 4, 12])
            && hex(&text.replace('-', ""));
        let uuid_simple = text.len() == 32 && hex(text);
        let free_text = !text.is_empty()
            && text.len() <= KRAKEN_FREE_TEXT_MAX
            && text.bytes().all(|b| b.is_ascii_graphic());
        if uuid_dashed || uuid_simple || free_text {
            return Ok(());
        }
        let reason = if text.is_empty() {
            "empty".to_owned()
        } else if !text.bytes().all(|b| b.is_ascii_graphic()) {
            "not a UUID, and free text must be printable ASCII".to_owned()
        } else {
            format!(
                "{} characters: not a UUID (36 with dashes, or 32 hex digits), and free text \
                 is at most {KRAKEN_FREE_TEXT_MAX}",
                text.len()
            )
        };
        Err(ClientOrderIdError {
            id: text.to_owned(),
            reason,
        })
    }
}

/// What the order is for (for reporting and lanes). Saying [`OrderPurpose::HaltClosure`]
/// grants nothing: only an order carrying a [`ClosureSeal`] minted by the gate's opener
/// passes a closed gate, and a closure without one is refused (see [`crate::gate`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OrderPurpose {
    /// An ordinary order from a strategy or an operator.
    #[default]
    Normal,
    /// A reduce-only order placed by the halt coordinator to flatten a position.
    HaltClosure,
}

/// A request to place an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRequest {
    /// Our id; the exchange echoes it back.
    pub client_order_id: ClientOrderId,
    /// The pair traded.
    pub pair: Pair,
    /// Buy or sell.
    pub side: Side,
    /// Market or limit.
    pub order_type: OrderType,
    /// Quantity in base currency; strictly positive.
    pub qty: Qty,
    /// Limit price; required for limit orders, absent for market orders.
    pub limit_price: Option<Price>,
    /// Time in force for limit orders.
    #[serde(default)]
    pub time_in_force: TimeInForce,
    /// Only reduce an existing position, never open or grow one.
    #[serde(default)]
    pub reduce_only: bool,
    /// Post-only (maker only): a limit order that would take liquidity on arrival is
    /// cancelled by the exchange instead of executed; one that does not cross rests on the
    /// book. Kraken: `oflags=post` on REST `AddOrder`, `post_only: true` on WebSocket v2
    /// `add_order`; only for limit orders. It is also the only kind of new order Kraken
    /// accepts in its `post_only` trading mode. See [`OrderRequest::validate`].
    #[serde(default)]
    pub post_only: bool,
    /// Kraken's numeric `userref`, for grouping orders.
    #[serde(default)]
    pub user_ref: Option<i32>,
    /// Normal or halt-closure.
    #[serde(default)]
    pub purpose: OrderPurpose,
    /// The closure seal, for halt-closure orders minted by gf-halt
    /// ([`crate::GateOpener::seal_closure`]); `None` for every other order. Never
    /// serialised nor deserialised: a request read from JSON never carries one.
    #[serde(skip)]
    pub closure_seal: Option<ClosureSeal>,
}

impl OrderRequest {
    /// A market order: immediate or cancel, not reduce-only, not post-only, no `userref`, an ordinary
    /// ([`OrderPurpose::Normal`]) order without a closure seal.
    ///
    /// Halt closures are not built here: gf-halt mints and seals them itself.
    ///
    /// ```
    /// use gf_core::{ClientOrderId, OrderPurpose, OrderRequest, OrderType, Pair, Side, TimeInForce};
    /// use rust_decimal::Decimal;
    ///
    /// let pair: Pair = "XRP/USD".parse().unwrap();
    /// let order = OrderRequest::market(ClientOrderId::new("c1"), pair, Side::Buy, Decimal::TEN);
    /// assert_eq!(order.order_type, OrderType::Market);
    /// assert_eq!(order.time_in_force, TimeInForce::Ioc);
    /// assert_eq!(order.limit_price, None);
    /// assert_eq!(order.purpose, OrderPurpose::Normal);
    /// assert!(!order.reduce_only && !order.post_only && !order.is_sealed());
    /// order.validate().unwrap();
    /// ```
    #[must_use]
    pub fn market(client_order_id: ClientOrderId, pair: Pair, side: Side, qty: Qty) -> Self {
        Self {
            client_order_id,
            pair,
            side,
            order_type: OrderType::Market,
            qty,
            limit_price: None,
            time_in_force: TimeInForce::Ioc,
            reduce_only: false,
            post_only: false,
            user_ref: None,
            purpose: OrderPurpose::Normal,
            closure_seal: None,
        }
    }

    /// A limit order at `price`: good till cancelled (the default [`TimeInForce`]), not
    /// reduce-only, not post-only, no `userref`, an ordinary ([`OrderPurpose::Normal`]) order without a
    /// closure seal.
    ///
    /// ```
    /// use gf_core::{ClientOrderId, OrderRequest, OrderType, Pair, Side, TimeInForce};
    /// use rust_decimal::Decimal;
    ///
    /// let pair: Pair = "XRP/USD".parse().unwrap();
    /// let price = Decimal::new(5, 1);
    /// let order = OrderRequest::limit(ClientOrderId::new("c1"), pair, Side::Sell, Decimal::ONE, price);
    /// assert_eq!(order.order_type, OrderType::Limit);
    /// assert_eq!(order.limit_price, Some(price));
    /// assert_eq!(order.time_in_force, TimeInForce::Gtc);
    /// order.validate().unwrap();
    /// ```
    #[must_use]
    pub fn limit(
        client_order_id: ClientOrderId,
        pair: Pair,
        side: Side,
        qty: Qty,
        price: Price,
    ) -> Self {
        Self {
            client_order_id,
            pair,
            side,
            order_type: OrderType::Limit,
            qty,
            limit_price: Some(price),
            time_in_force: TimeInForce::default(),
            reduce_only: false,
            post_only: false,
            user_ref: None,
            purpose: OrderPurpose::Normal,
            closure_seal: None,
        }
    }

    /// The same order with time in force `tif` (it matters for limit orders only).
    ///
    /// ```
    /// use gf_core::{ClientOrderId, OrderRequest, Pair, Side, TimeInForce};
    /// use rust_decimal::Decimal;
    ///
    /// let pair: Pair = "XRP/USD".parse().unwrap();
    /// let order = OrderRequest::limit(ClientOrderId::new("c1"), pair, Side::Buy, Decimal::ONE, Decimal::ONE)
    ///     .with_time_in_force(TimeInForce::Ioc);
    /// assert_eq!(order.time_in_force, TimeInForce::Ioc);
    /// ```
    #[must_use]
    pub fn with_time_in_force(mut self, tif: TimeInForce) -> Self {
        self.time_in_force = tif;
        self
    }

    /// The same order tagged with Kraken's numeric `userref`.
    ///
    /// ```
    /// use gf_core::{ClientOrderId, OrderRequest, Pair, Side};
    /// use rust_decimal::Decimal;
    ///
    /// let pair: Pair = "XRP/USD".parse().unwrap();
    /// let order = OrderRequest::market(ClientOrderId::new("c1"), pair, Side::Buy, Decimal::ONE)
    ///     .with_user_ref(42);
    /// assert_eq!(order.user_ref, Some(42));
    /// ```
    #[must_use]
    pub fn with_user_ref(mut self, user_ref: i32) -> Self {
        self.user_ref = Some(user_ref);
        self
    }

    /// The same order, reduce-only: it may shrink a position, never open or grow one.
    /// It stays an ordinary order; only gf-halt mints halt closures.
    ///
    /// ```
    /// use gf_core::{ClientOrderId, OrderRequest, Pair, Side};
    /// use rust_decimal::Decimal;
    ///
    /// let pair: Pair = "XRP/USD".parse().unwrap();
    /// let order = OrderRequest::market(ClientOrderId::new("c1"), pair, Side::Sell, Decimal::ONE)
    ///     .reduce_only();
    /// assert!(order.reduce_only);
    /// assert!(!order.is_closure() && !order.is_sealed());
    /// ```
    #[must_use]
    pub fn reduce_only(mut self) -> Self {
        self.reduce_only = true;
        self
    }

    /// The same order, post-only: it may only rest on the book as a maker. If it would take
    /// liquidity on arrival the exchange cancels it instead. Only a good-till-cancelled limit
    /// order may be post-only ([`OrderRequest::validate`] refuses the rest).
    ///
    /// ```
    /// use gf_core::{ClientOrderId, OrderRequest, Pair, Side, TimeInForce};
    /// use rust_decimal::Decimal;
    ///
    /// let pair: Pair = "XRP/USD".parse().unwrap();
    /// let order = OrderRequest::limit(ClientOrderId::new("c1"), pair, Side::Buy, Decimal::ONE, Decimal::ONE)
    ///     .post_only();
    /// assert!(order.post_only);
    /// order.validate().unwrap();
    /// assert!(order.with_time_in_force(TimeInForce::Ioc).validate().is_err());
    /// ```
    #[must_use]
    pub fn post_only(mut self) -> Self {
        self.post_only = true;
        self
    }

    /// Checks the request is self-consistent (positive quantity, a positive limit price
    /// exactly when the type is limit, post-only only on a good-till-cancelled limit order).
    ///
    /// # Errors
    /// [`Error::InvalidOrder`] naming the field.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |field: &str, why: String| Error::InvalidOrder {
            client_order_id: self.client_order_id.0.clone(),
            field: field.to_owned(),
            reason: why,
        };
        if self.qty <= Decimal::ZERO {
            return Err(bad("qty", format!("must be positive, got {}", self.qty)));
        }
        match (self.order_type, self.limit_price) {
            (OrderType::Limit, None) => {
                return Err(bad("limit_price", "a limit order needs a price".into()));
            }
            (OrderType::Limit, Some(p)) if p <= Decimal::ZERO => {
                return Err(bad("limit_price", format!("must be positive, got {p}")));
            }
            (OrderType::Market, Some(p)) => {
                return Err(bad(
                    "limit_price",
                    format!("a market order takes no price, got {p}"),
                ));
            }
            _ => {}
        }
        // Kraken documents the `post` flag as "post-only order (available when ordertype =
        // limit)" (REST AddOrder `oflags`), and a post limit order "will either get posted to
        // the order book or be cancelled" (support.kraken.com 203053246, "Post limit order").
        // So post-only on a market order is refused, and so is post-only with IOC: an IOC
        // order never rests, so a post-only IOC order could never execute.
        if self.post_only {
            if self.order_type == OrderType::Market {
                return Err(bad(
                    "post_only",
                    "only a limit order can be post-only, not a market order".into(),
                ));
            }
            if self.time_in_force == TimeInForce::Ioc {
                return Err(bad(
                    "post_only",
                    "a post-only order must be able to rest on the book: not with time in \
                     force ioc"
                        .into(),
                ));
            }
        }
        if self.client_order_id.0.is_empty() {
            return Err(bad("client_order_id", "must not be empty".into()));
        }
        Ok(())
    }

    /// `true` for an order labelled as a halt closure (a label: only a valid
    /// [`OrderRequest::closure_seal`] makes it pass the gate).
    #[must_use]
    pub fn is_closure(&self) -> bool {
        self.purpose == OrderPurpose::HaltClosure
    }

    /// `true` when the order carries a closure seal (valid or not: the gate verifies it).
    #[must_use]
    pub fn is_sealed(&self) -> bool {
        self.closure_seal.is_some()
    }
}

/// The lifecycle of an order at the exchange.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderStatus {
    /// Sent, not yet acknowledged.
    Pending,
    /// Acknowledged and resting (or about to execute).
    Open,
    /// Some quantity filled, the rest still open.
    PartiallyFilled,
    /// Completely filled.
    Filled,
    /// Cancelled (by us, the exchange or the dead man's switch).
    Cancelled,
    /// Refused by our gate, our risk checks or the exchange.
    Rejected,
    /// Expired by time in force.
    Expired,
}

impl OrderStatus {
    /// `true` once the order can no longer change.
    #[must_use]
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            OrderStatus::Filled
                | OrderStatus::Cancelled
                | OrderStatus::Rejected
                | OrderStatus::Expired
        )
    }
}

/// One execution of (part of) an order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fill {
    /// The exchange's trade id.
    pub trade_id: String,
    /// The order that filled.
    pub order_id: OrderId,
    /// Our id of that order.
    pub client_order_id: Option<ClientOrderId>,
    /// The pair.
    pub pair: Pair,
    /// The side of our order.
    pub side: Side,
    /// Quantity executed, positive.
    pub qty: Qty,
    /// Execution price.
    pub price: Price,
    /// Fee charged, in quote currency.
    pub fee: Decimal,
    /// When the exchange executed it.
    pub ts: DateTime<Utc>,
    /// Whether the order was a halt-closure order.
    #[serde(default)]
    pub purpose: OrderPurpose,
}

impl Fill {
    /// Price × quantity.
    #[must_use]
    pub fn notional(&self) -> Decimal {
        self.price * self.qty
    }
}

/// An open position in one pair. `qty` is signed: positive long, negative short.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// The pair.
    pub pair: Pair,
    /// Signed quantity: > 0 long, < 0 short, 0 flat.
    pub qty: Qty,
    /// Volume-weighted average entry price of the open quantity.
    pub avg_entry: Price,
    /// Latest mark price, if any.
    pub mark: Option<Price>,
    /// Realised P&L in quote currency, before fees.
    pub realised_pnl: Decimal,
    /// Unrealised P&L at `mark`.
    pub unrealised_pnl: Decimal,
    /// Fees paid in quote currency.
    pub fees: Decimal,
}

impl Position {
    /// A flat position.
    #[must_use]
    pub fn flat(pair: Pair) -> Self {
        Self {
            pair,
            qty: Decimal::ZERO,
            avg_entry: Decimal::ZERO,
            mark: None,
            realised_pnl: Decimal::ZERO,
            unrealised_pnl: Decimal::ZERO,
            fees: Decimal::ZERO,
        }
    }

    /// The side of the open quantity, `None` when flat.
    #[must_use]
    pub fn side(&self) -> Option<Side> {
        if self.qty > Decimal::ZERO {
            Some(Side::Buy)
        } else if self.qty < Decimal::ZERO {
            Some(Side::Sell)
        } else {
            None
        }
    }

    /// Absolute quantity × mark (or entry when unmarked).
    #[must_use]
    pub fn exposure(&self) -> Decimal {
        self.qty.abs() * self.mark.unwrap_or(self.avg_entry)
    }
}

/// One price level of an order book.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Level {
    /// Price.
    pub price: Price,
    /// Quantity resting at that price; zero in an update means "remove".
    pub qty: Qty,
}

impl Level {
    /// A level.
    #[must_use]
    pub fn new(price: Price, qty: Qty) -> Self {
        Self { price, qty }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_order_ids_kraken_accepts_and_refuses() {
        for ok in [
            "d15708c1-dbb6-465d-b77d-47258319cc90",
            "D15708C1DBB6465DB77D47258319CC90",
            "strat-1",
            "gfh-123456789-12-3",
        ] {
            ClientOrderId::new(ok).check_kraken().unwrap();
        }
        for bad in [
            "",
            "ema_cross-1796153720687-1",
            "d15708c1-dbb6-465d-b77d-47258319cc9g",
            "d15708c1dbb6-465d-b77d-47258319cc90a",
            "with space",
            "tab\t",
            "caf\u{e9}",
        ] {
            let err = ClientOrderId::kraken(bad).unwrap_err();
            assert_eq!(err.id, bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
        let id = ClientOrderId::from_u128(0xab);
        assert_eq!(id.as_str().len(), 32);
        assert!(id.as_str().starts_with("0000") && id.as_str().ends_with("ab"));
        id.check_kraken().unwrap();
        ClientOrderId::from_u128(u128::MAX).check_kraken().unwrap();
    }

    #[test]
    fn pair_accepts_kraken_forms() {
        for ok in ["XRP/USD", "DOGE/USD", "1INCH/EUR", "USDT/USD", "XBT/USDC"] {
            let pair = Pair::new(ok).unwrap();
            assert_eq!(pair.as_str(), ok);
            assert_eq!(format!("{}/{}", pair.base(), pair.quote()), ok);
        }
    }

    #[test]
    fn pair_rejects_bad_forms_with_reason() {
        struct Case {
            input: &'static str,
            reason: &'static str,
        }
        let cases = [
            Case {
                input: "XRPUSD",
                reason: "exactly one '/'",
            },
            Case {
                input: "XRP/USD/EUR",
                reason: "exactly one '/'",
            },
            Case {
                input: "xrp/usd",
                reason: "upper-case",
            },
            Case {
                input: "/USD",
                reason: "1 to 16",
            },
            Case {
                input: "XRP/",
                reason: "1 to 16",
            },
            Case {
                input: "XRP-USD",
                reason: "exactly one '/'",
            },
            Case {
                input: "XRP/ USD",
                reason: "upper-case",
            },
            Case {
                input: "123/USD",
                reason: "contain a letter",
            },
            Case {
                input: "USD/USD",
                reason: "differ",
            },
        ];
        for case in cases {
            let err = Pair::new(case.input).unwrap_err().to_string();
            assert!(err.contains(case.reason), "{}: {err}", case.input);
            assert!(err.contains(case.input), "{}: {err}", case.input);
        }
    }

    #[test]
    fn order_validation_names_the_field() {
        let mut order = limit_order();
        order.limit_price = None;
        assert!(
            order
                .validate()
                .unwrap_err()
                .to_string()
                .contains("limit_price")
        );
        order.limit_price = Some(Decimal::new(5, 1));
        order.validate().unwrap();
        order.qty = Decimal::ZERO;
        assert!(order.validate().unwrap_err().to_string().contains("qty"));
    }

    fn limit_order() -> OrderRequest {
        OrderRequest::limit(
            ClientOrderId::new("c1"),
            Pair::new("XRP/USD").unwrap(),
            Side::Buy,
            Decimal::ONE,
            Decimal::new(5, 1),
        )
    }

    /// The field and reason an invalid order is refused with.
    fn refusal(order: &OrderRequest) -> (String, String) {
        match order.validate() {
            Err(Error::InvalidOrder {
                client_order_id,
                field,
                reason,
            }) => {
                assert_eq!(client_order_id, order.client_order_id.0);
                (field, reason)
            }
            other => panic!("expected an invalid-order refusal, got {other:?}"),
        }
    }

    #[test]
    fn order_validation_refuses_each_inconsistency_by_field() {
        limit_order().validate().unwrap();
        for price in [Decimal::ZERO, Decimal::NEGATIVE_ONE] {
            let mut o = limit_order();
            o.limit_price = Some(price);
            assert_eq!(
                refusal(&o),
                (
                    "limit_price".to_owned(),
                    format!("must be positive, got {price}")
                )
            );
        }
        let mut market = limit_order();
        market.order_type = OrderType::Market;
        let (field, reason) = refusal(&market);
        assert_eq!(field, "limit_price");
        assert!(reason.contains("a market order takes no price"), "{reason}");
        market.limit_price = None;
        market.validate().unwrap();
        let mut nameless = limit_order();
        nameless.client_order_id = ClientOrderId::new("");
        assert_eq!(
            refusal(&nameless),
            ("client_order_id".to_owned(), "must not be empty".to_owned())
        );
        // The quantity is checked first: a negative one is named even with other faults.
        nameless.qty = Decimal::NEGATIVE_ONE;
        assert_eq!(refusal(&nameless).0, "qty");
    }

    #[test]
    fn post_only_is_for_resting_limit_orders_only() {
        let maker = limit_order().post_only();
        assert!(maker.post_only && !limit_order().post_only);
        maker.validate().unwrap();

        let ioc = limit_order()
            .with_time_in_force(TimeInForce::Ioc)
            .post_only();
        let (field, reason) = refusal(&ioc);
        assert_eq!(field, "post_only");
        assert!(reason.contains("ioc"), "{reason}");
        limit_order()
            .with_time_in_force(TimeInForce::Ioc)
            .validate()
            .unwrap();

        let market = OrderRequest::market(
            ClientOrderId::new("m1"),
            Pair::new("XRP/USD").unwrap(),
            Side::Buy,
            Decimal::ONE,
        );
        assert!(!market.post_only);
        let (field, reason) = refusal(&market.clone().post_only());
        assert_eq!(field, "post_only");
        assert!(reason.contains("market order"), "{reason}");
        // Built by hand as a GTC market order: still refused.
        let mut gtc_market = market.post_only();
        gtc_market.time_in_force = TimeInForce::Gtc;
        assert_eq!(refusal(&gtc_market).0, "post_only");
    }

    #[test]
    fn post_only_defaults_to_false_when_absent_and_round_trips() {
        let mut json = serde_json::to_value(limit_order()).unwrap();
        json.as_object_mut().unwrap().remove("post_only");
        let read: OrderRequest = serde_json::from_value(json).unwrap();
        assert!(!read.post_only);
        let maker = limit_order().post_only();
        let text = serde_json::to_string(&maker).unwrap();
        assert!(text.contains("\"post_only\":true"), "{text}");
        let back: OrderRequest = serde_json::from_str(&text).unwrap();
        assert_eq!(back, maker);
    }

    #[test]
    fn a_closure_label_is_not_a_seal() {
        let mut o = limit_order();
        assert!(!o.is_closure() && !o.is_sealed());
        o.purpose = OrderPurpose::HaltClosure;
        assert!(o.is_closure());
        assert!(!o.is_sealed(), "saying closure carries no seal");
    }

    #[test]
    fn terminal_statuses_signs_and_notional() {
        use OrderStatus::{Cancelled, Expired, Filled, Open, PartiallyFilled, Pending, Rejected};
        for (status, terminal) in [
            (Pending, false),
            (Open, false),
            (PartiallyFilled, false),
            (Filled, true),
            (Cancelled, true),
            (Rejected, true),
            (Expired, true),
        ] {
            assert_eq!(status.is_terminal(), terminal, "{status:?}");
        }
        let qty = Decimal::new(3, 0);
        assert_eq!(Side::Buy.sign() * qty, qty);
        assert_eq!(Side::Sell.sign() * qty, -qty);
        assert_eq!(Side::Buy.opposite(), Side::Sell);
        assert_eq!(Side::Sell.opposite(), Side::Buy);
        let fill = Fill {
            trade_id: "T1".into(),
            order_id: OrderId::new("O1"),
            client_order_id: None,
            pair: Pair::new("XRP/USD").unwrap(),
            side: Side::Sell,
            qty: Decimal::new(25, 1),
            price: Decimal::new(52, 2),
            fee: Decimal::ZERO,
            ts: DateTime::UNIX_EPOCH,
            purpose: OrderPurpose::Normal,
        };
        assert_eq!(fill.notional(), Decimal::new(13, 1));
    }

    #[test]
    fn pairs_parse_from_text_and_debug_as_their_symbol() {
        let pair: Pair = "XRP/USD".parse().unwrap();
        assert_eq!(pair, Pair::new("XRP/USD").unwrap());
        assert_eq!(format!("{pair:?}"), "Pair(XRP/USD)");
        assert!("xrp/usd".parse::<Pair>().is_err());
        let id = ClientOrderId::kraken("strat-1").unwrap();
        assert_eq!(id.as_str(), "strat-1");
        assert_eq!(id.to_string(), "strat-1");
    }

    #[test]
    fn position_side_and_exposure() {
        let mut p = Position::flat(Pair::new("XRP/USD").unwrap());
        assert_eq!(p.side(), None);
        p.qty = Decimal::new(-10, 0);
        p.avg_entry = Decimal::new(5, 1);
        assert_eq!(p.side(), Some(Side::Sell));
        assert_eq!(p.exposure(), Decimal::new(5, 0));
        p.mark = Some(Decimal::new(6, 1));
        assert_eq!(p.exposure(), Decimal::new(6, 0));
    }
}
