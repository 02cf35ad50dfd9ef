//! From a signal to an order: sizing by gf-risk, the journal record of the order's
//! strategy, the pre-trade checks and the gated exchange. The paper and live daemon and
//! the backtest driver all run this one path ([`SignalExecutor`]); only the source of
//! client order ids differs ([`OrderIds`]).

use std::sync::Arc;

use gf_core::latency::{micros_between, stage};
use gf_core::{
    ClientOrderId, Event, EventBus, EventKind, KindSet, OrderRequest, Payload, Qty, SharedClock,
    SharedLatency, Side, Source, TimeInForce,
};
use gf_exec::Exchange;
use gf_halt::HaltCoordinator;
use gf_risk::{PreTradeCheck, SharedPortfolio, Verdict};
use rust_decimal::Decimal;

use crate::strategy::{Signal, Strategy};

/// Journal kind of the record mapping a strategy order's client order id to its strategy
/// and signal sequence number.
pub const CLIENT_ORDER_ID_KIND: &str = "client_order_id";

/// Where client order ids come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OrderIds {
    /// 128 random bits as 32 hex digits: a `cl_ord_id` Kraken accepts (a UUID's simple
    /// form), unlike readable text that outgrows Kraken's 18 characters. The daemon's.
    Random,
    /// The signal's sequence number as the id's bits: reproducible, for backtests.
    Sequential,
}

/// What became of a signal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignalOutcome {
    /// Trading is halted: the signal was dropped before sizing.
    Halted,
    /// Sizing refused it (the reason), or it asked for nothing (a sell while flat).
    NotSized(String),
    /// The order id could not be journaled (the journal's hook halts): nothing placed.
    NotJournaled(String),
    /// The pre-trade checks refused the order (published as a rejected `OrderUpdate`).
    Refused(String),
    /// The order was placed.
    Placed(ClientOrderId),
    /// The exchange (or the gate) refused it.
    NotPlaced(ClientOrderId, String),
}

/// Runs a strategy's signals through sizing, the journal, the pre-trade checks and the
/// gated exchange.
#[derive(Clone)]
pub struct SignalExecutor {
    bus: EventBus,
    clock: SharedClock,
    portfolio: SharedPortfolio,
    halt: HaltCoordinator,
    exchange: Arc<dyn Exchange>,
    ids: OrderIds,
    seq: u64,
    latency: Option<SharedLatency>,
}

impl std::fmt::Debug for SignalExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignalExecutor")
            .field("ids", &self.ids)
            .field("seq", &self.seq)
            .finish_non_exhaustive()
    }
}

impl SignalExecutor {
    /// An executor placing through `exchange` (the gated one), journaling with `halt`.
    #[must_use]
    pub fn new(
        bus: EventBus,
        clock: SharedClock,
        portfolio: SharedPortfolio,
        halt: HaltCoordinator,
        exchange: Arc<dyn Exchange>,
        ids: OrderIds,
    ) -> Self {
        Self {
            bus,
            clock,
            portfolio,
            halt,
            exchange,
            ids,
            seq: 0,
            latency: None,
        }
    }

    /// Records `decision` (a market event's time stamp to the strategy's answer, signal
    /// or none, by this executor's clock) and `order_sent` (a signal's execution begun to
    /// its order handed to the exchange: sizing, journal, pre-trade checks) into `sink`.
    /// Default: nothing recorded, no clock read for it.
    #[must_use]
    pub fn with_latency(mut self, sink: SharedLatency) -> Self {
        self.latency = Some(sink);
        self
    }

    /// The event kinds a strategy runner feeds to [`SignalExecutor::on_market`].
    #[must_use]
    pub fn kinds() -> KindSet {
        KindSet::of(&[EventKind::BookSnapshot, EventKind::BookUpdate])
    }

    /// Signals executed so far.
    #[must_use]
    pub fn signals(&self) -> u64 {
        self.seq
    }

    /// Shows `event` to `strategy` and executes its signal, if any. A strategy starts on
    /// a pair once the portfolio can price it (the risk code marks it from the same
    /// events), so a signal is never refused for want of a price; while trading is
    /// halted signals are dropped. Returns `None` when there was no signal.
    pub async fn on_market(
        &mut self,
        strategy: &mut dyn Strategy,
        event: &Event,
    ) -> Option<SignalOutcome> {
        let pair = gf_halt::condition::event_pair(&event.payload)?;
        let position = self
            .portfolio
            .read(|p| p.mark(pair).and_then(|_| p.position_qty(pair)))?;
        let signal = strategy.on_market(event, position);
        if let Some(sink) = &self.latency {
            sink.record(stage::DECISION, micros_between(event.ts, self.clock.now()));
        }
        let signal = signal?;
        if !self.halt.gate().is_open() {
            tracing::debug!(pair = %signal.pair, "signal ignored: trading is halted");
            return Some(SignalOutcome::Halted);
        }
        Some(self.execute(strategy.name(), &signal, position).await)
    }

