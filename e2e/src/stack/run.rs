//! Running the real kubectl (and through it the plugin) as one of the stack's users.

use super::Stack;
use anyhow::Context;
use std::path::Path;
use std::process::{Command, Stdio};

/// What a command printed.
#[derive(Debug, Clone)]
pub struct Run {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Panics with both streams unless the command succeeded.
    pub fn expect_ok(self, what: &str) -> Self {
        assert!(self.ok, "{what} failed\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self
    }

    /// Panics unless the command failed; returns stderr.
    pub fn expect_err(self, what: &str) -> String {
        assert!(!self.ok, "{what} unexpectedly succeeded\nstdout:\n{}\nstderr:\n{}", self.stdout, self.stderr);
        self.stderr
    }
}

impl Stack {
    /// Runs `kubectl <args>` as `user` with the plugin on PATH (so `kubectl sb ...` and
    /// `kubectl approve ...` are the real plugin), in `work_dir` when given (for `@file`
    /// arguments). In narrating mode, prints the command and its output.
    pub async fn kubectl_in(
        &self,
        user: &str,
        args: &[&str],
        stdin: Option<&str>,
        work_dir: Option<&Path>,
    ) -> anyhow::Result<Run> {
        let kubeconfig = self.cluster.server.kubeconfig_for(user)?;
        let home = self.homes.path().join(user.replace([':', '/'], "_"));
        std::fs::create_dir_all(&home)?;
        let path = format!("{}:{}", self.plugin_dir.display(), std::env::var("PATH").unwrap_or_default());
        let kubectl = crate::kubectl_path()?;
        let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        let stdin_text = stdin.map(str::to_owned);
        let dir = work_dir.map(Path::to_path_buf).unwrap_or_else(|| home.clone());
        let shown = args.clone();
        let run = tokio::task::spawn_blocking(move || -> anyhow::Result<Run> {
            use std::io::Write;
            let mut child = Command::new(&kubectl)
                .args(&args)
                .env("KUBECONFIG", &kubeconfig)
                .env("HOME", &home)
                .env("KUBECACHEDIR", home.join(".kube-cache"))
                .env("PATH", path)
                .env_remove("SB_CONFIG_DIR")
                .env_remove("XDG_CONFIG_HOME")
                .current_dir(dir)
                .stdin(if stdin_text.is_some() { Stdio::piped() } else { Stdio::null() })
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .with_context(|| format!("running {}", kubectl.display()))?;
            if let Some(text) = stdin_text {
                child.stdin.take().expect("piped").write_all(text.as_bytes())?;
            }
            let out = child.wait_with_output()?;
            Ok(Run {
                ok: out.status.success(),
                stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
                stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            })
        })
        .await??;
        if self.narrate {
            narrate(user, &shown, &run);
        }
        Ok(run)
    }

    /// Runs `kubectl <args>` as `user`; panics only if kubectl cannot be started.
    pub async fn kubectl(&self, user: &str, args: &[&str]) -> Run {
        self.kubectl_in(user, args, None, None).await.expect("kubectl runs")
    }

    /// Runs `kubectl <args>` as `user` with `stdin`.
    pub async fn kubectl_stdin(&self, user: &str, args: &[&str], stdin: &str) -> Run {
        self.kubectl_in(user, args, Some(stdin), None).await.expect("kubectl runs")
    }

    /// The user's working directory (their HOME), where `@file` values are read from.
    pub fn home_of(&self, user: &str) -> std::path::PathBuf {
        let home = self.homes.path().join(user.replace([':', '/'], "_"));
        let _ = std::fs::create_dir_all(&home);
        home
    }
}

/// Prints a command as a person would type it, then what it printed, indented.
fn narrate(user: &str, args: &[String], run: &Run) {
    println!("\n[{user}]$ kubectl {}", shell_words(args));
    for line in run.stdout.lines().chain(run.stderr.lines()) {
        println!("    {line}");
    }
    if !run.ok {
        println!("    (exit status: failure)");
    }
}

/// Quotes arguments with spaces or shell characters so a printed command can be pasted.
fn shell_words(args: &[String]) -> String {
    args.iter()
        .map(|a| {
            if !a.is_empty() && a.chars().all(|c| c.is_ascii_alphanumeric() || "-_=./:@,+%".contains(c)) {
                a.clone()
            } else {
                format!("'{}'", a.replace('\'', "'\\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}
