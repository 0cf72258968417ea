//! Output: aligned tables, JSON and YAML.

use serde::Serialize;

/// Output formats of the read commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Yaml,
}

/// A table with aligned columns (two spaces between).
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let mut s = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                s.push_str(c);
            } else {
                s.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        s.trim_end().to_string()
    };
    let mut out = line(headers.to_vec());
    out.push('\n');
    for r in rows {
        out.push_str(&line(r.iter().map(String::as_str).collect()));
        out.push('\n');
    }
    out
}

/// Prints a list in the chosen format; `empty` when a table has no rows.
pub fn list<T: Serialize>(
    format: Format,
    items: &[T],
    empty: &str,
    to_table: impl Fn(&[T]) -> String,
) -> anyhow::Result<String> {
    Ok(match format {
        Format::Json => serde_json::to_string_pretty(items)? + "\n",
        Format::Yaml => serde_yaml_ng::to_string(items)?,
        Format::Table if items.is_empty() => format!("{empty}\n"),
        Format::Table => to_table(items),
    })
}

/// `-` for an empty cell.
pub fn dash(s: &str) -> String {
    if s.is_empty() {
        "-".into()
    } else {
        s.to_string()
    }
}

/// `3h12m5s` from seconds; `-` for zero.
pub fn duration(secs: u64) -> String {
    if secs == 0 {
        return "-".into();
    }
    let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_columns() {
        let t = table(
            &["A", "LONG HEADER", "C"],
            &[vec!["xyz".into(), "1".into(), "end".into()]],
        );
        assert_eq!(t, "A    LONG HEADER  C\nxyz  1            end\n");
    }

    #[test]
    fn durations() {
        assert_eq!(duration(0), "-");
        assert_eq!(duration(59), "59s");
        assert_eq!(duration(3725), "1h2m5s");
    }
}
