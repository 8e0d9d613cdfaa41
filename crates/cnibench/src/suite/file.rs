//! TOML suite files: raw serde structs with spans, validated into a [`Suite`].
//!
//! ```toml
//! name = "mine"
//! [defaults]            # keys applied to every scenario they fit
//! duration = "5s"
//! [[scenario]]
//! kind = "pod-to-service"
//! id = "services"       # optional; default: the kind
//! services = [1, 100]   # a list sweeps, a scalar fixes
//! workload = ["tcp", "udp"]
//! ```

use std::collections::BTreeMap;
use std::ops::Range;

use serde::Deserialize;
use toml::Spanned;

use super::params::{self, Key, Raw};
use super::{Origin, ScenarioKind, ScenarioSpec, Suite, SuiteError, Sweep};

type RawTable = BTreeMap<Spanned<String>, Spanned<toml::Value>>;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSuite {
    name: Option<String>,
    description: Option<String>,
    #[serde(default)]
    defaults: RawTable,
    #[serde(default)]
    scenario: Vec<Spanned<RawTable>>,
}

/// 1-based line and column of byte `offset` in `text`.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |nl| before.len() - nl - 1)
        + 1;
    (line, col)
}

struct Ctx<'a> {
    text: &'a str,
    source: &'a str,
}

impl Ctx<'_> {
    fn origin(&self, span: Range<usize>) -> Origin {
        let (line, col) = line_col(self.text, span.start);
        Origin {
            source: self.source.to_string(),
            line: Some(line),
            column: Some(col),
        }
    }
}

/// Parses and validates a suite file's text; `source` names it in errors.
pub fn parse(text: &str, source: &str) -> Result<Suite, SuiteError> {
    let ctx = Ctx { text, source };
    let raw: RawSuite = toml::from_str(text).map_err(|e| SuiteError::Syntax {
        origin: e
            .span()
            .map_or_else(|| Origin::arg(source), |s| ctx.origin(s)),
        message: e.message().trim().to_string(),
    })?;
    let defaults = parse_table(&ctx, &raw.defaults)?;
    if raw.scenario.is_empty() {
        return Err(SuiteError::invalid(
            &Origin::arg(source),
            "scenario",
            "the suite has no [[scenario]] table",
            format!(
                "one or more [[scenario]] tables with kind = {}",
                kind_names()
            ),
        ));
    }
    let mut scenarios = Vec::new();
    for table in &raw.scenario {
        let origin = ctx.origin(table.span());
        let mut kind = None;
        let mut id = None;
        let mut rest = RawTable::new();
        for (k, v) in table.get_ref() {
            match k.get_ref().as_str() {
                "kind" => {
                    let name = v.get_ref().as_str().unwrap_or_default();
                    kind = Some(ScenarioKind::parse(name).ok_or_else(|| {
                        SuiteError::invalid(
                            &ctx.origin(v.span()),
                            "kind",
                            format!("unknown scenario kind `{}`", v.get_ref()),
                            kind_names(),
                        )
                    })?);
                }
                "id" => {
                    let s = v
                        .get_ref()
                        .as_str()
                        .filter(|s| valid_id(s))
                        .ok_or_else(|| {
                            SuiteError::invalid(
                                &ctx.origin(v.span()),
                                "id",
                                format!("bad id {}", v.get_ref()),
                                "letters, digits, '-' and '_'",
                            )
                        })?;
                    id = Some(s.to_string());
                }
                _ => {
                    rest.insert(k.clone(), v.clone());
                }
            }
        }
        let kind =
            kind.ok_or_else(|| SuiteError::invalid(&origin, "kind", "missing", kind_names()))?;
        let mut sweep = BTreeMap::new();
        for (key, values) in parse_table(&ctx, &rest)? {
            if !key.applies_to(kind) {
                return Err(SuiteError::invalid(
                    &values.origin,
                    key.name(),
                    format!("does not apply to scenario {kind}"),
                    format!("keys of {kind}: kind, id, {}", Key::names_for(kind)),
                ));
            }
            sweep.insert(key, values);
        }
        for (key, values) in &defaults {
            if key.applies_to(kind) {
                sweep.entry(*key).or_insert_with(|| values.clone());
            }
        }
        let id = id.unwrap_or_else(|| kind.as_str().to_string());
        if scenarios.iter().any(|s: &ScenarioSpec| s.id == id) {
            return Err(SuiteError::invalid(
                &origin,
                "id",
                format!("duplicate scenario id `{id}`"),
                "a unique id per [[scenario]] (set `id = \"...\"`)",
            ));
        }
        scenarios.push(ScenarioSpec {
            id,
            kind,
            origin,
            sweep,
        });
    }
    Ok(Suite {
        name: raw.name.unwrap_or_else(|| source.to_string()),
        description: raw.description.unwrap_or_default(),
        scenarios,
    })
}

