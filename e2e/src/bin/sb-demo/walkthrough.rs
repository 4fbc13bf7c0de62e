//! The tutorial's steps. Each prints what a person would do and see.

use anyhow::{Context, bail};
use sb_core::crd::{DiscoveryJob, DiscoveryPhase, PatchPhase, ReadPhase};
use sb_e2e::stack::Stack;
use std::collections::BTreeMap;

fn section(title: &str, text: &str) {
    println!("\n\n=== {title} ===\n{text}");
}

fn note(text: &str) {
    println!("\n# {text}");
}

pub async fn run(s: &Stack) -> anyhow::Result<()> {
    let db = s.ref_of("payments/db");
    let password = format!("pw-{}", sb_e2e::stack::random_suffix());
    s.bao.put(&db, &BTreeMap::from([("username", "payments"), ("password", password.as_str())])).await?;
    s.bao.label(&db, &BTreeMap::from([("owner", "payments")])).await?;
    let api = s.ref_of("payments/api");
    s.moto
        .create(&api, &BTreeMap::from([("api_key", "ak-old"), ("client_id", "payments-web")]), &[("owner", "payments")])
        .await?;
    section(
        "0. The setup",
        &format!(
            "The agent `edge` runs next to the secrets and calls out to the operator. Its keys were born\n\
             in its own boundary; the admin ran, there:\n\n\
             admin$ sb-agent identity new --agent-id edge --out identity.json\n{}\n\
             stored identity.json as a Secret in the edge cluster (the control plane never sees it), and\n\
             registered the printed public key in AgentRegistration edge (examples/agentregistration.yaml).\n\
             OpenBao holds secret/{db} (username, password) and AWS Secrets Manager holds {api} (api_key, client_id).",
            s.agent.identity_snippet.trim_end()
        ),
    );
    s.kubectl("admin", &["get", "agentregistrations"]).await;
    note("The operator publishes the agent's sealing key with the agent's own signature over it:");
    s.kubectl(
        "admin",
        &[
            "get",
            "agentregistration",
            "edge",
            "-o",
            "jsonpath={.status.sealingKeyId} signed by {.status.sealingKeySignedBy}{\"\\n\"}",
        ],
    )
    .await;

    section("1. Read a secret, with someone else's approval", "alice needs the database password for an incident.");
    let target = format!("edge/vault:{db}");
    let read = s
        .kubectl(
            "alice",
            &[
                "sb",
                "read",
                &target,
                "--key",
                "password",
                "--reason",
                "INC-4211: rotate the reporting job",
                "--name",
                "db-password",
                "-n",
                "team-a",
            ],
        )
        .await;
    ensure(read.ok, "kubectl sb read")?;
    note("alice cannot approve her own request, even though she holds the approver role:");
    s.kubectl("alice", &["approve", "srr/db-password", "--reason", "it's me", "-n", "team-a"]).await;
    note("bob, an approver, looks at pending requests and approves:");
    s.kubectl("bob", &["sb", "status", "-n", "team-a"]).await;
    ensure(
        s.kubectl("bob", &["approve", "srr/db-password", "--reason", "matches INC-4211", "-n", "team-a"]).await.ok,
        "approve",
    )?;
    note("The operator queues a job; the agent reads OpenBao and seals the value to alice's key.");
    s.wait_read("db-password", ReadPhase::Delivered).await?;
    s.kubectl("alice", &["get", "secretreadrequests", "-n", "team-a"]).await;
    note("alice reveals it. The sealed delivery is deleted, so it opens once:");
    let shown = s.kubectl("alice", &["sb", "reveal", "db-password", "-n", "team-a"]).await;
    ensure(shown.ok && shown.stdout.contains(&password), "reveal")?;
    s.kubectl("alice", &["sb", "reveal", "db-password", "-n", "team-a"]).await;

    section(
        "2. Change a secret; untouched keys stay",
        "alice rotates the password. The value comes from a file, never the command line.",
    );
    let home = s.home_of("alice");
    std::fs::write(home.join("new-password.txt"), format!("pw-{}", sb_e2e::stack::random_suffix()))?;
    println!("\n[alice]$ openssl rand -base64 24 > new-password.txt   # (the demo wrote a random one)");
    let args = [
        "sb",
        "patch",
        &target,
        "password=@new-password.txt",
        "--reason",
        "quarterly rotation",
        "--name",
        "rotate-db",
        "-n",
        "team-a",
    ];
    ensure(s.kubectl_in("alice", &args, None, Some(&home)).await?.ok, "kubectl sb patch")?;
    ensure(
        s.kubectl("bob", &["approve", "sp/rotate-db", "--reason", "rotation ticket OPS-7", "-n", "team-a"]).await.ok,
        "approve",
    )?;
    s.wait_patch("rotate-db", PatchPhase::Executed).await?;
    s.kubectl("alice", &["get", "secretpatches", "-n", "team-a"]).await;
    let now = s.bao.get(&db).await?;
    note(&format!(
        "OpenBao secret/{db} now has keys {:?}; username is still {:?}.",
        now.keys().collect::<Vec<_>>(),
        now["username"]
    ));

    section(
        "3. The same change as a manifest in git",
        "The manifest holds only ciphertext sealed to the agent, bound to this name and namespace,\n\
         so it can be committed; ArgoCD (examples/argocd-application.yaml) or kubectl applies it.",
    );
    std::fs::write(home.join("api-key.txt"), format!("ak-{}", sb_e2e::stack::random_suffix()))?;
    let target_aws = format!("edge/aws:{api}");
    let args = [
        "sb",
        "patch",
        &target_aws,
        "api_key=@api-key.txt",
        "--reason",
        "rotate the API key",
        "--name",
        "rotate-api",
        "-n",
        "team-a",
        "--dry-run",
        "-o",
        "yaml",
    ];
    let manifest = s.kubectl_in("alice", &args, None, Some(&home)).await?;
    ensure(manifest.ok, "patch --dry-run")?;
    std::fs::write(home.join("rotate-api.yaml"), &manifest.stdout)?;
    println!("\n[alice]$ # saved as rotate-api.yaml, committed, and applied:");
    ensure(s.kubectl_in("alice", &["apply", "-f", "rotate-api.yaml"], None, Some(&home)).await?.ok, "apply")?;
    ensure(
        s.kubectl("bob", &["sb", "approve", "sp/rotate-api", "--reason", "ok", "-n", "team-a"]).await.ok,
        "approve",
    )?;
    s.wait_patch("rotate-api", PatchPhase::Executed).await?;
    s.kubectl("bob", &["sb", "status", "sp/rotate-api", "-n", "team-a"]).await;
    let now = s.moto.get(&api).await?;
    note(&format!(
        "AWS {api} now has keys {:?}; client_id is still {:?}.",
        now.keys().collect::<Vec<_>>(),
        now["client_id"]
    ));

    section("4. Discover what exists", "An admin catalogs the vault; values are never read, only names and labels.");
    let args =
        ["sb", "discover", "edge/vault", "--prefix", s.prefix.as_str(), "--name", "catalog-vault", "-n", "team-a"];
    ensure(s.kubectl("admin", &args).await.ok, "discover")?;
    let jobs: kube::Api<DiscoveryJob> = kube::Api::namespaced(s.admin.clone(), "team-a");
    s.wait(&jobs, "catalog-vault", "discovery Succeeded", |j| {
        j.status.as_ref().and_then(|st| st.phase) == Some(DiscoveryPhase::Succeeded)
    })
    .await
    .context("discovery")?;
    s.kubectl("alice", &["get", "discoveredsecrets", "-n", "team-a", "-l", "catalog.secrets-bridge.io/owner=payments"])
        .await;
    s.kubectl("alice", &["sb", "catalog", "-l", "owner=payments", "-n", "team-a"]).await;

    section(
        "5. Observe the rollout through ArgoCD",
        "A patch can name the ArgoCD Applications that consume the secret (or an Application can\n\
         declare it with the annotation secrets-bridge.io/consumes). The operator, run with\n\
         --gitops-observation, watches them read-only and ends the patch Applied once each is Synced\n\
         and Healthy after the change (docs/gitops.md).",
    );
    sb_e2e::argocd::create_application(&s.admin, "argocd", "payments-web", &[]).await?;
    std::fs::write(home.join("newer-password.txt"), format!("pw-{}", sb_e2e::stack::random_suffix()))?;
    let args = [
        "sb",
        "patch",
        &target,
        "password=@newer-password.txt",
        "--observe",
        "argocd/payments-web",
        "--reason",
        "rotation, rolled out by ArgoCD",
        "--name",
        "rotate-db-2",
        "-n",
        "team-a",
    ];
    ensure(s.kubectl_in("alice", &args, None, Some(&home)).await?.ok, "kubectl sb patch --observe")?;
    ensure(s.kubectl("bob", &["approve", "sp/rotate-db-2", "--reason", "OPS-8", "-n", "team-a"]).await.ok, "approve")?;
    let executed = s
        .wait(&s.patches(), "rotate-db-2", "executed", |p| p.status.as_ref().is_some_and(|st| st.executed_at.is_some()))
        .await?;
    s.kubectl("alice", &["sb", "status", "sp/rotate-db-2", "-n", "team-a"]).await;
    let at = executed.status.and_then(|st| st.executed_at).context("executedAt")?.0.as_second();
    let after = chrono::DateTime::from_timestamp(at + 1, 0).context("time")?;
    note(
        "ArgoCD syncs payments-web and its pods roll; the demo writes the Application's status as ArgoCD's controller does:",
    );
    let state = sb_e2e::argocd::AppState {
        sync: "Synced",
        health: "Healthy",
        health_message: None,
        reconciled_at: after,
        operation: Some(sb_e2e::argocd::Operation {
            phase: "Succeeded",
            started_at: after,
            finished_at: Some(after),
            message: "successfully synced (all tasks run)".into(),
        }),
    };
    sb_e2e::argocd::write_state(&s.admin, "argocd", "payments-web", &state).await?;
    s.wait_patch("rotate-db-2", PatchPhase::Applied).await?;
    s.kubectl("alice", &["get", "secretpatches", "-n", "team-a"]).await;
    s.kubectl("alice", &["sb", "status", "sp/rotate-db-2", "-n", "team-a"]).await;
    Ok(())
}

fn ensure(ok: bool, what: &str) -> anyhow::Result<()> {
    if !ok {
        bail!("{what} did not succeed (see its output above)");
    }
    Ok(())
}
