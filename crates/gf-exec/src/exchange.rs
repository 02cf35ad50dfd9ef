//! The `Exchange` trait: everything Gal-Friday asks of an exchange, implemented by the Kraken
//! REST client, the paper exchange and (in tests) a mockall mock.

use std::collections::BTreeMap;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use gf_core::{
    ClientOrderId, OrderId, OrderRequest, OrderStatus, OrderType, Pair, Position, Price, Qty, Side,
};

use crate::Error;

/// Names an order either by the exchange's id or by ours.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OrderRef {
    /// The exchange's id (Kraken `txid`).
    Exchange(OrderId),
    /// Our client order id (Kraken `cl_ord_id`).
    Client(ClientOrderId),
}

/// The exchange's acknowledgement of a placed order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderAck {
    /// The exchange's id.
    pub order_id: OrderId,
    /// Our id, echoed.
    pub client_order_id: ClientOrderId,
    /// Status right after placement (market orders may already be filled).
    pub status: OrderStatus,
}

/// What the exchange knows of one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderInfo {
    /// The exchange's id.
    pub order_id: OrderId,
    /// Our id, when the order carried one.
    pub client_order_id: Option<ClientOrderId>,
    /// The pair.
    pub pair: Pair,
    /// Side.
    pub side: Side,
    /// Market or limit.
    pub order_type: OrderType,
    /// Ordered quantity.
    pub qty: Qty,
    /// Filled quantity.
    pub filled_qty: Qty,
    /// Limit price, for limit orders.
    pub limit_price: Option<Price>,
    /// Average fill price, when anything filled.
    pub avg_price: Option<Price>,
    /// Status.
    pub status: OrderStatus,
    /// Reduce-only flag.
    pub reduce_only: bool,
    /// When the exchange opened it.
    pub opened_at: Option<DateTime<Utc>>,
}

/// What [`Exchange::reconcile_order`] learnt of one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reconciled {
    /// The exchange's record of the order.
    pub info: OrderInfo,
    /// Quantity this call published as new `Fill` events (executions the bus had not been
    /// told of before); 0 when every execution was already published.
    pub published: Qty,
}

/// What the exchange requires of an order's quantity in one pair (Kraken's `AssetPairs`
/// `lot_decimals` and `ordermin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LotRules {
    /// Quantity decimals: a volume with more is refused.
    pub lot_decimals: u32,
    /// Minimum order quantity, when the exchange has one.
    pub ordermin: Option<Qty>,
}

/// State of the exchange-side dead man's switch after an arm/refresh/disarm call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadManStatus {
    /// When the exchange will cancel everything; `None` when disarmed.
    pub trigger_at: Option<DateTime<Utc>>,
}

/// An exchange. Implementations must be cancellation-safe per call: dropping a future may
/// leave an order placed, which is why [`OrderRequest::client_order_id`] makes placement
/// idempotent and callers reconcile by it.
#[cfg_attr(any(test, feature = "mocks"), mockall::automock)]
#[async_trait]
pub trait Exchange: Send + Sync {
    /// Places an order (after the gate, which wrappers enforce).
    ///
    /// # Errors
    /// [`Error`]: refused by the gate, rejected by the exchange, or transport failure.
    async fn place_order(&self, order: &OrderRequest) -> Result<OrderAck, Error>;

    /// Cancels one order.
    ///
    /// # Errors
    /// [`Error`], e.g. unknown order.
    async fn cancel_order(&self, order: &OrderRef) -> Result<(), Error>;

    /// Cancels every open order; returns how many were cancelled.
    ///
    /// # Errors
    /// [`Error`].
    async fn cancel_all(&self) -> Result<u32, Error>;

    /// Arms or refreshes the dead man's switch (`CancelAllOrdersAfter`); `0` disarms.
    ///
    /// # Errors
    /// [`Error`].
    async fn cancel_all_after(&self, timeout_secs: u32) -> Result<DeadManStatus, Error>;

