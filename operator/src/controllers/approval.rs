//! The approval step of the request controllers: the namespace's required approvals, each
//! approver's authority re-checked with a SubjectAccessReview for the custom verb `approve`
//! on that very object, then the pure count of [`crate::policy::approvals::tally`].

use super::{Context, Error};
use crate::policy::approvals::{Tally, required_approvals, tally};
use k8s_openapi::api::authorization::v1::{ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec};
use k8s_openapi::api::core::v1::Namespace;
use kube::Api;
use kube::api::PostParams;
use sb_core::crd::Approval;
use std::collections::{BTreeMap, BTreeSet};

/// The object approvals are counted for.
pub struct ApprovalSubject<'a> {
    /// Plural resource name: `secretreadrequests` or `secretpatches`.
    pub resource: &'a str,
    pub namespace: &'a str,
    pub name: &'a str,
    pub requester: &'a str,
    /// Who submitted it for the requester, if someone else; never counts as an approver.
    pub submitter: Option<&'a str>,
    pub approvals: &'a [Approval],
}

/// The namespace's required approvals, or a message saying why its annotation is invalid.
pub async fn required_for(ctx: &Context, namespace: &str) -> Result<Result<u32, String>, Error> {
    let ns = Api::<Namespace>::all(ctx.client.clone()).get(namespace).await?;
    let annotations = ns.metadata.annotations.unwrap_or_default();
    Ok(required_approvals(annotations.iter()))
}

/// Whether `user`, as a member of `groups`, holds `approve` on the object. The groups come
/// from the approval entry, where the admission policy accepted only groups the
/// authenticated user belongs to; without them a group-bound approver would never count.
async fn may_approve(
    ctx: &Context,
    subject: &ApprovalSubject<'_>,
    user: &str,
    groups: &[String],
) -> Result<bool, Error> {
    let review = SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: Some(user.to_owned()),
            groups: (!groups.is_empty()).then(|| groups.to_vec()),
            resource_attributes: Some(ResourceAttributes {
                group: Some(sb_core::crd::GROUP.into()),
                resource: Some(subject.resource.into()),
                namespace: Some(subject.namespace.into()),
                name: Some(subject.name.into()),
                verb: Some("approve".into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    let answer = Api::<SubjectAccessReview>::all(ctx.client.clone()).create(&PostParams::default(), &review).await?;
    Ok(answer.status.is_some_and(|s| s.allowed))
}

/// Counts the approvals of `subject` requiring `required` of them.
pub async fn count(ctx: &Context, subject: &ApprovalSubject<'_>, required: u32) -> Result<Tally, Error> {
    let mut authorized = BTreeSet::new();
    // Each approver decides once; their first entry is the one the count uses.
    let mut first: BTreeMap<&str, &[String]> = BTreeMap::new();
    for entry in subject.approvals {
        first.entry(entry.approver.as_str()).or_insert(entry.groups.as_slice());
    }
    for (user, groups) in first {
        if user != subject.requester
            && Some(user) != subject.submitter
            && may_approve(ctx, subject, user, groups).await?
        {
            authorized.insert(user.to_owned());
        }
    }
    Ok(tally(subject.requester, subject.approvals, required, &|u| authorized.contains(u)))
}

/// Where a request stands before it has a job.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Gate {
    /// Enough valid approvals: queue the job.
    Approved { approvers: Vec<String>, summary: String },
    /// A valid Deny.
    Denied { by: String, reason: String, summary: String },
    /// The approval window ended without enough approvals.
    Expired { summary: String },
    /// Still waiting; look again by `deadline` at the latest.
    Waiting { summary: String, deadline: chrono::DateTime<chrono::Utc> },
}

/// Decides from the count, the creation time and the approval window (pure).
pub fn decide(
    tally: &Tally,
    created: chrono::DateTime<chrono::Utc>,
    window: std::time::Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> Gate {
    use crate::policy::approvals::Verdict;
    let summary = tally.summary();
    let deadline = created + chrono::Duration::from_std(window).unwrap_or(chrono::Duration::days(1));
    match &tally.verdict {
        Verdict::Denied { by, reason } => Gate::Denied { by: by.clone(), reason: reason.clone(), summary },
        Verdict::Approved { approvers } => Gate::Approved { approvers: approvers.clone(), summary },
        Verdict::Waiting { .. } if now >= deadline => Gate::Expired { summary },
        Verdict::Waiting { .. } => Gate::Waiting { summary, deadline },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::approvals::Verdict;
    use std::time::Duration;

    fn tally_of(verdict: Verdict) -> Tally {
        Tally { verdict, required: 1, counted: 0, ignored: vec![] }
    }

    #[test]
    fn an_unapproved_request_expires_when_the_window_ends_but_not_before() {
        let created = chrono::Utc::now() - chrono::Duration::hours(2);
        let waiting = tally_of(Verdict::Waiting { have: 0, need: 1 });
        assert!(matches!(
            decide(&waiting, created, Duration::from_secs(3600), chrono::Utc::now()),
            Gate::Expired { .. }
        ));
        assert!(matches!(
            decide(&waiting, created, Duration::from_secs(24 * 3600), chrono::Utc::now()),
            Gate::Waiting { .. }
        ));
    }

    #[test]
    fn a_deny_wins_over_the_window_and_approval_is_reported_with_its_approvers() {
        let created = chrono::Utc::now() - chrono::Duration::hours(48);
        let denied = tally_of(Verdict::Denied { by: "carol".into(), reason: "no ticket".into() });
        assert!(
            matches!(decide(&denied, created, Duration::from_secs(60), chrono::Utc::now()), Gate::Denied { by, .. } if by == "carol")
        );
        let approved = tally_of(Verdict::Approved { approvers: vec!["bob".into()] });
        let gate = decide(&approved, chrono::Utc::now(), Duration::from_secs(60), chrono::Utc::now());
        assert_eq!(gate, Gate::Approved { approvers: vec!["bob".into()], summary: "0/1".into() });
    }
}
