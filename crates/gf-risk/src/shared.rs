//! [`SharedPortfolio`]: the portfolio and its pre-trade checker behind locks, cheap to
//! clone, so one task applies bus events while gf-halt, gf-monitor and the API read.

use std::fmt;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use gf_core::{Event, EventKind, KindSet, Pair, Payload, Position, Qty, RecvError, Side};
use gf_core::{OrderRequest, Price, Subscription};
use rust_decimal::Decimal;

use crate::error::Error;
use crate::portfolio::{Applied, Portfolio, PortfolioSnapshot};
use crate::pretrade::{PreTradeCheck, PreTradeChecker, Refusal, RiskLimits, Verdict};
use crate::stats::TradingStats;
use crate::view::PortfolioView;

/// A cloneable handle on one [`Portfolio`] and one [`PreTradeChecker`].
///
/// Reads take a shared lock for a few hundred nanoseconds; they never wait on I/O. Lock
/// order is checker, then portfolio, and no method holds the portfolio lock while taking
/// the checker's, so the handle cannot deadlock.
#[derive(Clone)]
pub struct SharedPortfolio {
    portfolio: Arc<RwLock<Portfolio>>,
    checker: Arc<Mutex<PreTradeChecker>>,
}

impl fmt::Debug for SharedPortfolio {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedPortfolio")
            .field("portfolio", &*self.portfolio.read())
            .field("open_orders", &self.checker.lock().open_orders())
            .finish()
    }
}

/// What [`SharedPortfolio::run`] did before it stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunReport {
    /// Events applied (including ones the portfolio does not use).
    pub applied: u64,
    /// Events refused with an error (logged).
    pub errors: u64,
    /// Market-data events skipped because the subscription lagged (logged). Fills and
    /// order updates ride the bus's lossless lane and are never among them.
    pub lagged: u64,
}

impl SharedPortfolio {
    /// Shares `portfolio` with a checker enforcing `limits`.
    #[must_use]
    pub fn new(portfolio: Portfolio, limits: RiskLimits) -> Self {
        Self {
            portfolio: Arc::new(RwLock::new(portfolio)),
            checker: Arc::new(Mutex::new(PreTradeChecker::new(limits))),
        }
    }

    /// The kinds [`SharedPortfolio::apply_event`] uses: market data, fills, order updates.
    /// Fills and order updates are lossless on the bus ([`EventKind::is_lossless`]): a
    /// subscription with these kinds may skip market data when it lags, never a fill.
    #[must_use]
    pub fn kinds() -> KindSet {
        KindSet::market_data()
            .with(EventKind::Fill)
            .with(EventKind::OrderUpdate)
    }

    /// Applies one event: order updates free open orders in the checker, everything else
    /// goes to [`Portfolio::apply_event`].
    ///
    /// # Errors
    /// As [`Portfolio::apply_event`]; nothing changes on error.
    pub fn apply_event(&self, event: &Event) -> Result<Applied, Error> {
        if let Payload::OrderUpdate {
            client_order_id,
            status,
            ..
        } = &event.payload
        {
            self.checker
                .lock()
                .on_order_update(client_order_id, *status);
            return Ok(Applied::Ignored);
        }
        self.portfolio.write().apply_event(event)
    }

    /// Runs `f` with shared access to the portfolio.
    pub fn read<R>(&self, f: impl FnOnce(&Portfolio) -> R) -> R {
        f(&self.portfolio.read())
    }

    /// Runs `f` with exclusive access to the portfolio (e.g. to apply a fill directly).
    pub fn write<R>(&self, f: impl FnOnce(&mut Portfolio) -> R) -> R {
        f(&mut self.portfolio.write())
    }

    /// The serialisable state (see [`Portfolio::snapshot`]).
    #[must_use]
    pub fn snapshot(&self) -> PortfolioSnapshot {
        self.portfolio.read().snapshot()
    }

    /// Frees an open order in the checker; `true` if it was open.
    pub fn release(&self, client_order_id: &gf_core::ClientOrderId) -> bool {
        self.checker.lock().release(client_order_id)
    }

