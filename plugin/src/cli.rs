//! The command line: every subcommand with an example in its `--help`.

use crate::context::ConnectArgs;
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use std::time::Duration;

/// What `--version` prints: the version and the git commit the binary was built from
/// (`unknown` when built from a source tarball; scripts/build-version.rs).
pub const VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (commit ", env!("SB_GIT_COMMIT"), ")");

/// Secrets Bridge: read, patch and approve secrets held outside the cluster.
#[derive(Parser, Debug)]
#[command(name = "kubectl sb", bin_name = "kubectl sb", version = VERSION, about)]
#[command(after_help = "Examples:
  kubectl sb read edge/vault:team-a/db --key password --reason \"INC-4211: rotate reporting job\"
  kubectl sb approve srr/db-x7k2p --reason \"matches INC-4211\"
  kubectl sb reveal db-x7k2p -o env
  kubectl sb patch edge/vault:team-a/db password=@new-password.txt --reason \"quarterly rotation\"
  kubectl sb status -w
  kubectl sb trust edge SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU")]
pub struct Cli {
    #[command(flatten)]
    pub connect: ConnectArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Ask to read keys of a secret; the value is sealed to a key only you hold.
    #[command(after_help = "Examples:
  kubectl sb read edge/vault:team-a/db --key password --reason \"INC-4211: rotate reporting job\"
  kubectl sb read edge/aws:prod/team-a-api -n team-a --reason \"debug login\" --wait --timeout 15m")]
    Read(ReadArgs),
    /// Approve a read request or a patch (you cannot approve your own).
    #[command(after_help = "Examples:
  kubectl sb approve srr/db-x7k2p --reason \"matches INC-4211\"
  kubectl sb approve secretpatch/rotate-db -n team-a --reason \"change CHG-881 approved\"
  kubectl approve sp/rotate-db --reason \"ok\"          # same command, via the kubectl-approve name")]
    Approve(DecideArgs),
    /// Deny a read request or a patch; one denial ends it.
    #[command(after_help = "Example:
  kubectl sb deny srr/db-x7k2p --reason \"no ticket for this\"")]
    Deny(DecideArgs),
    /// Confirm a request someone else submitted in your name (e.g. a SecretPatch ArgoCD synced
    /// from git); until you do, no approval counts.
    #[command(after_help = "Example:
  kubectl sb confirm sp/rotate-db -n team-a

A request whose spec.requester is you but which another user created (the annotation
secrets-bridge.io/submitted-by names them) stays Pending with reason
AwaitingRequesterConfirmation until you confirm it. Only you can: the admission policy
accepts the entry from the requester alone.")]
    Confirm(ConfirmArgs),
    /// Open a delivered read once: prints the values, then ends the delivery and deletes your key.
    #[command(after_help = "Examples:
  kubectl sb reveal db-x7k2p                    # KEY='value' lines
  kubectl sb reveal db-x7k2p -o json --to creds.json   # written 0600, nothing printed")]
    Reveal(RevealArgs),
    /// Change keys of a secret with values sealed to the agent (never typed on the command line).
    #[command(after_help = "Examples:
  kubectl sb patch edge/vault:team-a/db password=@new-password.txt --reason \"quarterly rotation\"
  pwgen 32 1 | tr -d '\\n' | kubectl sb patch edge/vault:team-a/db password=- --delete old_password --reason \"rotation\"
  kubectl sb patch edge/vault:team-a/db password=@pw.txt --name rotate-db --reason \"rotation\" --dry-run -o yaml > rotate-db.yaml

Values are read byte for byte from the file or from stdin. `KEY=value` is refused: a value
on the command line lands in shell history and is visible to other users through `ps`.

Before sealing, the agent's signature over its sealing key is checked against the agent
fingerprint you trust (known_agents.json; the first patch to an agent records it, see
`kubectl sb trust --help`). A key not signed by that fingerprint is refused.")]
    Patch(PatchArgs),
    /// List read requests and patches with phase, approvals and age; -w follows them.
    #[command(after_help = "Examples:
  kubectl sb status
  kubectl sb status -w srr/db-x7k2p")]
    Status(StatusArgs),
    /// List the metadata (never values) of secrets under a prefix, once or on a schedule.
    #[command(after_help = "Example:
  kubectl sb discover edge/vault --prefix team-a/ --every 6h")]
    Discover(DiscoverArgs),
    /// List the discovered secrets (the catalog), optionally filtered by label.
    #[command(after_help = "Examples:
  kubectl sb catalog
  kubectl sb catalog -l owner=payments     # short for catalog.secrets-bridge.io/owner=payments")]
    Catalog(CatalogArgs),
    /// Pin an agent's key fingerprint for this cluster: patches seal only to keys signed with it.
    #[command(after_help = "Examples:
  kubectl sb trust edge SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU
  kubectl sb trust edge SHA256:uU0nuZNNPgilLlLX2n2r+sSE7+N6U4DukIj3rOLvzek --context prod   # after a rotation

