//! [`NullExchange`]: an exchange with an empty account that places nothing, for tests and
//! examples that need an [`Exchange`] but never trade through it.

use std::collections::BTreeMap;

use async_trait::async_trait;
use rust_decimal::Decimal;

use gf_core::{ApiErrorKind, OrderRequest, Position};

use crate::Error;
use crate::exchange::{DeadManStatus, Exchange, OrderAck, OrderInfo, OrderRef};

/// The reason [`NullExchange`] gives for refusing every order.
pub const NULL_EXCHANGE_REFUSAL: &str = "the null exchange places no orders";

/// An exchange with an empty account that places nothing. Every call answers at once,
/// the same way each time:
///
/// | call | answer |
/// |---|---|
/// | [`Exchange::place_order`] | [`Error::Rejected`] ([`ApiErrorKind::Other`], [`NULL_EXCHANGE_REFUSAL`]) |
/// | [`Exchange::cancel_order`], [`Exchange::order_status`] | [`Error::UnknownOrder`] |
/// | [`Exchange::reconcile_order`] | `Ok(None)`: it never saw the order |
/// | [`Exchange::cancel_all`] | `Ok(0)`: nothing rests |
/// | [`Exchange::cancel_all_after`] | `Ok`, never triggering (`trigger_at: None`) |
/// | [`Exchange::open_orders`], [`Exchange::open_positions`], [`Exchange::balances`] | empty |
/// | [`Exchange::check`] | `Ok(())` |
/// | [`Exchange::lot_rules`] | `None` |
///
/// So a halt over it cancels nothing, closes nothing and ends Halted. It is not a paper
/// exchange (use [`crate::PaperExchange`] to simulate fills) and not a fault injector.
///
/// ```
/// use gf_core::{ClientOrderId, OrderRequest, Side};
/// use gf_exec::{Error, Exchange, NullExchange};
/// use rust_decimal::Decimal;
/// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
/// let order = OrderRequest::market(
///     ClientOrderId::new("c1"),
///     "XRP/USD".parse().unwrap(),
///     Side::Buy,
///     Decimal::ONE,
/// );
/// assert!(matches!(NullExchange.place_order(&order).await, Err(Error::Rejected { .. })));
/// assert_eq!(NullExchange.cancel_all().await.unwrap(), 0);
/// assert!(NullExchange.open_positions().await.unwrap().is_empty());
/// assert!(NullExchange.reconcile_order(&order.client_order_id).await.unwrap().is_none());
/// # });
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NullExchange;

fn unknown(order: &OrderRef) -> Error {
    Error::UnknownOrder(match order {
        OrderRef::Exchange(id) => id.to_string(),
        OrderRef::Client(id) => format!("client:{id}"),
    })
}

#[async_trait]
impl Exchange for NullExchange {
    async fn place_order(&self, order: &OrderRequest) -> Result<OrderAck, Error> {
        Err(Error::Rejected {
            client_order_id: order.client_order_id.to_string(),
            reason: NULL_EXCHANGE_REFUSAL.to_owned(),
            kind: ApiErrorKind::Other,
        })
    }

    async fn cancel_order(&self, order: &OrderRef) -> Result<(), Error> {
        Err(unknown(order))
    }

    async fn cancel_all(&self) -> Result<u32, Error> {
        Ok(0)
    }

    async fn cancel_all_after(&self, _timeout_secs: u32) -> Result<DeadManStatus, Error> {
        Ok(DeadManStatus { trigger_at: None })
    }

    async fn open_orders(&self) -> Result<Vec<OrderInfo>, Error> {
        Ok(Vec::new())
    }

    async fn order_status(&self, order: &OrderRef) -> Result<OrderInfo, Error> {
        Err(unknown(order))
    }

    async fn balances(&self) -> Result<BTreeMap<String, Decimal>, Error> {
        Ok(BTreeMap::new())
    }

    async fn open_positions(&self) -> Result<Vec<Position>, Error> {
        Ok(Vec::new())
    }

    async fn check(&self) -> Result<(), Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gf_core::{ClientOrderId, OrderId, Side};

    #[tokio::test]
    async fn every_call_answers_as_documented() {
        let ex = NullExchange;
        let order = OrderRequest::limit(
            ClientOrderId::new("n-1"),
            "XRP/USD".parse().unwrap(),
            Side::Sell,
            Decimal::ONE,
            Decimal::TWO,
        );
        match ex.place_order(&order).await {
            Err(Error::Rejected {
                client_order_id,
                reason,
                kind,
            }) => {
                assert_eq!(client_order_id, "n-1");
                assert_eq!(reason, NULL_EXCHANGE_REFUSAL);
                assert_eq!(kind, ApiErrorKind::Other);
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        let by_txid = OrderRef::Exchange(OrderId::new("OABC"));
        let by_client = OrderRef::Client(ClientOrderId::new("n-1"));
        assert!(
            matches!(ex.cancel_order(&by_txid).await, Err(Error::UnknownOrder(id)) if id == "OABC")
        );
        assert!(
            matches!(ex.order_status(&by_client).await, Err(Error::UnknownOrder(id)) if id == "client:n-1")
        );
        assert_eq!(
            ex.reconcile_order(&order.client_order_id).await.unwrap(),
            None
        );
        assert_eq!(ex.cancel_all().await.unwrap(), 0);
        assert_eq!(ex.cancel_all_after(60).await.unwrap().trigger_at, None);
        assert!(ex.open_orders().await.unwrap().is_empty());
        assert!(ex.balances().await.unwrap().is_empty());
        assert!(ex.open_positions().await.unwrap().is_empty());
        ex.check().await.unwrap();
        assert_eq!(ex.lot_rules(&order.pair), None);
    }
}
