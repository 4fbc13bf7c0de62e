//! What a run measured and found, printed as the figures `make load` quotes. Times are the
//! driver's clock (from its API call returning to the watch showing the phase): reported,
//! never asserted.

use super::checks::StoreFindings;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// p50, p99 and max of a set of durations.
#[derive(Clone, Copy, Debug, Default)]
pub struct Spread {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Spread {
    /// Nearest-rank percentiles.
    pub fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let rank = |p: f64| {
            let n = samples.len();
            samples[((p * n as f64).ceil() as usize).clamp(1, n) - 1]
        };
        if samples.is_empty() {
            return Self::default();
        }
        Self { count: samples.len(), p50: rank(0.50), p99: rank(0.99), max: *samples.last().expect("not empty") }
    }
}

impl fmt::Display for Spread {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = |d: Duration| format!("{:.2}s", d.as_secs_f64());
        write!(f, "n={:<5} p50 {:>7}  p99 {:>7}  max {:>7}", self.count, s(self.p50), s(self.p99), s(self.max))
    }
}

/// The replica killed halfway, and what followed.
#[derive(Clone, Debug)]
pub struct Failover {
    /// The replica that led when half the requests were final, SIGKILLed then.
    pub killed: usize,
    /// Requests final when it was killed.
    pub at_final: usize,
    /// The replica that took the Lease over, and how long after the SIGKILL its log said so.
    pub new_leader: Option<usize>,
    pub takeover: Option<Duration>,
    /// Connections the Service handed to each replica.
    pub connections: Vec<u64>,
}

/// A replica that exited on its own and was started again, as a Deployment restarts a pod.
#[derive(Clone, Debug)]
pub struct Restart {
    pub replica: usize,
    /// Since the first create.
    pub after: Duration,
    /// It had logged that it lost the Lease (a leader whose renewal got no answer in time
    /// steps down and exits, by design); anything else is a crash.
    pub lease_lost: bool,
}

/// Everything a run found.
#[derive(Clone, Debug)]
pub struct LoadReport {
    pub readers: usize,
    pub patchers: usize,
    pub replicas: usize,
    pub database: &'static str,
    /// Final phase → how many requests ended there (`SecretReadRequest/Revealed`, …), by the driver.
    pub final_phases: BTreeMap<String, usize>,
    /// The same, as the API server lists the objects afterwards.
    pub api_phases: BTreeMap<String, usize>,
    /// Reads whose delivery did not open to their value.
    pub delivery_problems: Vec<String>,
    /// Patches whose OpenBao secret does not hold exactly one new version with their change.
    pub provider_problems: Vec<String>,
    pub store: StoreFindings,
    /// `sb-operator audit verify`: exit code and output.
    pub audit_verify: (i32, String),
    pub create_to_delivered: Spread,
    pub approve_to_delivered: Spread,
    pub approve_to_executed: Spread,
    pub create_to_final: Spread,
    /// The operator's part (approval seen → job queued) and the job's (queued → Delivered /
    /// Executed: claim, provider, completion, relay), reads and patches together.
    pub approve_to_queued: Spread,
    pub queued_to_done: Spread,
    /// From the first create to the last request's final phase.
    pub elapsed: Duration,
    pub failover: Option<Failover>,
    /// Replicas that exited on their own during the run and were started again.
    pub restarts: Vec<Restart>,
    /// Elections of any replica over the run (1 when the first leader kept the Lease).
    pub elections: usize,
    /// The agent's claims, completions and heartbeats that failed and were sent again.
    pub agent_retries: usize,
    /// The requests that waited longest from approval to done, with where the time went.
    pub slowest: Vec<String>,
    /// Reconciles run per controller (`/metrics`, summed over the replicas still running at the end).
    pub reconciles: BTreeMap<String, u64>,
}