    /// Orders approved and not yet finished.
    #[must_use]
    pub fn open_orders(&self) -> usize {
        self.checker.lock().open_orders()
    }

    /// Applies events from `subscription` until `shutdown` is cancelled or the bus
    /// closes. Errors are logged and counted, never fatal. A lag can
    /// only skip market data (fills and order updates are never dropped by the bus), so it
    /// is counted and logged and the next price update repairs the marks. Subscribe with
    /// [`SharedPortfolio::kinds`]. Cancellation-safe: dropping the future loses at most
    /// the event being received, which the bus keeps for the next receive.
    ///
    /// ```
    /// # use std::sync::Arc;
    /// # use gf_core::config::{Config, RiskConfig};
    /// # use gf_core::{Event, EventBus, ManualClock, Payload, Side, Source, Clock};
    /// # use gf_risk::{Portfolio, PortfolioView, RiskLimits, SharedPortfolio};
    /// # use rust_decimal::Decimal;
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let clock = Arc::new(ManualClock::default());
    /// let portfolio = Portfolio::from_config(&Config::default(), clock.clone()).unwrap();
    /// let risk = SharedPortfolio::new(portfolio, RiskLimits::from_config(&RiskConfig::default()).unwrap());
    /// let bus = EventBus::new(1024);
    /// let shutdown = tokio_util::sync::CancellationToken::new();
    /// let task = tokio::spawn(risk.clone().run(bus.subscribe(SharedPortfolio::kinds()), shutdown.clone()));
    /// bus.publish(Event::new(clock.now(), Source::Market, Payload::Trade {
    ///     pair: "XRP/USD".parse().unwrap(), side: Side::Buy,
    ///     price: Decimal::new(5, 1), qty: Decimal::ONE, trade_id: 1 }));
    /// drop(bus); // or: shutdown.cancel()
    /// let report = task.await.unwrap();
    /// assert_eq!(report.applied, 1);
    /// assert_eq!(risk.equity(), Decimal::new(100_000, 0));
    /// # drop(shutdown);
    /// # });
    /// ```
    pub async fn run(self, subscription: Subscription, shutdown: CancellationToken) -> RunReport {
        self.run_then(subscription, shutdown, |_| std::future::ready(()))
            .await
    }

    /// As [`SharedPortfolio::run`], and after each event is applied `then` gets it
    /// (`None` after a lag): the daemon's risk task hands events to the halt coordinator
    /// here, so a condition reading the portfolio sees the event already applied.
    pub async fn run_then<F, Fut>(
        self,
        mut subscription: Subscription,
        shutdown: CancellationToken,
        mut then: F,
    ) -> RunReport
    where
        F: FnMut(Option<Arc<Event>>) -> Fut,
        Fut: Future<Output = ()>,
    {
        let mut report = RunReport::default();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => break,
                received = subscription.recv() => match received {
                    Ok(event) => {
                        match self.apply_event(&event) {
                            Ok(_) => report.applied += 1,
                            Err(err) => {
                                report.errors += 1;
                                warn!(cause = %err, kind = %event.kind(), "risk: event refused");
                            }
                        }
                        then(Some(event)).await;
                    }
                    Err(RecvError::Lagged { missed }) => {
                        // Only the normal lane lags: market data, never a fill or an order
                        // update (see gf_core::bus). Marks catch up with the next update.
                        report.lagged += missed;
                        warn!(
                            missed,
                            "risk: skipped market data while lagging; marks refresh with the next update"
                        );
                        then(None).await;
                    }
                    Err(RecvError::Closed) => break,
                },
            }
        }
        report
    }
}

impl PortfolioView for SharedPortfolio {
    fn equity(&self) -> Decimal {
        self.portfolio.read().equity()
    }

    fn peak_equity(&self) -> Decimal {
        self.portfolio.read().peak_equity()
    }

    fn total_drawdown_pct(&self) -> Decimal {
        self.portfolio.read().total_drawdown_pct()
    }

    fn daily_drawdown_pct(&self) -> Decimal {
        self.portfolio.read().daily_drawdown_pct()
    }

    fn consecutive_losses(&self) -> u32 {
        self.portfolio.read().consecutive_losses()
    }

