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
    Ok(())
}

fn ensure(ok: bool, what: &str) -> anyhow::Result<()> {
    if !ok {
        bail!("{what} did not succeed (see its output above)");
    }
    Ok(())
}
