//! Output shapes shared by the commands: docker's tables (columns padded to their widest cell, three spaces
//! apart), `--format json` (one JSON object per line), and the part of Go templates people type
//! (`{{.Names}}`, `{{.State.Status}}`, `{{json .Config}}`).

use std::io::Write;

use anyhow::bail;
use serde_json::Value;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Format {
    Table,
    Json,
    Template(String),
}

/// `--format`: `table` (the default), `json`, or a template such as `{{.ID}}\t{{.Names}}`.
pub fn parse_format(s: &str) -> Result<Format, String> {
    match s.trim() {
        "" | "table" => Ok(Format::Table),
        "json" | "{{json .}}" => Ok(Format::Json),
        t if t.contains("{{") && !t.starts_with("table ") => {
            // Check it now, so a typo fails before anything is sent.
            let f = t.replace("\\t", "\t").replace("\\n", "\n");
            parse_template(&f)?;
            Ok(Format::Template(f))
        }
        t => Err(format!("unsupported format {t:?}: use table, json, or a template such as '{{{{.ID}}}}'")),
    }
}

/// Prints `rows` under `headers`, each column as wide as its widest cell, three spaces apart.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> std::io::Result<()> {
    let cols = headers.len();
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate().take(cols) {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = std::io::stdout().lock();
    let line = |cells: &mut dyn Iterator<Item = &str>| -> String {
        let mut s = String::new();
        for (i, c) in cells.enumerate() {
            if i + 1 < cols {
                s.push_str(c);
                s.push_str(&" ".repeat(widths[i] - c.chars().count() + 3));
            } else {
                s.push_str(c);
            }
        }
        s.trim_end().to_owned()
    };
    writeln!(out, "{}", line(&mut headers.iter().copied()))?;
    for r in rows {
        writeln!(out, "{}", line(&mut r.iter().map(String::as_str)))?;
    }
    out.flush()
}

#[derive(Debug, PartialEq)]
enum Piece {
    Text(String),
    /// A field path (`.A.B`; empty for `.`), printed raw, or as JSON with `json`.
    Field { path: Vec<String>, json: bool },
}

fn parse_template(t: &str) -> Result<Vec<Piece>, String> {
    let mut out = Vec::new();
    let mut rest = t;
    while let Some(start) = rest.find("{{") {
        if start > 0 {
            out.push(Piece::Text(rest[..start].to_owned()));
        }
        let after = &rest[start + 2..];
        let end = after.find("}}").ok_or_else(|| format!("template: unclosed action in {t:?}"))?;
        let action = after[..end].trim().trim_start_matches('-').trim_end_matches('-').trim();
        let (json, expr) = match action.strip_prefix("json ") {
            Some(e) => (true, e.trim()),
            None => (false, action),
        };
        if !expr.starts_with('.') || expr.contains(char::is_whitespace) {
            return Err(format!("template: unsupported action {{{{{action}}}}} (fields such as {{{{.Name}}}} and {{{{json .Config}}}} are)"));
        }
        let path: Vec<String> = expr[1..].split('.').filter(|p| !p.is_empty()).map(str::to_owned).collect();
        out.push(Piece::Field { path, json });
        rest = &after[end + 2..];
    }
    if !rest.is_empty() {
        out.push(Piece::Text(rest.to_owned()));
    }
    Ok(out)
}

/// Renders a template against one object.
pub fn render(template: &str, v: &Value) -> anyhow::Result<String> {
    let pieces = match parse_template(template) {
        Ok(p) => p,
        Err(e) => bail!("{e}"),
    };
    let mut s = String::new();
    for p in pieces {
        match p {
            Piece::Text(t) => s.push_str(&t),
            Piece::Field { path, json } => {
                let mut cur = v;
                for (i, key) in path.iter().enumerate() {
                    cur = match cur {
                        Value::Object(o) => match o.get(key) {
                            Some(x) => x,
                            None => &Value::Null,
                        },
                        Value::Null => &Value::Null,
                        _ => bail!("template: can't evaluate field {key} in .{}", path[..i].join(".")),
                    };
                }
                if json {
                    s.push_str(&cur.to_string());
                } else {
                    match cur {
                        Value::String(x) => s.push_str(x),
                        Value::Null => s.push_str("<no value>"),
                        Value::Array(a) => {
                            // Go prints a slice as [a b c].
                            let items: Vec<String> =
                                a.iter().map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_owned)).collect();
                            s.push_str(&format!("[{}]", items.join(" ")));
                        }
                        Value::Object(o) => {
                            let items: Vec<String> = o
                                .iter()
                                .map(|(k, x)| format!("{k}:{}", x.as_str().map_or_else(|| x.to_string(), str::to_owned)))
                                .collect();
                            s.push_str(&format!("map[{}]", items.join(" ")));
                        }
                        other => s.push_str(&other.to_string()),
                    }
                }
            }
        }
    }
    Ok(s)
}

/// Prints each object: one compact JSON line (`json`) or the rendered template per line.
pub fn lines(format: &Format, objects: &[Value]) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    for o in objects {
        match format {
            Format::Template(t) => writeln!(out, "{}", render(t, o)?)?,
            _ => writeln!(out, "{o}")?,
        }
    }
    out.flush()?;
    Ok(())
}

/// A JSON array as docker's `inspect` prints it (four-space indent).
pub fn pretty(v: &Value) -> anyhow::Result<String> {
    let mut buf = Vec::new();
    let fmt = serde_json::ser::PrettyFormatter::with_indent(b"    ");
    let mut ser = serde_json::Serializer::with_formatter(&mut buf, fmt);
    serde::Serialize::serialize(v, &mut ser)?;
    Ok(String::from_utf8(buf)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn formats() {
        assert_eq!(parse_format("table"), Ok(Format::Table));
        assert_eq!(parse_format("json"), Ok(Format::Json));
        assert_eq!(parse_format("{{.ID}}\\t{{.Names}}"), Ok(Format::Template("{{.ID}}\t{{.Names}}".into())));
        assert!(parse_format("yaml").is_err());
        assert!(parse_format("{{range .}}").is_err());
    }

    #[test]
    fn templates() {
        let v = json!({"Names": "web", "State": {"Status": "running", "Pid": 42}, "Args": ["a", "b"], "Labels": {"k": "v"}});
        assert_eq!(render("{{.Names}} {{ .State.Status }}", &v).unwrap(), "web running");
        assert_eq!(render("{{.State.Pid}}", &v).unwrap(), "42");
        assert_eq!(render("{{json .State}}", &v).unwrap(), r#"{"Pid":42,"Status":"running"}"#);
        assert_eq!(render("{{.Args}} {{.Labels}}", &v).unwrap(), "[a b] map[k:v]");
        assert_eq!(render("{{.Missing}}", &v).unwrap(), "<no value>");
        assert!(render("{{.Names.X}}", &v).is_err());
        assert_eq!(render("{{json .}}", &json!({"a": 1})).unwrap(), r#"{"a":1}"#);
    }
}
