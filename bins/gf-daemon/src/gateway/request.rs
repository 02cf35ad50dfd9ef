//! A trader's order request: its checks, the order sent to the exchange (with an id of the
//! daemon's own), what makes two requests with one key differ, and listing filters.

use gf_api::PlaceOrder;
use gf_core::{ClientOrderId, OrderRequest, OrderStatus, OrderType, Pair, TimeInForce};
use rust_decimal::Decimal;

use super::Refusal;

/// Longest trader `client_order_id`.
pub const MAX_CLIENT_ORDER_ID: usize = 64;

/// Which orders a listing returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusFilter {
    /// Every order.
    All,
    /// Not yet terminal.
    Open,
    /// Terminal.
    Closed,
    /// Exactly this status.
    Is(OrderStatus),
}

impl std::str::FromStr for StatusFilter {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "all" => Self::All,
            "open" => Self::Open,
            "closed" => Self::Closed,
            other => Self::Is(
                serde_json::from_value(serde_json::Value::String(other.to_owned())).map_err(
                    |_| {
                        format!(
                            "status {:?}: expected all, open, closed, pending, partially_filled, filled, cancelled, rejected or expired",
                            gf_core::text::escape_control(other)
                        )
                    },
                )?,
            ),
        })
    }
}

impl StatusFilter {
    pub(super) fn admits(self, status: OrderStatus) -> bool {
        match self {
            Self::All => true,
            Self::Open => !status.is_terminal(),
            Self::Closed => status.is_terminal(),
            Self::Is(s) => s == status,
        }
    }
}

/// The fields in which two requests differ.
pub(super) fn differences(a: &PlaceOrder, b: &PlaceOrder) -> Vec<&'static str> {
    [
        ("pair", a.pair != b.pair),
        ("side", a.side != b.side),
        ("type", a.order_type != b.order_type),
        ("qty", a.qty != b.qty),
        ("limit_price", a.limit_price != b.limit_price),
        ("time_in_force", a.time_in_force != b.time_in_force),
        ("post_only", a.post_only != b.post_only),
    ]
    .into_iter()
    .filter_map(|(field, differs)| differs.then_some(field))
    .collect()
}