Take the fingerprint from the agent's admin (`sb-agent identity new` prints it), not from
the cluster: the cluster is what the pin protects you from. Without a pin, the first
`kubectl sb patch` to an agent trusts the key it presents and records it. Pins are kept
per cluster (API server URL) in known_agents.json in your config dir ($SB_CONFIG_DIR, else
$XDG_CONFIG_HOME/secrets-bridge, else ~/.config/secrets-bridge).")]
    Trust(TrustArgs),
    /// Print a shell completion script for kubectl-sb (bash, zsh or fish); needs no cluster.
    #[command(after_help = "Examples:
  kubectl sb completion bash > ~/.local/share/bash-completion/completions/kubectl-sb
  kubectl sb completion zsh > \"${fpath[1]}/_kubectl-sb\"
  kubectl sb completion fish > ~/.config/fish/completions/kubectl-sb.fish

The scripts complete the command as kubectl-sb. Through kubectl itself (kubectl sb <TAB>),
kubectl 1.26 and later runs an executable named kubectl_complete-sb from your PATH; the
release archive ships one next to kubectl-sb (it runs `kubectl-sb __complete`).")]
    Completion(CompletionArgs),
    /// kubectl's plugin completion protocol (what kubectl_complete-sb runs): prints the
    /// candidates for the last word, then `:<directive>`.
    #[command(
        name = "__complete",
        hide = true,
        after_help = "Example:
  kubectl sb __complete re          # read, reveal"
    )]
    Complete {
        /// The words after `kubectl sb`, the last one being completed.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Shell {
    Bash,
    Zsh,
    Fish,
}

#[derive(Args, Debug)]
pub struct CompletionArgs {
    /// The shell to print the script for.
    #[arg(value_enum)]
    pub shell: Shell,
}

#[derive(Args, Debug)]
pub struct ReadArgs {
    /// The secret: <agent>/<provider>:<ref>, e.g. edge/vault:team-a/db.
    pub target: String,
    /// A key to read (repeat for several; none means every key).
    #[arg(long = "key", short = 'k', value_name = "KEY")]
    pub keys: Vec<String>,
    /// Why you need the value; approvers see it and the audit log keeps it.
    #[arg(long)]
    pub reason: String,
    /// Name of the request (default: generated from the ref).
    #[arg(long)]
    pub name: Option<String>,
    /// How long the sealed delivery waits for you before it is deleted, e.g. 15m.
    #[arg(long, value_parser = parse_duration, default_value = "15m")]
    pub ttl: Duration,
    /// Keep the delivery until it expires instead of deleting it on the first reveal.
    #[arg(long)]
    pub until_expiry: bool,
    /// Follow the request until it is delivered (or denied, failed, expired).
    #[arg(long)]
    pub wait: bool,
    /// How long --wait follows the request, e.g. 10m.
    #[arg(long, value_parser = parse_duration, default_value = "10m")]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct DecideArgs {
    /// The request: <kind>/<name> with kind srr, secretreadrequest, sp or secretpatch.
    pub object: String,
    /// Why you decide so; recorded with your decision.
    #[arg(long)]
    pub reason: String,
}

#[derive(Args, Debug)]
pub struct ConfirmArgs {
    /// The request: <kind>/<name> with kind srr, secretreadrequest, sp or secretpatch.
    pub object: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum RevealFormat {
    /// KEY='value' lines, shell-quoted.
    Env,
    /// One JSON object of key to value.
    Json,
    /// One YAML mapping of key to value.
    Yaml,
    /// The bare value (only when the delivery holds exactly one key).
    Raw,
}

#[derive(Args, Debug)]
pub struct RevealArgs {
    /// Name of the read request.
    pub name: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value = "env")]
    pub format: RevealFormat,
    /// Write the values to this file (created 0600) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub to: Option<PathBuf>,
    /// How long to wait for the delivery when it is not there yet, e.g. 5m.
    #[arg(long, value_parser = parse_duration, default_value = "5m")]
    pub timeout: Duration,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ManifestFormat {
    Yaml,
    Json,
}