    /// Open orders.
    ///
    /// # Errors
    /// [`Error`].
    async fn open_orders(&self) -> Result<Vec<OrderInfo>, Error>;

    /// One order's state.
    ///
    /// # Errors
    /// [`Error`], e.g. unknown order.
    async fn order_status(&self, order: &OrderRef) -> Result<OrderInfo, Error>;

    /// What became of an order we may have sent (a request on the wire when a halt closed
    /// the gate, a placement that timed out): looks it up by our client order id and makes
    /// sure every execution of it has been published as a `Fill`, so that the portfolio
    /// learns of it. `None` when the exchange never saw the order.
    ///
    /// The default asks [`Exchange::order_status`] and publishes nothing: right for
    /// exchanges that publish each execution as it happens (the paper exchange).
    ///
    /// # Errors
    /// [`Error`] from the lookup.
    async fn reconcile_order(
        &self,
        client_order_id: &ClientOrderId,
    ) -> Result<Option<Reconciled>, Error> {
        match self
            .order_status(&OrderRef::Client(client_order_id.clone()))
            .await
        {
            Ok(info) => Ok(Some(Reconciled {
                info,
                published: Decimal::ZERO,
            })),
            Err(Error::UnknownOrder(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Balances per asset.
    ///
    /// # Errors
    /// [`Error`].
    async fn balances(&self) -> Result<BTreeMap<String, Decimal>, Error>;

    /// Open positions. On spot, the non-quote balances of the configured pairs.
    ///
    /// # Errors
    /// [`Error`].
    async fn open_positions(&self) -> Result<Vec<Position>, Error>;

    /// A cheap authenticated call proving credentials and connectivity work.
    ///
    /// # Errors
    /// [`Error`].
    async fn check(&self) -> Result<(), Error>;

    /// The quantity rules of `pair` as the exchange last described them; `None` when it
    /// has none (the paper exchange takes any quantity). The halt's closure rounds what it
    /// sells down to these and reports a remainder below the minimum as dust.
    fn lot_rules(&self, _pair: &Pair) -> Option<LotRules> {
        None
    }
}

/// A shared exchange is an exchange, so one instance can serve the gate wrapper, the dead
/// man's switch and the halt coordinator (`GatedExchange<Arc<dyn Exchange>>`).
#[async_trait]
impl<T: Exchange + ?Sized> Exchange for std::sync::Arc<T> {
    async fn place_order(&self, order: &OrderRequest) -> Result<OrderAck, Error> {
        (**self).place_order(order).await
    }

    async fn cancel_order(&self, order: &OrderRef) -> Result<(), Error> {
        (**self).cancel_order(order).await
    }

    async fn cancel_all(&self) -> Result<u32, Error> {
        (**self).cancel_all().await
    }

    async fn cancel_all_after(&self, timeout_secs: u32) -> Result<DeadManStatus, Error> {
        (**self).cancel_all_after(timeout_secs).await
    }

    async fn open_orders(&self) -> Result<Vec<OrderInfo>, Error> {
        (**self).open_orders().await
    }

    async fn order_status(&self, order: &OrderRef) -> Result<OrderInfo, Error> {
        (**self).order_status(order).await
    }

    async fn reconcile_order(
        &self,
        client_order_id: &ClientOrderId,
    ) -> Result<Option<Reconciled>, Error> {
        (**self).reconcile_order(client_order_id).await
    }

    async fn balances(&self) -> Result<BTreeMap<String, Decimal>, Error> {
        (**self).balances().await
    }

    async fn open_positions(&self) -> Result<Vec<Position>, Error> {
        (**self).open_positions().await
    }

    async fn check(&self) -> Result<(), Error> {
        (**self).check().await
    }

    fn lot_rules(&self, pair: &Pair) -> Option<LotRules> {
        (**self).lot_rules(pair)
    }
}
