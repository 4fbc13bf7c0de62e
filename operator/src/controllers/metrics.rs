//! Controller metrics: per controller a reconcile counter, duration histogram, failure
//! counter, the reconciles in flight (and their peak, which `--reconcile-concurrency` bounds)
//! and the objects its cache holds (finished requests are not among them; docs/scale.md).

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    pub controller: String,
    pub error: String,
}

/// Metrics of every controller, in their own registry.
#[derive(Debug)]
pub struct ControllerMetrics {
    registry: Registry,
    pub reconcile_duration: Family<ControllerLabels, Histogram>,
    /// Reconciles started.
    pub reconciles: Family<ControllerLabels, Counter>,
    /// Reconciles running now.
    pub in_flight: Family<ControllerLabels, Gauge>,
    /// The most reconciles that ran at once since start.
    pub in_flight_peak: Family<ControllerLabels, Gauge>,
    /// Objects in the controller's cache (its reflector store).
    pub cached_objects: Family<ControllerLabels, Gauge>,
    /// Finished requests deleted after `--retain-finished`.
    pub finished_deleted: Family<ControllerLabels, Counter>,
    /// Finished requests whose status was changed after they finished, so the controller
    /// looks at them again.
    pub finished_reopened: Family<ControllerLabels, Counter>,
    pub failures: Family<FailureLabels, Counter>,
    /// 1 while the shipped admission policies are installed, denying and unchanged; 0 while
    /// approvals are withheld for lack of them.
    pub admission_policies_in_force: Gauge,
    /// Reconciles that counted no approval, by reason (`ApprovalPolicyMissing`,
    /// `AwaitingRequesterConfirmation`).
    pub approvals_withheld: Family<ReasonLabels, Counter>,
    /// GitOps observation: watch (re)starts, observations in progress, executed → applied.
    pub gitops: crate::gitops::GitopsMetrics,
    /// Kubernetes Events not published, by reason (`queue_full`, `api_error`).
    pub events_not_published: Family<ReasonLabels, Counter>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: String,
}

impl Default for ControllerMetrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("sb_operator_controller");
        let reconcile_duration = Family::<ControllerLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.001, 2.0, 14))
        });
        let failures = Family::<FailureLabels, Counter>::default();
        registry.register("reconcile_duration_seconds", "Reconcile duration by controller", reconcile_duration.clone());
        let reconciles = Family::<ControllerLabels, Counter>::default();
        registry.register("reconciles", "Reconciles started, by controller", reconciles.clone());
        let in_flight = Family::<ControllerLabels, Gauge>::default();
        registry.register("reconciles_in_flight", "Reconciles running now, by controller", in_flight.clone());
        let in_flight_peak = Family::<ControllerLabels, Gauge>::default();
        registry.register(
            "reconciles_in_flight_peak",
            "The most reconciles of one controller that ran at once since start (bounded by --reconcile-concurrency)",
            in_flight_peak.clone(),
        );
        let cached_objects = Family::<ControllerLabels, Gauge>::default();
        registry.register(
            "cached_objects",
            "Objects held in the controller's cache (finished requests are not watched)",
            cached_objects.clone(),
        );
        let finished_deleted = Family::<ControllerLabels, Counter>::default();
        registry.register(
            "finished_deleted",
            "Finished requests deleted once older than --retain-finished",
            finished_deleted.clone(),
        );
        let finished_reopened = Family::<ControllerLabels, Counter>::default();
        registry.register(
            "finished_reopened",
            "Finished requests whose status changed afterwards, handed back to their controller",
            finished_reopened.clone(),
        );
        registry.register("reconcile_failures", "Failed reconciles by controller and error kind", failures.clone());
        let admission_policies_in_force = Gauge::default();
        registry.register(
            "admission_policies_in_force",
            "1 while the admission policies approvals depend on are installed, denying and unchanged",
            admission_policies_in_force.clone(),
        );
        let approvals_withheld = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "approvals_withheld",
            "Reconciles of a pending request that counted no approval, by reason",
            approvals_withheld.clone(),
        );
        let events_not_published = Family::<ReasonLabels, Counter>::default();
        registry.register(
            "events_not_published",
            "Kubernetes Events not published, by reason (queue_full: more than 1,024 waiting; api_error: refused or unreachable)",
            events_not_published.clone(),
        );
        for reason in ["queue_full", "api_error"] {
            // Present at 0 from the start, so alerts on increase() see the first one.
            let _ = events_not_published.get_or_create(&ReasonLabels { reason: reason.into() });
        }
        let gitops = crate::gitops::GitopsMetrics {
            watches: Counter::default(),
            in_progress: Gauge::default(),
            executed_to_applied: Histogram::new(exponential_buckets(1.0, 2.0, 14)),
        };
        registry.register(
            "gitops_application_watches",
            "Starts (initial list and watch) of the one shared watch on ArgoCD Applications",
            gitops.watches.clone(),
        );
        registry.register(
            "gitops_observations_in_progress",
            "Executed patches whose rollout is being observed",
            gitops.in_progress.clone(),
        );
        registry.register(
            "gitops_executed_to_applied_seconds",
            "Time from a patch's execution to its Applied verdict",
            gitops.executed_to_applied.clone(),
        );
        Self {
            registry,
            reconcile_duration,
            reconciles,
            in_flight,
            in_flight_peak,
            cached_objects,
            finished_deleted,
            finished_reopened,
            failures,
            admission_policies_in_force,
            approvals_withheld,
            gitops,
            events_not_published,
        }
    }
}

impl ControllerMetrics {
    /// Counts and starts timing one reconcile; the time is recorded and the reconcile leaves
    /// the in-flight gauge when the guard drops.
    pub fn time(&self, controller: &str) -> ReconcileTimer<'_> {
        let labels = ControllerLabels { controller: controller.to_owned() };
        self.reconciles.get_or_create(&labels).inc();
        let now = self.in_flight.get_or_create(&labels).inc() + 1;
        self.in_flight_peak.get_or_create(&labels).inner().fetch_max(now, std::sync::atomic::Ordering::Relaxed);
        ReconcileTimer { metrics: self, controller: controller.to_owned(), start: Instant::now() }
    }

    /// Counts a failed reconcile.
    pub fn failed(&self, controller: &str, error: &super::Error) {
        let labels = FailureLabels { controller: controller.into(), error: error.metric_label().into() };
        self.failures.get_or_create(&labels).inc();
    }

    /// Counts a reconcile that counted no approval for `reason`.
    pub fn withheld(&self, reason: &str) {
        self.approvals_withheld.get_or_create(&ReasonLabels { reason: reason.into() }).inc();
    }

    /// The OpenMetrics text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Records a reconcile's duration on drop.
pub struct ReconcileTimer<'a> {
    metrics: &'a ControllerMetrics,
    controller: String,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        let labels = ControllerLabels { controller: std::mem::take(&mut self.controller) };
        self.metrics.in_flight.get_or_create(&labels).dec();
        self.metrics.reconcile_duration.get_or_create(&labels).observe(self.start.elapsed().as_secs_f64());
    }
}
