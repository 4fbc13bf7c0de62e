//! Shell completion: `kubectl sb completion bash|zsh|fish` prints a clap_complete script for
//! `kubectl-sb`; `kubectl sb __complete WORDS…` answers kubectl's own plugin completion
//! (kubectl 1.26+ runs `kubectl_complete-sb` with the words after `kubectl sb`, the last one
//! being completed, and reads cobra's format back: one candidate per line, `name\tdescription`,
//! then `:<directive>`), so `kubectl sb <TAB>` completes too.

use crate::cli::{Cli, Shell};
use clap::CommandFactory;
use std::io::Write;

/// cobra's ShellCompDirectiveDefault: let the shell complete file names.
const FILES: u32 = 0;
/// cobra's ShellCompDirectiveNoFileComp.
const NO_FILES: u32 = 4;

/// Writes the completion script of `shell` for the binary name `kubectl-sb`.
pub fn write_script(shell: Shell, out: &mut dyn Write) {
    let generator = match shell {
        Shell::Bash => clap_complete::Shell::Bash,
        Shell::Zsh => clap_complete::Shell::Zsh,
        Shell::Fish => clap_complete::Shell::Fish,
    };
    clap_complete::generate(generator, &mut Cli::command(), "kubectl-sb", out);
}

/// The candidates for the last of `words` and cobra's directive (pure).
pub fn candidates(words: &[String]) -> (Vec<String>, u32) {
    let root = Cli::command();
    let (done, partial) = match words.split_last() {
        Some((last, done)) => (done, last.as_str()),
        None => (&[][..], ""),
    };
    let mut command = &root;
    let mut chosen = false;
    for word in done {
        if let Some(sub) = command.find_subcommand(word) {
            command = sub;
            chosen = true;
        }
    }
    // The value of a flag: its possible values, or file names when it takes any text.
    if let Some(flag) = done.last().and_then(|word| find_flag(&root, command, word))
        && flag.get_action().takes_values()
    {
        let values = possible_values(flag, partial);
        return if values.is_empty() { (values, FILES) } else { (values, NO_FILES) };
    }
    if partial.starts_with('-') {
        let flags = command
            .get_arguments()
            .chain(root.get_arguments().filter(|arg| arg.is_global_set()))
            .filter(|arg| !arg.is_hide_set())
            .filter_map(|arg| Some((arg.get_long()?, arg.get_help().map(|h| h.to_string()).unwrap_or_default())))
            .map(|(long, help)| (format!("--{long}"), help))
            .chain([("--help".to_owned(), "Print help".to_owned())])
            .filter(|(flag, _)| flag.starts_with(partial))
            .map(|(flag, help)| line(&flag, &help))
            .collect();
        return (flags, NO_FILES);
    }
    if !chosen {
        let subs = root
            .get_subcommands()
            .filter(|sub| !sub.is_hide_set() && sub.get_name().starts_with(partial))
            .map(|sub| line(sub.get_name(), &sub.get_about().map(|a| a.to_string()).unwrap_or_default()))
            .collect();
        return (subs, NO_FILES);
    }
    // A positional argument: its possible values (the shell of `completion`), else nothing
    // (the targets and request names live in the cluster).
    let values: Vec<String> = command.get_positionals().flat_map(|arg| possible_values(arg, partial)).collect();
    (values, NO_FILES)
}

/// Prints [`candidates`] in cobra's format.
pub fn write_candidates(words: &[String], out: &mut dyn Write) -> std::io::Result<()> {
    let (lines, directive) = candidates(words);
    for candidate in lines {
        writeln!(out, "{candidate}")?;
    }
    writeln!(out, ":{directive}")
}

fn find_flag<'a>(root: &'a clap::Command, command: &'a clap::Command, word: &str) -> Option<&'a clap::Arg> {
    let matches = |arg: &&clap::Arg| match word.strip_prefix("--") {
        Some(long) => arg.get_long() == Some(long),
        None => word.len() == 2 && word.starts_with('-') && arg.get_short() == word.chars().nth(1),
    };
    command.get_arguments().find(matches).or_else(|| root.get_arguments().filter(|a| a.is_global_set()).find(matches))
}

fn possible_values(arg: &clap::Arg, partial: &str) -> Vec<String> {
    arg.get_possible_values()
        .into_iter()
        .filter(|value| !value.is_hide_set() && value.get_name().starts_with(partial))
        .map(|value| line(value.get_name(), &value.get_help().map(|h| h.to_string()).unwrap_or_default()))
        .collect()
}

fn line(name: &str, help: &str) -> String {
    match help.lines().next() {
        Some(first) if !first.is_empty() => format!("{name}\t{first}"),
        _ => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn complete(words: &[&str]) -> (Vec<String>, u32) {
        candidates(&words.iter().map(|w| w.to_string()).collect::<Vec<_>>())
    }

    fn names(found: &[String]) -> Vec<&str> {
        found.iter().map(|c| c.split('\t').next().unwrap()).collect()
    }

    #[test]
    fn scripts_name_every_subcommand() {
        for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
            let mut script = Vec::new();
            write_script(shell, &mut script);
            let script = String::from_utf8(script).unwrap();
            assert!(script.contains("kubectl-sb"), "{shell:?}: {script}");
            for sub in Cli::command().get_subcommands().filter(|sub| !sub.is_hide_set()) {
                assert!(script.contains(sub.get_name()), "{shell:?} lacks {}", sub.get_name());
            }
        }
    }

    #[test]
    fn kubectl_plugin_completion_answers_subcommands_flags_and_values() {
        let (subs, directive) = complete(&["re"]);
        assert_eq!(names(&subs), ["read", "reveal"]);
        assert_eq!(directive, NO_FILES);
        assert!(subs[0].starts_with("read\tAsk to read keys of a secret"), "{subs:?}");
        assert!(!names(&complete(&[""]).0).contains(&"__complete"), "the protocol command stays hidden");

        let (flags, _) = complete(&["read", "edge/vault:team-a/db", "--ke"]);
        assert_eq!(names(&flags), ["--key"]);
        let (global, _) = complete(&["reveal", "--name"]);
        assert_eq!(names(&global), ["--namespace"], "global flags of the root count");

        assert_eq!(names(&complete(&["reveal", "x", "-o", ""]).0), ["env", "json", "yaml", "raw"]);
        assert_eq!(names(&complete(&["completion", "z"]).0), ["zsh"]);
        assert_eq!(complete(&["reveal", "x", "--to", ""]), (vec![], FILES), "a file flag completes file names");
        assert_eq!(complete(&["read", ""]), (vec![], NO_FILES));
    }

    #[test]
    fn the_output_is_cobras_format() {
        let mut out = Vec::new();
        write_candidates(&["completion".into(), "f".into()], &mut out).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), "fish\n:4\n");
    }
}