    /// Turns a signal into an order: published as a `Signal` event, sized by gf-risk
    /// against the portfolio's mark (scaled so the stop keeps its distance), its client
    /// order id journaled with the strategy and signal before it can reach the exchange,
    /// checked, and sent through the gate. A closing signal sells the holding.
    pub async fn execute(
        &mut self,
        strategy: &str,
        signal: &Signal,
        position: Qty,
    ) -> SignalOutcome {
        let begun = self.latency.as_ref().map(|_| self.clock.now());
        self.seq += 1;
        let seq = self.seq;
        self.bus.publish(Event::new(
            self.clock.now(),
            Source::Strategy,
            Payload::Signal {
                strategy: strategy.to_owned(),
                pair: signal.pair.clone(),
                side: signal.side,
                entry: signal.entry,
                stop: signal.stop,
            },
        ));
        let reference = self
            .portfolio
            .read(|p| p.mark(&signal.pair))
            .map_or(signal.entry, |m| m.price);
        // An exit sells the holding as a plain sell, never `reduce_only`: on a spot account
        // there is no margin position for it to reduce, and Kraken rejects a reduce-only
        // order without one.
        let qty = match (signal.side, signal.stop) {
            (Side::Buy, Some(stop)) => {
                let Some(scaled) = scale_stop(stop, reference, signal.entry) else {
                    return SignalOutcome::NotSized(format!(
                        "stop {stop} cannot be scaled from entry {} to mark {reference}",
                        signal.entry
                    ));
                };
                match self
                    .portfolio
                    .size(&signal.pair, Side::Buy, reference, scaled)
                {
                    Ok(q) => q,
                    Err(refusal) => {
                        tracing::info!(pair = %signal.pair, reason = %refusal, "signal not sized");
                        return SignalOutcome::NotSized(refusal.to_string());
                    }
                }
            }
            (Side::Sell, None) if position > Decimal::ZERO => position,
            _ => return SignalOutcome::NotSized("nothing to do for this signal".into()),
        };
        let client_order_id = match self.ids {
            OrderIds::Random => ClientOrderId::from_u128(rand::random::<u128>()),
            OrderIds::Sequential => ClientOrderId::from_u128(u128::from(seq)),
        };
        if let Err(e) = self
            .halt
            .record(
                CLIENT_ORDER_ID_KIND,
                strategy,
                serde_json::json!({
                    "client_order_id": client_order_id,
                    "strategy": strategy,
                    "signal_seq": seq,
                    "pair": signal.pair,
                    "side": signal.side,
                }),
            )
            .await
        {
            // A failed journal write halts through the journal's hook; place nothing.
            tracing::warn!(order = %client_order_id, cause = %e, "order id not journaled: not placed");
            return SignalOutcome::NotJournaled(e.to_string());
        }
        let order = market_order(client_order_id, signal, qty);
        match self.portfolio.check(order) {
            Verdict::Approved(order) => {
                if let (Some(sink), Some(begun)) = (&self.latency, begun) {
                    sink.record(stage::ORDER_SENT, micros_between(begun, self.clock.now()));
                }
                match self.exchange.place_order(&order).await {
                    Ok(_) => SignalOutcome::Placed(order.client_order_id),
                    Err(e) => {
                        tracing::warn!(order = %order.client_order_id, cause = %e, "order not placed");
                        self.portfolio.release(&order.client_order_id);
                        SignalOutcome::NotPlaced(order.client_order_id, e.to_string())
                    }
                }
            }
            Verdict::Refused { order, reason } => {
                tracing::info!(order = %order.client_order_id, reason = %reason, "pre-trade check refused");
                self.bus.publish(Event::new(
                    self.clock.now(),
                    Source::Risk,
                    Payload::rejected(&order, reason.to_string()),
                ));
                SignalOutcome::Refused(reason.to_string())
            }
        }
    }
}

/// The stop moved with the price the order is sized against: `stop × reference / entry`.
/// `None` when that overflows or the entry is zero.
fn scale_stop(stop: Decimal, reference: Decimal, entry: Decimal) -> Option<Decimal> {
    stop.checked_mul(reference)?.checked_div(entry)
}

/// A market order, immediate-or-cancel: what every signal becomes.
fn market_order(client_order_id: ClientOrderId, signal: &Signal, qty: Qty) -> OrderRequest {
    OrderRequest::market(client_order_id, signal.pair.clone(), signal.side, qty)
        .with_time_in_force(TimeInForce::Ioc)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stop_keeps_its_distance_from_the_sizing_price() {
        assert_eq!(
            scale_stop(
                Decimal::new(99, 0),
                Decimal::new(200, 0),
                Decimal::new(100, 0)
            ),
            Some(Decimal::new(198, 0))
        );
        assert_eq!(scale_stop(Decimal::ONE, Decimal::ONE, Decimal::ZERO), None);
        assert_eq!(scale_stop(Decimal::MAX, Decimal::MAX, Decimal::ONE), None);
    }
}