/// Checks a request and builds the order sent to the exchange (with an id of the
/// daemon's own).
///
/// # Errors
/// [`Refusal::Invalid`] naming the field.
pub fn to_order(r: &PlaceOrder) -> Result<OrderRequest, Refusal> {
    let invalid = |field: &'static str, message: String| Refusal::Invalid { field, message };
    let id = &r.client_order_id;
    if id.is_empty() || id.len() > MAX_CLIENT_ORDER_ID || !id.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(invalid(
            "client_order_id",
            format!(
                "{:?}: use 1-{MAX_CLIENT_ORDER_ID} printable ASCII characters (no spaces)",
                gf_core::text::escape_control(&id.chars().take(80).collect::<String>())
            ),
        ));
    }
    let pair: Pair = r.pair.parse().map_err(|e| {
        invalid(
            "pair",
            format!(
                "{:?}: {e}",
                gf_core::text::escape_control(&r.pair.chars().take(80).collect::<String>())
            ),
        )
    })?;
    if r.qty <= Decimal::ZERO {
        return Err(invalid("qty", format!("{}: must be above 0", r.qty)));
    }
    let exchange_id = ClientOrderId::from_u128(rand::random::<u128>());
    let order = match r.order_type {
        OrderType::Market => {
            if r.limit_price.is_some() {
                return Err(invalid(
                    "limit_price",
                    "a market order takes no limit price".into(),
                ));
            }
            if r.post_only {
                return Err(invalid(
                    "post_only",
                    "only a limit order can be post-only".into(),
                ));
            }
            if r.time_in_force == Some(TimeInForce::Gtc) {
                return Err(invalid(
                    "time_in_force",
                    "a market order is immediate-or-cancel; leave time_in_force out or say \"ioc\""
                        .into(),
                ));
            }
            OrderRequest::market(exchange_id, pair, r.side, r.qty)
                .with_time_in_force(TimeInForce::Ioc)
        }
        OrderType::Limit => {
            let Some(price) = r.limit_price else {
                return Err(invalid(
                    "limit_price",
                    "a limit order needs a limit price".into(),
                ));
            };
            if price <= Decimal::ZERO {
                return Err(invalid("limit_price", format!("{price}: must be above 0")));
            }
            let tif = r.time_in_force.unwrap_or_default();
            if r.post_only && tif == TimeInForce::Ioc {
                return Err(invalid(
                    "post_only",
                    "a post-only order rests on the book; it cannot be immediate-or-cancel".into(),
                ));
            }
            let order = OrderRequest::limit(exchange_id, pair, r.side, r.qty, price)
                .with_time_in_force(tif);
            if r.post_only {
                order.post_only()
            } else {
                order
            }
        }
    };
    order
        .validate()
        .map_err(|e| invalid("order", e.to_string()))?;
    Ok(order)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn request() -> PlaceOrder {
        serde_json::from_value(json!({
            "client_order_id": "c-1", "pair": "XRP/USD", "side": "buy", "type": "limit",
            "qty": "10", "limit_price": "2.10"
        }))
        .unwrap()
    }

    #[test]
    fn requests_become_orders_with_an_id_of_the_daemons_own() {
        let r = request();
        let order = to_order(&r).unwrap();
        assert_eq!(order.client_order_id.as_str().len(), 32);
        assert!(order.client_order_id.check_kraken().is_ok());
        assert_ne!(order.client_order_id, to_order(&r).unwrap().client_order_id);
        assert_eq!(order.order_type, OrderType::Limit);
        assert_eq!(order.time_in_force, TimeInForce::Gtc);
        assert!(!order.post_only);
        let mut post = r.clone();
        post.post_only = true;
        assert!(to_order(&post).unwrap().post_only);

        let mut market = r.clone();
        market.order_type = OrderType::Market;
        market.limit_price = None;
        assert_eq!(to_order(&market).unwrap().time_in_force, TimeInForce::Ioc);

        let field = |r: &PlaceOrder| match to_order(r) {
            Err(Refusal::Invalid { field, .. }) => field,
            other => panic!("{other:?}"),
        };
        let mut bad = r.clone();
        bad.client_order_id = "x".repeat(65);
        assert_eq!(field(&bad), "client_order_id");
        bad.client_order_id = "has space".into();
        assert_eq!(field(&bad), "client_order_id");
        let mut bad = r.clone();
        bad.qty = Decimal::ZERO;
        assert_eq!(field(&bad), "qty");
        let mut bad = r.clone();
        bad.limit_price = Some(Decimal::NEGATIVE_ONE);
        assert_eq!(field(&bad), "limit_price");
        let mut bad = market.clone();
        bad.limit_price = Some(Decimal::ONE);
        assert_eq!(field(&bad), "limit_price");
        let mut bad = market.clone();
        bad.time_in_force = Some(TimeInForce::Gtc);
        assert_eq!(field(&bad), "time_in_force");
        let mut bad = post.clone();
        bad.time_in_force = Some(TimeInForce::Ioc);
        assert_eq!(field(&bad), "post_only");
        let mut bad = r.clone();
        bad.pair = "XRP-USD".into();
        assert_eq!(field(&bad), "pair");
    }

    #[test]
    fn a_conflict_names_every_field_that_differs() {
        let a = request();
        assert!(differences(&a, &a).is_empty());
        let mut b = a.clone();
        b.qty = Decimal::ONE;
        b.side = gf_core::Side::Sell;
        b.post_only = true;
        assert_eq!(differences(&a, &b), ["side", "qty", "post_only"]);
    }

    #[test]
    fn status_filters_parse_and_admit() {
        let f: StatusFilter = "open".parse().unwrap();
        assert!(f.admits(OrderStatus::PartiallyFilled));
        assert!(!f.admits(OrderStatus::Filled));
        let f: StatusFilter = "closed".parse().unwrap();
        assert!(f.admits(OrderStatus::Expired));
        let f: StatusFilter = "filled".parse().unwrap();
        assert!(f.admits(OrderStatus::Filled) && !f.admits(OrderStatus::Cancelled));
        assert!(
            "sideways"
                .parse::<StatusFilter>()
                .unwrap_err()
                .contains("sideways")
        );
        assert!(matches!(
            "all".parse::<StatusFilter>(),
            Ok(StatusFilter::All)
        ));
    }
}
