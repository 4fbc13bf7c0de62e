//! A plugin run read line by line while it runs, so a test takes its next step once the
//! plugin has shown the state it waits for, instead of after a fixed pause.

use super::{Env, Run};
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;

/// How long a test waits for one expected line, and for the exit.
const WAIT: Duration = Duration::from_secs(60);

/// A running `kubectl-sb`.
pub struct Follow {
    child: Child,
    lines: mpsc::UnboundedReceiver<Line>,
    stdout: String,
    stderr: String,
}

enum Line {
    Out(String),
    Err(String),
}

fn forward<R: AsyncRead + Unpin + Send + 'static>(
    stream: R,
    tag: fn(String) -> Line,
    lines: mpsc::UnboundedSender<Line>,
) {
    tokio::spawn(async move {
        let mut reader = BufReader::new(stream).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if lines.send(tag(line)).is_err() {
                return;
            }
        }
    });
}

impl Env {
    /// Starts `kubectl-sb --kubeconfig <user's> <args>` in `user`'s environment, as
    /// [`Env::sb`] runs it, and returns while it runs.
    pub fn follow(&self, user: &str, args: &[&str]) -> Follow {
        let kubeconfig = self.cluster.server.kubeconfig_for(user).unwrap();
        let home = self.home(user);
        let mut child = Command::new(env!("CARGO_BIN_EXE_kubectl-sb"))
            .arg("--kubeconfig")
            .arg(&kubeconfig)
            .args(args)
            .env("HOME", &home)
            .env("SB_CONFIG_DIR", home.join("sb"))
            .env("KUBECACHEDIR", home.join(".kube-cache"))
            .env_remove("XDG_CONFIG_HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("spawning the plugin");
        let (sender, lines) = mpsc::unbounded_channel();
        forward(child.stdout.take().unwrap(), Line::Out, sender.clone());
        forward(child.stderr.take().unwrap(), Line::Err, sender);
        Follow { child, lines, stdout: String::new(), stderr: String::new() }
    }

    /// Waits for `follow` to exit; everything it printed, stderr checked for canaries.
    pub async fn finished(&self, follow: Follow) -> Run {
        let run = follow.finish().await;
        for canary in self.canaries.lock().unwrap().iter() {
            assert!(!run.stderr.contains(canary.as_str()), "a value reached stderr: {}", run.stderr);
        }
        run
    }
}

impl Follow {
    /// Reads on until a line of stdout or stderr contains `needle` and returns it; fails the
    /// test, showing all output so far, if the plugin ends first or [`WAIT`] passes.
    pub async fn until_line(&mut self, needle: &str) -> String {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            let line = match tokio::time::timeout_at(deadline, self.lines.recv()).await {
                Ok(Some(line)) => line,
                Ok(None) => panic!("the plugin ended without printing {needle:?}\n{}", self.printed()),
                Err(_) => panic!("the plugin printed no {needle:?} within {WAIT:?}\n{}", self.printed()),
            };
            let text = self.record(line);
            if text.contains(needle) {
                return text;
            }
        }
    }

    fn record(&mut self, line: Line) -> String {
        let (all, text) = match line {
            Line::Out(text) => (&mut self.stdout, text),
            Line::Err(text) => (&mut self.stderr, text),
        };
        all.push_str(&text);
        all.push('\n');
        text
    }

    fn printed(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }

    async fn finish(mut self) -> Run {
        let status = match tokio::time::timeout(WAIT, self.child.wait()).await {
            Ok(status) => status.unwrap(),
            Err(_) => panic!("the plugin did not exit within {WAIT:?}\n{}", self.printed()),
        };
        // Both readers end at end of file, closing the channel.
        while let Some(line) = self.lines.recv().await {
            self.record(line);
        }
        Run { ok: status.success(), stdout: self.stdout, stderr: self.stderr }
    }
}
