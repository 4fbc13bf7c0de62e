//! Controller metrics: a reconcile duration histogram and a failure counter per controller.

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
    pub failures: Family<FailureLabels, Counter>,
    /// 1 while the shipped admission policies are installed, denying and unchanged; 0 while
    /// approvals are withheld for lack of them.
    pub admission_policies_in_force: Gauge,
    /// Reconciles that counted no approval, by reason (`ApprovalPolicyMissing`,
    /// `AwaitingRequesterConfirmation`).
    pub approvals_withheld: Family<ReasonLabels, Counter>,
    /// GitOps observation: watch (re)starts, observations in progress, executed → applied.
    pub gitops: crate::gitops::GitopsMetrics,
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
        Self { registry, reconcile_duration, failures, admission_policies_in_force, approvals_withheld, gitops }
    }
}

impl ControllerMetrics {
    /// Starts timing one reconcile; the time is recorded when the guard drops.
    pub fn time(&self, controller: &str) -> ReconcileTimer<'_> {
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
        self.metrics.reconcile_duration.get_or_create(&labels).observe(self.start.elapsed().as_secs_f64());
    }
}