    fn positions(&self) -> Vec<Position> {
        self.portfolio.read().positions()
    }

    fn exposure(&self) -> Decimal {
        self.portfolio.read().exposure()
    }

    fn volatility_pct(&self, pair: &Pair) -> Option<Decimal> {
        self.portfolio.read().volatility_pct(pair)
    }

    fn trading_stats(&self) -> TradingStats {
        self.portfolio.read().statistics()
    }
}

impl PreTradeCheck for SharedPortfolio {
    fn check(&self, order: OrderRequest) -> Verdict {
        let mut checker = self.checker.lock();
        let portfolio = self.portfolio.read();
        let now = portfolio.clock().now();
        checker.check(order, &portfolio, now)
    }

    fn size(&self, pair: &Pair, side: Side, entry: Price, stop: Price) -> Result<Qty, Refusal> {
        let checker = self.checker.lock();
        let portfolio = self.portfolio.read();
        checker.size(&portfolio, pair, side, entry, stop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::portfolio::test_support::*;
    use gf_core::config::RiskConfig;
    use gf_core::{ClientOrderId, EventBus, OrderStatus, Source};
    use rust_decimal_macros::dec;

    fn shared() -> SharedPortfolio {
        let (p, _clock) = portfolio(dec!(100000));
        SharedPortfolio::new(p, RiskLimits::from_config(&RiskConfig::default()).unwrap())
    }

    fn market_order(id: &str) -> OrderRequest {
        OrderRequest::market(ClientOrderId::new(id), xrp(), Side::Buy, dec!(100))
    }

    fn trade(price: Decimal) -> Event {
        Event::new(
            t0(),
            Source::Market,
            Payload::Trade {
                pair: xrp(),
                side: Side::Buy,
                price,
                qty: dec!(1),
                trade_id: 1,
            },
        )
    }

    #[test]
    fn view_and_checks_through_the_handle() {
        let risk = shared();
        let reader = risk.clone();
        // No price yet: refuse, never guess.
        let v = risk.check(market_order("a"));
        assert_eq!(v.refusal().unwrap().code(), "no_market_price");
        risk.apply_event(&trade(dec!(0.5))).unwrap();
        assert!(risk.check(market_order("a")).is_approved());
        assert_eq!(risk.open_orders(), 1);
        let update = Event::new(
            t0(),
            Source::Exec,
            Payload::OrderUpdate {
                client_order_id: ClientOrderId::new("a"),
                order_id: None,
                pair: xrp(),
                status: OrderStatus::Cancelled,
                filled_qty: Decimal::ZERO,
                reason: None,
            },
        );
        assert_eq!(risk.apply_event(&update).unwrap(), Applied::Ignored);
        assert_eq!(risk.open_orders(), 0);
        assert!(risk.check(market_order("b")).is_approved());
        assert!(risk.release(&ClientOrderId::new("b")));

        let f = fill("1", &xrp(), Side::Buy, dec!(1000), dec!(0.5), dec!(1));
        risk.write(|p| p.apply_fill(&f)).unwrap();
        risk.apply_event(&trade(dec!(0.6))).unwrap();
        let view: &dyn PortfolioView = &reader;
        assert_eq!(view.equity(), dec!(100099));
        assert_eq!(view.peak_equity(), dec!(100099));
        assert_eq!(view.total_drawdown_pct(), Decimal::ZERO);
        assert_eq!(view.daily_drawdown_pct(), Decimal::ZERO);
        assert_eq!(view.consecutive_losses(), 0);
        assert_eq!(view.positions().len(), 1);
        assert_eq!(view.exposure(), dec!(600));
        assert_eq!(view.volatility_pct(&xrp()), None);
        assert_eq!(view.trading_stats().count, 0);
        assert_eq!(
            reader.size(&xrp(), Side::Buy, dec!(0.6), dec!(0.5)),
            Ok(dec!(5004))
        );
        assert_eq!(reader.snapshot(), reader.read(Portfolio::snapshot));
        assert!(format!("{reader:?}").contains("open_orders: 0"));
    }

    #[test]
    fn readers_on_other_threads_see_consistent_figures() {
        let risk = shared();
        risk.write(|p| p.apply_fill(&fill("1", &xrp(), Side::Buy, dec!(1000), dec!(1), dec!(0))))
            .unwrap();
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let r = risk.clone();
                std::thread::spawn(move || {
                    for _ in 0..500 {
                        r.read(|p| {
                            assert_eq!(
                                p.equity() - p.initial_equity(),
                                p.realised_pnl() + p.unrealised_pnl() - p.fees()
                            );
                        });
                        assert!(r.total_drawdown_pct() <= Decimal::ONE_HUNDRED);
                    }
                })
            })
            .collect();
        for i in 1..500i64 {
            risk.apply_event(&trade(Decimal::new(500 + (i % 37) * 10, 3)))
                .unwrap();
        }
        for r in readers {
            r.join().unwrap();
        }
    }