#[derive(Args, Debug)]
pub struct PatchArgs {
    /// The secret: <agent>/<provider>:<ref>.
    pub target: String,
    /// New values as KEY=@FILE or KEY=- (stdin). Never KEY=value.
    #[arg(value_name = "KEY=@FILE|KEY=-")]
    pub values: Vec<String>,
    /// A key to remove (repeat for several).
    #[arg(long = "delete", value_name = "KEY")]
    pub delete: Vec<String>,
    /// Why the change is needed; approvers see it and the audit log keeps it.
    #[arg(long)]
    pub reason: String,
    /// Name of the SecretPatch (default: generated). The sealed values are bound to it.
    #[arg(long)]
    pub name: Option<String>,
    /// Apply only if the provider's current version is this one.
    #[arg(long, value_name = "VERSION")]
    pub expected_version: Option<String>,
    /// An ArgoCD Application that consumes the secret, <namespace>/<name> (repeat for
    /// several): the patch ends Applied once each has synced and is healthy after the change
    /// (spec.observe; needs an operator run with --gitops-observation).
    #[arg(long = "observe", value_name = "NAMESPACE/APP")]
    pub observe: Vec<String>,
    /// How long to wait for the observed rollout before AppliedUnverified, e.g. 10m.
    #[arg(long, value_parser = parse_duration, default_value = "10m", requires = "observe")]
    pub observe_timeout: Duration,
    /// Print the manifest instead of creating it (safe to commit: values are sealed).
    #[arg(long, num_args = 0..=1, default_missing_value = "client", value_name = "client")]
    pub dry_run: Option<String>,
    /// Print the object as yaml or json.
    #[arg(short = 'o', long = "output", value_enum)]
    pub output: Option<ManifestFormat>,
}

#[derive(Args, Debug)]
pub struct TrustArgs {
    /// The agent's name (its AgentRegistration), e.g. edge.
    pub agent: String,
    /// The fingerprint of the agent's authentication key: SHA256: and 43 base64 characters.
    pub fingerprint: String,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// One request to show: <kind>/<name> (default: every read request and patch).
    pub object: Option<String>,
    /// Follow changes (until the one request finishes, or Ctrl-C / --timeout).
    #[arg(short = 'w', long)]
    pub watch: bool,
    /// How long -w follows, e.g. 30m.
    #[arg(long, value_parser = parse_duration, default_value = "1h")]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct DiscoverArgs {
    /// <agent>/<provider>, e.g. edge/vault.
    pub source: String,
    /// Only secrets whose reference starts with this prefix.
    #[arg(long)]
    pub prefix: Option<String>,
    /// Run again at this interval (e.g. 30m, 6h); default once.
    #[arg(long, value_name = "INTERVAL")]
    pub every: Option<String>,
    /// Name of the DiscoveryJob (default: generated).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Args, Debug)]
pub struct CatalogArgs {
    /// Label selector; a key without '/' means catalog.secrets-bridge.io/<key>.
    #[arg(short = 'l', long = "selector")]
    pub selector: Option<String>,
}

/// `90s`, `15m`, `2h`, or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (digits, unit) = match text.find(|c: char| !c.is_ascii_digit()) {
        Some(at) => text.split_at(at),
        None => (text, "s"),
    };
    let number: u64 = digits.parse().map_err(|_| format!("{text:?} is not a duration like 90s, 15m or 2h"))?;
    let seconds = match unit {
        "s" => Some(number),
        "m" => number.checked_mul(60),
        "h" => number.checked_mul(3600),
        _ => None,
    };
    seconds.map(Duration::from_secs).ok_or_else(|| format!("{text:?} is not a duration like 90s, 15m or 2h"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_command_has_an_example_in_its_help() {
        let mut cli = Cli::command();
        for sub in cli.get_subcommands_mut() {
            let help = sub.render_long_help().to_string();
            assert!(help.contains("kubectl sb") || help.contains("kubectl approve"), "{}: {help}", sub.get_name());
            assert!(help.contains("Example"), "{}", sub.get_name());
        }
        Cli::command().debug_assert();
    }

    #[test]
    fn durations_read_like_kubectl() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("15m"), Ok(Duration::from_secs(900)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn a_duration_too_big_for_its_unit_is_refused_not_a_panic() {
        // `--ttl 5124095576030432h` overflowed the multiplication (a panic in debug builds, a
        // wrapped, far shorter duration in release ones); the `durations` fuzz target checks it.
        for text in ["5124095576030432h", "307445734561825861m", "18446744073709551616"] {
            assert!(parse_duration(text).unwrap_err().contains("is not a duration"), "{text:?}");
        }
    }
}
