//! The `make bench` table: every benchmark appends its rows (tab separated: figure,
//! measured, baseline, ratio, goal, met) to one file, and `sb-scale --print-table FILE`
//! prints them aligned.

use std::path::Path;
use std::time::Duration;

/// One figure with its baseline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    pub figure: String,
    pub measured: String,
    pub baseline: String,
    pub ratio: String,
    pub goal: String,
    /// `Some(met)` when the figure has a goal.
    pub met: Option<bool>,
}

impl Row {
    pub fn new(figure: impl Into<String>, measured: impl Into<String>, baseline: impl Into<String>) -> Self {
        Self {
            figure: figure.into(),
            measured: measured.into(),
            baseline: baseline.into(),
            ratio: "-".into(),
            goal: "-".into(),
            met: None,
        }
    }

    /// measured ÷ baseline, e.g. `2.31x`.
    pub fn ratio(mut self, measured: f64, baseline: f64) -> Self {
        self.ratio =
            if baseline > 0.0 && measured.is_finite() { format!("{:.2}x", measured / baseline) } else { "-".into() };
        self
    }

    pub fn goal(mut self, goal: impl Into<String>, met: bool) -> Self {
        self.goal = goal.into();
        self.met = Some(met);
        self
    }

    pub fn tsv(&self) -> String {
        let met = match self.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "-",
        };
        let clean = |s: &str| s.replace(['\t', '\n'], " ");
        format!(
            "{}\t{}\t{}\t{}\t{}\t{met}\n",
            clean(&self.figure),
            clean(&self.measured),
            clean(&self.baseline),
            clean(&self.ratio),
            clean(&self.goal)
        )
    }

    pub fn parse(line: &str) -> Option<Self> {
        let f: Vec<&str> = line.split('\t').collect();
        let [figure, measured, baseline, ratio, goal, met] = f.as_slice() else { return None };
        Some(Self {
            figure: figure.to_string(),
            measured: measured.to_string(),
            baseline: baseline.to_string(),
            ratio: ratio.to_string(),
            goal: goal.to_string(),
            met: match met.trim() {
                "yes" => Some(true),
                "NO" => Some(false),
                _ => None,
            },
        })
    }
}

/// Appends `rows` to the table file.
pub fn append(path: &Path, rows: &[Row]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(path)?;
    for row in rows {
        file.write_all(row.tsv().as_bytes())?;
    }
    Ok(())
}

/// The rows as an aligned table with a header, and a closing count of goals met.
pub fn render(rows: &[Row]) -> String {
    let header = Row {
        figure: "figure".into(),
        measured: "measured".into(),
        baseline: "baseline (same run)".into(),
        ratio: "ratio".into(),
        goal: "goal".into(),
        met: None,
    };
    let cells = |r: &Row| {
        let met = if r.figure == "figure" {
            "met?".to_owned()
        } else {
            match r.met {
                Some(true) => "yes".into(),
                Some(false) => "NO".into(),
                None => "-".into(),
            }
        };
        [r.figure.clone(), r.measured.clone(), r.baseline.clone(), r.ratio.clone(), r.goal.clone(), met]
    };
    let all: Vec<[String; 6]> = std::iter::once(&header).chain(rows).map(cells).collect();
    let widths: Vec<usize> = (0..6).map(|c| all.iter().map(|r| r[c].chars().count()).max().unwrap_or(0)).collect();
    let mut out = String::new();
    for (i, r) in all.iter().enumerate() {
        let line: Vec<String> = r.iter().zip(&widths).map(|(cell, w)| format!("{cell:<w$}")).collect();
        out.push_str(line.join(" | ").trim_end());
        out.push('\n');
        if i == 0 {
            let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
            out.push_str(&rule.join("-|-"));
            out.push('\n');
        }
    }
    let with_goal = rows.iter().filter(|r| r.met.is_some()).count();
    let met = rows.iter().filter(|r| r.met == Some(true)).count();
    out.push_str(&format!("\ngoals met: {met} of {with_goal}\n"));
    out
}

/// Reads the table file.
pub fn read(path: &Path) -> anyhow::Result<Vec<Row>> {
    Ok(std::fs::read_to_string(path)?.lines().filter_map(Row::parse).collect())
}

/// `12.3 ms`.
pub fn ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms >= 10_000.0 { format!("{:.1} s", ms / 1000.0) } else { format!("{ms:.1} ms") }
}

/// `45.2 MiB`.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_survive_the_file_format() {
        let row = Row::new("seal", "10/s", "20/s").ratio(10.0, 20.0).goal(">= 0.6x", false);
        assert_eq!(Row::parse(row.tsv().trim_end()), Some(row.clone()));
        let table = render(&[row]);
        assert!(table.contains("0.50x"), "{table}");
        assert!(table.contains("goals met: 0 of 1"), "{table}");
    }
}