    #[tokio::test]
    async fn run_stops_on_shutdown_and_on_bus_close() {
        let bus = EventBus::new(64);
        let risk = shared();
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(
            risk.clone()
                .run(bus.subscribe(SharedPortfolio::kinds()), shutdown.clone()),
        );
        shutdown.cancel();
        let report = task.await.unwrap();
        assert_eq!(report, RunReport::default());

        let rx = CancellationToken::new();
        let sub = bus.subscribe(SharedPortfolio::kinds());
        bus.publish(trade(dec!(0.5)));
        bus.publish(trade(dec!(-1)));
        drop(bus);
        let report = risk.clone().run(sub, rx).await;
        assert_eq!((report.applied, report.errors, report.lagged), (1, 1, 0));
        assert_eq!(risk.read(|p| p.mark(&xrp())).unwrap().price, dec!(0.5));
    }

    #[tokio::test]
    async fn run_counts_lagged_events() {
        let bus = EventBus::new(2);
        let risk = shared();
        let rx = CancellationToken::new();
        let sub = bus.subscribe(SharedPortfolio::kinds());
        for i in 1..=5 {
            bus.publish(trade(Decimal::new(i, 1)));
        }
        drop(bus);
        let report = risk.clone().run(sub, rx).await;
        assert_eq!(report.lagged, 3);
        assert_eq!(report.applied, 2);
        assert_eq!(risk.read(|p| p.mark(&xrp())).unwrap().price, dec!(0.5));
    }

    #[tokio::test]
    async fn every_fill_and_order_update_is_applied_when_market_data_lags() {
        let bus = EventBus::new(8);
        let risk = shared();
        let rx = CancellationToken::new();
        let sub = bus.subscribe(SharedPortfolio::kinds());
        // Two open orders the order updates will release.
        risk.apply_event(&trade(dec!(0.5))).unwrap();
        assert!(risk.check(market_order("a")).is_approved());
        assert!(risk.check(market_order("b")).is_approved());
        assert_eq!(risk.open_orders(), 2);
        // 5 000 trades with a 10-XRP fill every 100: the 8-slot ring overflows long
        // before the task reads anything.
        let mut bought = Decimal::ZERO;
        for i in 0..5_000i64 {
            bus.publish(trade(Decimal::new(500 + i % 7, 3)));
            if i % 100 == 0 {
                let f = fill(
                    &i.to_string(),
                    &xrp(),
                    Side::Buy,
                    dec!(10),
                    dec!(0.5),
                    dec!(0),
                );
                bought += f.qty;
                bus.publish(Event::new(t0(), Source::Paper, Payload::Fill(f)));
            }
        }
        for id in ["a", "b"] {
            bus.publish(Event::new(
                t0(),
                Source::Exec,
                Payload::OrderUpdate {
                    client_order_id: ClientOrderId::new(id),
                    order_id: None,
                    pair: xrp(),
                    status: OrderStatus::Filled,
                    filled_qty: dec!(100),
                    reason: None,
                },
            ));
        }
        drop(bus);
        let report = risk.clone().run(sub, rx).await;
        assert!(report.lagged > 4_900, "market data lagged: {report:?}");
        assert_eq!(bought, dec!(500));
        assert_eq!(risk.read(|p| p.position_qty(&xrp())), Some(bought));
        assert_eq!(risk.open_orders(), 0, "both order updates applied");
    }
}