fn valid_id(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

fn kind_names() -> String {
    ScenarioKind::ALL.map(ScenarioKind::as_str).join(", ")
}

fn parse_table(ctx: &Ctx<'_>, table: &RawTable) -> Result<BTreeMap<Key, Sweep>, SuiteError> {
    let mut out = BTreeMap::new();
    for (k, v) in table {
        let origin = ctx.origin(k.span());
        let key = Key::parse(k.get_ref()).ok_or_else(|| {
            SuiteError::invalid(
                &origin,
                k.get_ref().as_str(),
                "unknown key",
                format!("kind, id, {}", Key::all_names()),
            )
        })?;
        let origin = ctx.origin(v.span());
        let items: Vec<&toml::Value> = match v.get_ref() {
            toml::Value::Array(items) => items.iter().collect(),
            other => vec![other],
        };
        if items.is_empty() {
            return Err(SuiteError::invalid(
                &origin,
                key.name(),
                "empty list",
                key.allowed(),
            ));
        }
        let values = items
            .into_iter()
            .map(|item| {
                let raw = match item {
                    toml::Value::String(s) => Raw::Str(s),
                    toml::Value::Integer(i) => Raw::Int(*i),
                    toml::Value::Float(x) => Raw::Float(*x),
                    toml::Value::Boolean(b) => Raw::Bool(*b),
                    other => {
                        return Err(format!(
                            "expected a value or a list of values, found {}",
                            other.type_str()
                        ));
                    }
                };
                params::parse_value(key, raw)
            })
            .collect::<Result<Vec<_>, _>>()
            .map_err(|problem| SuiteError::invalid(&origin, key.name(), problem, key.allowed()))?;
        out.insert(key, Sweep { values, origin });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column() {
        assert_eq!(line_col("ab\ncd\nef", 4), (2, 2));
        assert_eq!(line_col("x", 0), (1, 1));
    }

    #[test]
    fn errors_name_file_line_field_and_allowed() {
        let text = "name = \"x\"\n[[scenario]]\nkind = \"pod-to-service\"\nservices = [1, -5]\n";
        let err = parse(text, "my.toml").unwrap_err().to_string();
        assert_eq!(
            err,
            "my.toml:4:12: services: -5 is negative (allowed: an integer from 0 to 100000)"
        );
        let err = parse(
            "[[scenario]]\nkind = \"pod-to-pod\"\nservices = 3\n",
            "a.toml",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with("a.toml:3:12: services: does not apply"),
            "{err}"
        );
        let err = parse("[[scenario]]\nkind = \"warp\"\n", "a.toml")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("a.toml:2:8: kind") && err.contains("baseline"),
            "{err}"
        );
        let err = parse("[[scenario]]\nkind = \"baseline\"\nstreems = 2\n", "a.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("a.toml:3:1: streems: unknown key"), "{err}");
    }

    #[test]
    fn syntax_errors_have_positions() {
        let err = parse("name = \n", "s.toml").unwrap_err().to_string();
        assert!(err.starts_with("s.toml:1:"), "{err}");
        let err = parse("nmae = \"x\"\n[[scenario]]\nkind=\"baseline\"\n", "s.toml")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with("s.toml:1:1: unknown field `nmae`"), "{err}");
    }

    #[test]
    fn defaults_fill_in_where_they_apply() {
        let s = parse(
            "[defaults]\nservices = 5\nduration = 3\n[[scenario]]\nkind = \"pod-to-pod\"\n[[scenario]]\nkind = \"pod-to-service\"\n",
            "d.toml",
        )
        .unwrap();
        assert!(!s.scenarios[0].sweep.contains_key(&Key::Services));
        assert!(s.scenarios[1].sweep.contains_key(&Key::Services));
        assert!(s.scenarios[0].sweep.contains_key(&Key::Duration));
    }
}