impl LoadReport {
    /// Requests that reached their final phase per second of the run.
    pub fn throughput(&self) -> f64 {
        (self.readers + self.patchers) as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// Every guarantee that does not hold, in words; empty when the run was clean.
    pub fn problems(&self) -> Vec<String> {
        let mut p = Vec::new();
        let want = BTreeMap::from([
            ("SecretPatch/Executed".to_owned(), self.patchers),
            ("SecretReadRequest/Revealed".to_owned(), self.readers),
        ]);
        let want: BTreeMap<String, usize> = want.into_iter().filter(|(_, n)| *n > 0).collect();
        if self.final_phases != want {
            p.push(format!("final phases {:?}, expected {want:?}", self.final_phases));
        }
        if self.api_phases != want {
            p.push(format!("the API server lists {:?}, expected {want:?}", self.api_phases));
        }
        let s = &self.store;
        let lists = [
            ("deliveries wrong", &self.delivery_problems),
            ("provider versions wrong", &self.provider_problems),
            ("requests without a job", &s.without_job),
            ("requests with several jobs", &s.several_jobs),
            ("jobs not Succeeded", &s.not_succeeded),
            ("recorded more than once in the audit chain", &s.duplicates),
            ("final phase not audited", &s.final_not_audited),
        ];
        for (what, list) in lists {
            if !list.is_empty() {
                p.push(format!(
                    "{what} ({}): {}",
                    list.len(),
                    list.iter().take(20).cloned().collect::<Vec<_>>().join("; ")
                ));
            }
        }
        if s.jobs != self.readers + self.patchers {
            p.push(format!("{} jobs for {} requests", s.jobs, self.readers + self.patchers));
        }
        if s.unfinished > 0 {
            p.push(format!("{} jobs still Queued or Leased", s.unfinished));
        }
        if s.results_left > 0 {
            p.push(format!("{} sealed results left in the store", s.results_left));
        }
        for r in self.restarts.iter().filter(|r| !r.lease_lost) {
            p.push(format!(
                "replica {} exited {:.1}s into the run without having lost the Lease",
                r.replica,
                r.after.as_secs_f64()
            ));
        }
        if let Some(fo) = &self.failover
            && fo.new_leader.is_none()
        {
            p.push(format!("no replica took the Lease over after replica {} was killed", fo.killed));
        }
        if self.audit_verify.0 != 0 {
            p.push(format!("audit verify exited {}: {}", self.audit_verify.0, self.audit_verify.1));
        }
        p
    }
}

impl fmt::Display for LoadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let total = self.readers + self.patchers;
        let replicas = match self.replicas {
            1 => "1 operator replica".to_owned(),
            n => format!("{n} operator replicas (leader election)"),
        };
        writeln!(
            f,
            "sb-load: {} reads + {} patches = {total} requests, {replicas}, {}",
            self.readers, self.patchers, self.database
        )?;
        let phases: Vec<String> = self.final_phases.iter().map(|(k, v)| format!("{k} {v}")).collect();
        writeln!(f, "  final phases          {}", phases.join(", "))?;
        writeln!(f, "  create → Delivered    {}", self.create_to_delivered)?;
        writeln!(f, "  approve → Delivered   {}", self.approve_to_delivered)?;
        writeln!(f, "  approve → Executed    {}", self.approve_to_executed)?;
        writeln!(f, "  create → final        {}", self.create_to_final)?;
        writeln!(f, "  approve → Queued      {}", self.approve_to_queued)?;
        writeln!(f, "  Queued → done         {}", self.queued_to_done)?;
        writeln!(
            f,
            "  throughput            {:.1} requests/s to their final phase ({total} in {:.1}s)",
            self.throughput(),
            self.elapsed.as_secs_f64()
        )?;
        let s = &self.store;
        writeln!(
            f,
            "  jobs                  {} for {total} requests; {} handed out again after a lost claim; {} Queued/Leased left; {} sealed results left",
            s.jobs, s.claimed_again, s.unfinished, s.results_left
        )?;
        writeln!(
            f,
            "  audit                 {} events; {} recorded twice; verify exit {}: {}",
            s.audit_events,
            s.duplicates.len(),
            self.audit_verify.0,
            self.audit_verify.1.lines().next().unwrap_or_default()
        )?;
        writeln!(
            f,
            "  provider              {} patches checked in OpenBao, {} not at exactly one new version; {} deliveries wrong",
            self.final_phases.get("SecretPatch/Executed").copied().unwrap_or(0),
            self.provider_problems.len(),
            self.delivery_problems.len()
        )?;
        if !self.reconciles.is_empty() {
            let shown: Vec<String> = self.reconciles.iter().map(|(c, n)| format!("{n} {c}")).collect();
            let all: u64 = self.reconciles.values().sum();
            // A killed or restarted replica's counters are gone with its process.
            let whose = if self.replicas > 1 { ", by the replicas running at the end" } else { "" };
            writeln!(
                f,
                "  reconciles            {} ({:.1} per request{whose})",
                shown.join(", "),
                all as f64 / total.max(1) as f64
            )?;
        }
        if !self.slowest.is_empty() {
            writeln!(f, "  slowest after approval {}", self.slowest.join("; "))?;
        }
        writeln!(
            f,
            "  agent                 {} claims, completions or heartbeats sent again after a failure",
            self.agent_retries
        )?;
        if let Some(fo) = &self.failover {
            let taken = match (fo.new_leader, fo.takeover) {
                (Some(l), Some(t)) => format!("replica {l} elected {:.1}s later", t.as_secs_f64()),
                _ => "no replica took over".to_owned(),
            };
            writeln!(
                f,
                "  failover              SIGKILLed replica {} (the leader) at {}/{total} final; {taken}; Service connections per replica {:?}",
                fo.killed, fo.at_final, fo.connections
            )?;
        }
        if self.replicas > 1 {
            let restarts: Vec<String> = self
                .restarts
                .iter()
                .map(|r| {
                    let why = if r.lease_lost { "stepped down: lease renewal unanswered" } else { "exited" };
                    format!("replica {} at {:.1}s ({why})", r.replica, r.after.as_secs_f64())
                })
                .collect();
            let restarts = if restarts.is_empty() { "none".to_owned() } else { restarts.join(", ") };
            writeln!(
                f,
                "  leadership            {} elections; restarted after exiting on their own: {restarts}",
                self.elections
            )?;
        }
        let problems = self.problems();
        if problems.is_empty() {
            write!(f, "  verdict               every request final, none lost, none duplicated")
        } else {
            write!(f, "  PROBLEMS\n    {}", problems.join("\n    "))
        }
    }
}
