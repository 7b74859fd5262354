//! The config reference is generated, never hand-maintained:
//! docs/deploy.schema.json is the JSON Schema that the config types
//! (xtask/src/config.rs) derive, and docs/config.md is rendered from that
//! schema here: every key with its type, whether it is required, its
//! default, its description (the field's doc comment) and an example (the
//! first value a shipped config gives it, else the field's
//! `#[schemars(example = ...)]`, else its default).
//!
//! Both files are compared with what the types give now; after changing a
//! config type, regenerate them like the plan snapshots:
//! `UPDATE_SNAPSHOTS=1 cargo test -p xtask --test config_reference`.
//!
//! The shipped configs must load and validate against the schema, and the
//! schema must refuse what the loader refuses, so editors (which read the
//! `#:schema` line of each file) and the tool agree.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::Value;

use common::root;
use common::schema::{resolve, validate};

mod common;

const REGENERATE: &str = "UPDATE_SNAPSHOTS=1 cargo test -p xtask --test config_reference";

/// Every deploy.toml the project ships, the production one first (examples
/// are taken from the first file that sets a key).
fn shipped() -> Vec<PathBuf> {
    let d = root().join("deployments");
    let mut out = vec![d.join("deploy.toml")];
    let mut examples: Vec<PathBuf> = std::fs::read_dir(d.join("examples"))
        .into_iter()
        .flatten()
        .map(|e| e.unwrap().path().join("deploy.toml"))
        .filter(|p| p.exists())
        .collect();
    examples.sort();
    out.extend(examples);
    out.push(d.join("testbed/deploy.toml"));
    out.push(d.join("testbed/deploy.swarm.toml"));
    out
}

fn as_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    toml_json(&text, &path.display().to_string())
}

fn toml_json(text: &str, origin: &str) -> Value {
    let table: toml::Table = toml::from_str(text).unwrap_or_else(|e| panic!("{origin}: {e}"));
    serde_json::to_value(table).unwrap()
}

fn problems(v: &Value) -> Vec<String> {
    validate(&xtask::config::schema(), v, "$")
}

// ---- the rendering ---------------------------------------------------------

/// One step of a key's path: a fixed key, any key of a table of tables
/// (`[env.NAME]`), or any table of an array of tables (`[[image]]`).
#[derive(Clone)]
enum Seg {
    Key(String),
    AnyKey,
    AnyItem,
}

/// A table the reference documents: where it sits and its schema.
struct Section {
    path: Vec<Seg>,
    schema: Value,
}

/// The path as a heading: `env.NAME.proxy`, `image`.
fn dotted(path: &[Seg]) -> String {
    let mut out = String::new();
    for s in path {
        match s {
            Seg::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Seg::AnyKey => out.push_str(".NAME"),
            Seg::AnyItem => {}
        }
    }
    out
}

/// The TOML header of a table: `[env.NAME.proxy]`, `[[image]]`.
fn header(path: &[Seg], names: &[String]) -> String {
    let mut names = names.iter();
    let mut parts = Vec::new();
    let mut array = false;
    for s in path {
        match s {
            Seg::Key(k) => parts.push(k.clone()),
            Seg::AnyKey => parts.push(names.next().cloned().unwrap_or_else(|| "NAME".into())),
            Seg::AnyItem => array = true,
        }
    }
    match array {
        true => format!("[[{}]]", parts.join(".")),
        false => format!("[{}]", parts.join(".")),
    }
}

/// A schema with `$ref` followed and a lone alternative unwrapped.
fn deref(root: &Value, s: &Value) -> Value {
    if let Some(r) = s.get("$ref") {
        let mut merged = resolve(root, r).clone();
        // The field's own description and default win over the type's.
        for (k, v) in s.as_object().unwrap() {
            if k != "$ref" {
                merged[k] = v.clone();
            }
        }
        return merged;
    }
    s.clone()
}

/// The table schema a key's value is, if it is one, with the path step
/// that reaches it: a table, an array of tables, or a table of tables.
fn table_of(root: &Value, s: &Value) -> Option<(Option<Seg>, Value)> {
    // The table's own description is its type's, not the key's.
    if let Some(r) = s.get("$ref") {
        let t = resolve(root, r);
        return t.get("properties").is_some().then(|| (None, t.clone()));
    }
    if s.get("properties").is_some() {
        return Some((None, s.clone()));
    }
    if let Some(items) = s.get("items") {
        let i = deref(root, items);
        return i
            .get("properties")
            .is_some()
            .then_some((Some(Seg::AnyItem), i));
    }
    if let Some(ap) = s.get("additionalProperties").filter(|a| a.is_object()) {
        let i = deref(root, ap);
        return i
            .get("properties")
            .is_some()
            .then_some((Some(Seg::AnyKey), i));
    }
    None
}

fn sections(root: &Value) -> Vec<Section> {
    let mut out = Vec::new();
    let mut todo = vec![Section {
        path: Vec::new(),
        schema: root.clone(),
    }];
    while let Some(sec) = todo.pop() {
        let mut found = Vec::new();
        for (k, field) in sec.schema["properties"].as_object().unwrap() {
            if let Some((step, table)) = table_of(root, field) {
                let mut path = sec.path.clone();
                path.push(Seg::Key(k.clone()));
                path.extend(step);
                found.push(Section {
                    path,
                    schema: table,
                });
            }
        }
        out.push(sec);
        // Depth first, in declaration order.
        todo.extend(found.into_iter().rev());
    }
    out
}

/// Unwraps doc-comment lines into paragraphs; intra-doc links become code.
fn prose(s: &Value) -> String {
    let text = [s.get("title"), s.get("description")]
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect::<Vec<_>>()
        .join("\n\n");
    text.split("\n\n")
        .map(|p| p.lines().map(str::trim).collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n\n")
        .replace("[`", "`")
        .replace("`]", "`")
}

/// The values of a string enum, with their descriptions.
fn choices(s: &Value) -> Option<Vec<(Value, String)>> {
    if let Some(e) = s.get("enum") {
        return Some(
            e.as_array()
                .unwrap()
                .iter()
                .map(|v| (v.clone(), String::new()))
                .collect(),
        );
    }
    let alts = s.get("oneOf")?.as_array()?;
    alts.iter()
        .map(|a| Some((a.get("const")?.clone(), prose(a))))
        .collect()
}

fn type_name(root: &Value, s: &Value) -> String {
    let s = deref(root, s);
    if let Some(c) = choices(&s) {
        let v: Vec<String> = c.iter().map(|(v, _)| format!("`{v}`")).collect();
        return format!("one of {}", v.join(", "));
    }
    if let Some(c) = s.get("const") {
        return format!("`{c}`");
    }
    // Other enums (tagged, untagged): their alternatives.
    if let Some(alts) = ["anyOf", "oneOf"]
        .iter()
        .find_map(|k| s.get(*k).and_then(Value::as_array))
    {
        let v: Vec<String> = alts.iter().map(|a| type_name(root, a)).collect();
        return v.join(" or ");
    }
    let t = match &s["type"] {
        Value::String(t) => t.clone(),
        Value::Array(ts) => ts
            .iter()
            .filter_map(Value::as_str)
            .find(|t| *t != "null")
            .unwrap()
            .to_string(),
        other => panic!("no type in {other}"),
    };
    match t.as_str() {
        "integer" => {
            let (min, max) = (s.get("minimum"), s.get("maximum"));
            match (min, max) {
                (Some(a), Some(b)) => format!("integer, {a} to {b}"),
                (Some(a), None) => format!("integer, {a} or more"),
                _ => "integer".into(),
            }
        }
        "array" | "object" if table_of(root, &s).is_some_and(|(step, _)| step.is_some()) => {
            format!("{} of tables", if t == "array" { "array" } else { "table" })
        }
        "array" => match s.get("items") {
            Some(i) => format!("array of {}", type_name(root, i)),
            None => "array".into(),
        },
        "object" if s.get("properties").is_some() => "table".into(),
        "object" => match s.get("additionalProperties").filter(|a| a.is_object()) {
            Some(v) => format!("table of {}", type_name(root, v)),
            None => "table".into(),
        },
        other => other.to_string(),
    }
}

/// A value in TOML's inline syntax; with `wrap`, a long array of more
/// than one item goes on several lines.
fn inline(v: &Value, wrap: bool) -> String {
    match v {
        Value::String(_) => serde_json::to_string(v).unwrap(),
        Value::Number(_) | Value::Bool(_) => v.to_string(),
        Value::Array(a) => {
            let items: Vec<String> = a.iter().map(|i| inline(i, false)).collect();
            let one = format!("[{}]", items.join(", "));
            if !wrap || one.len() <= 72 || items.len() < 2 {
                one
            } else {
                let mut s = String::from("[\n");
                for i in items {
                    let _ = writeln!(s, "  {i},");
                }
                s.push(']');
                s
            }
        }
        Value::Object(m) if m.is_empty() => "{}".into(),
        Value::Object(m) => {
            let kv: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{} = {}", key(k), inline(v, false)))
                .collect();
            format!("{{ {} }}", kv.join(", "))
        }
        Value::Null => panic!("TOML has no null"),
    }
}

fn key(k: &str) -> String {
    let bare = !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    match bare {
        true => k.to_string(),
        false => serde_json::to_string(k).unwrap(),
    }
}

/// The first value a shipped config gives the key at `path`, with the
/// names that the path's `NAME`s had there.
fn shipped_value(configs: &[Value], path: &[Seg]) -> Option<(Vec<String>, Value)> {
    fn walk(v: &Value, path: &[Seg], names: &mut Vec<String>) -> Option<Value> {
        let Some((first, rest)) = path.split_first() else {
            return Some(v.clone());
        };
        match first {
            Seg::Key(k) => walk(v.get(k)?, rest, names),
            Seg::AnyItem => v.as_array()?.iter().find_map(|i| walk(i, rest, names)),
            Seg::AnyKey => v.as_object()?.iter().find_map(|(name, i)| {
                names.push(name.clone());
                let found = walk(i, rest, names);
                if found.is_none() {
                    names.pop();
                }
                found
            }),
        }
    }
    configs.iter().find_map(|c| {
        let mut names = Vec::new();
        walk(c, path, &mut names).map(|v| (names, v))
    })
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// docs/config.md, from the schema and the shipped configs' values.
fn render(schema: &Value, configs: &[Value]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "# deploy.toml reference\n");
    let _ = writeln!(
        out,
        "<!-- Generated from the config types (xtask/src/config.rs) by `{REGENERATE}`: do not edit. -->\n"
    );
    let _ = writeln!(
        out,
        "{}\n",
        prose(&serde_json::json!({ "description": schema["description"] }))
    );
    let _ = writeln!(
        out,
        "The same keys as a JSON Schema: [deploy.schema.json](deploy.schema.json). An editor with TOML schema support validates and completes a deploy.toml whose first line names it, relative to the file: `#:schema ../docs/deploy.schema.json` (the shipped configs have that line; the tool reads it as a comment).\n"
    );
    let _ = writeln!(
        out,
        "Each key's example is the value a shipped config gives it (deployments/), else an illustration. A key that is not required takes its default when absent; \"none\" means the feature is off.\n"
    );
    let smallest = smallest(schema, &configs[0]);
    let _ = writeln!(
        out,
        "The smallest config that loads has only the required keys (values from deployments/deploy.toml):\n\n```toml\n{smallest}```\n"
    );
    let secs = sections(schema);
    let _ = writeln!(out, "Tables:\n");
    for s in &secs {
        let name = match s.path.is_empty() {
            true => "top level".to_string(),
            false => format!("`{}`", header(&s.path, &[])),
        };
        let _ = writeln!(out, "- {name}");
    }
    out.push('\n');
    for s in &secs {
        let title = match s.path.is_empty() {
            true => "The top level".to_string(),
            false => format!("`{}`", header(&s.path, &[])),
        };
        let _ = writeln!(out, "## {title}\n");
        if !s.path.is_empty() {
            let _ = writeln!(out, "{}\n", prose(&s.schema));
        }
        let props = s.schema["properties"].as_object().unwrap();
        let required: Vec<&str> = s.schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let _ = writeln!(out, "| key | type | required | default |");
        let _ = writeln!(out, "| --- | --- | --- | --- |");
        for (k, field) in props {
            let _ = writeln!(
                out,
                "| `{k}` | {} | {} | {} |",
                type_name(schema, field).replace('|', "\\|"),
                if required.contains(&k.as_str()) {
                    "yes"
                } else {
                    "no"
                },
                default_of(field, required.contains(&k.as_str())).replace('|', "\\|"),
            );
        }
        out.push('\n');
        for (k, field) in props {
            let mut path = s.path.clone();
            path.push(Seg::Key(k.clone()));
            let _ = writeln!(out, "### `{}`\n", dotted(&path));
            let _ = writeln!(out, "{}\n", prose(field));
            let req = required.contains(&k.as_str());
            let _ = writeln!(
                out,
                "Type: {}. Required: {}. Default: {}.\n",
                type_name(schema, field),
                if req { "yes" } else { "no" },
                default_of(field, req)
            );
            let described: Vec<(Value, String)> = choices(&deref(schema, field))
                .into_iter()
                .flatten()
                .filter(|(_, w)| !w.is_empty())
                .collect();
            for (v, what) in &described {
                let _ = writeln!(out, "- `{v}`: {what}");
            }
            if !described.is_empty() {
                out.push('\n');
            }
            if let Some((_, table)) = table_of(schema, field) {
                let at = header(&sections_path(&s.path, k, field, schema), &[]);
                let _ = writeln!(
                    out,
                    "Its keys are under `{at}` below ({} of them).\n",
                    table["properties"].as_object().unwrap().len()
                );
                continue;
            }
            let (names, value) = shipped_value(configs, &path)
                .or_else(|| {
                    let ex = field.get("examples")?.get(0)?.clone();
                    Some((Vec::new(), ex))
                })
                .or_else(|| {
                    let d = field.get("default").filter(|d| !is_empty(d))?.clone();
                    Some((Vec::new(), d))
                })
                .unwrap_or_else(|| {
                    panic!(
                        "{}: no example: no shipped config sets it and it has no non-empty default; add #[schemars(example = ...)] to the field",
                        dotted(&path)
                    )
                });
            let mut block = String::new();
            let one = inline(&value, true);
            match value.as_object() {
                // A long table reads better as a table of its own.
                Some(m) if one.len() > 100 => {
                    let _ = writeln!(block, "{}", header(&path, &names));
                    for (k, v) in m {
                        let _ = writeln!(block, "{} = {}", key(k), inline(v, true));
                    }
                }
                _ => {
                    if !s.path.is_empty() {
                        let _ = writeln!(block, "{}", header(&s.path, &names));
                    }
                    let _ = writeln!(block, "{} = {one}", key(k));
                }
            }
            // The example is TOML that the reader can paste.
            toml_json(&block, &format!("the example of {}", dotted(&path)));
            let _ = writeln!(out, "```toml\n{block}```\n");
        }
    }
    out.trim_end().to_string() + "\n"
}

/// The required keys alone, with the values `config` gives them: for a
/// table of tables, its first table; tables after plain keys, as TOML wants.
fn smallest(schema: &Value, config: &Value) -> String {
    fn walk(root: &Value, s: &Value, v: &Value, at: &[String], out: &mut String) {
        let required: Vec<&str> = s["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let props = s["properties"].as_object().unwrap();
        let mut lines = String::new();
        let mut tables = Vec::new();
        for k in required {
            let value = &v[k];
            match table_of(root, &props[k]) {
                Some((None, t)) => tables.push((vec![k.to_string()], t, value.clone())),
                Some((Some(Seg::AnyKey), t)) => {
                    let (name, first) = value.as_object().unwrap().iter().next().unwrap();
                    tables.push((vec![k.to_string(), key(name)], t, first.clone()));
                }
                Some((Some(_), t)) => {
                    tables.push((vec![format!("[{k}")], t, value[0].clone()));
                }
                None => {
                    let _ = writeln!(lines, "{} = {}", key(k), inline(value, true));
                }
            }
        }
        if !lines.is_empty() && !at.is_empty() {
            let h = at.join(".");
            let h = match h.strip_prefix('[') {
                Some(array) => format!("[[{array}]]"),
                None => format!("[{h}]"),
            };
            let _ = writeln!(out, "{h}");
        }
        out.push_str(&lines);
        for (sub, t, value) in tables {
            let path: Vec<String> = at.iter().cloned().chain(sub).collect();
            walk(root, &t, &value, &path, out);
        }
    }
    let mut out = String::new();
    walk(schema, schema, config, &[], &mut out);
    out
}

/// The path of the section a table-valued key opens.
fn sections_path(parent: &[Seg], k: &str, field: &Value, schema: &Value) -> Vec<Seg> {
    let mut p = parent.to_vec();
    p.push(Seg::Key(k.to_string()));
    if let Some((Some(step), _)) = table_of(schema, field) {
        p.push(step);
    }
    p
}

fn default_of(field: &Value, required: bool) -> String {
    match field.get("default") {
        Some(d) if is_empty(d) => format!("`{}` (empty)", inline(d, false)),
        Some(d) => format!("`{}`", inline(d, false)),
        None if required => "none: it must be set".into(),
        None => "none (absent)".into(),
    }
}

// ---- the tests -------------------------------------------------------------

/// Compares `path` with `want`, or writes it when UPDATE_SNAPSHOTS is set.
fn current(path: &str, want: &str) {
    let p = root().join(path);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&p, want).unwrap();
        return;
    }
    let have = std::fs::read_to_string(&p).unwrap_or_default();
    assert!(
        have == want,
        "{path} is stale (a config type or a shipped config changed): run `{REGENERATE}` and commit the result"
    );
}

#[test]
fn the_reference_and_the_schema_are_generated_from_the_config_types() {
    let schema = xtask::config::schema();
    current(
        "docs/deploy.schema.json",
        &(serde_json::to_string_pretty(&schema).unwrap() + "\n"),
    );
    let configs: Vec<Value> = shipped().iter().map(|p| as_json(p)).collect();
    let md = render(&schema, &configs);
    current("docs/config.md", &md);
    let small = smallest(&schema, &configs[0]);
    xtask::config::Config::parse(&small, "the smallest config")
        .unwrap_or_else(|e| panic!("{e:#}\n{small}"));
    // Every key of every table is in the reference.
    for s in sections(&schema) {
        for k in s.schema["properties"].as_object().unwrap().keys() {
            let mut path = s.path.clone();
            path.push(Seg::Key(k.clone()));
            assert!(
                md.contains(&format!("### `{}`", dotted(&path))),
                "{} is not in the reference",
                dotted(&path)
            );
        }
    }
}

#[test]
fn the_shipped_configs_load_validate_and_name_the_schema() {
    let schema_file = root().join("docs/deploy.schema.json");
    for path in shipped() {
        let at = path.display().to_string();
        xtask::config::Config::load(&path).unwrap_or_else(|e| panic!("{e:#}"));
        let p = problems(&as_json(&path));
        assert!(p.is_empty(), "{at} does not fit the schema: {p:?}");
        let text = std::fs::read_to_string(&path).unwrap();
        let first = text.lines().next().unwrap_or_default();
        let rel = first.strip_prefix("#:schema ").unwrap_or_else(|| {
            panic!("{at}: the first line must be `#:schema <relative path to docs/deploy.schema.json>`, for editors")
        });
        let named = path.parent().unwrap().join(rel);
        assert!(
            named.exists() && same_file(&named, &schema_file),
            "{at}: `#:schema {rel}` does not name docs/deploy.schema.json"
        );
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    std::fs::canonicalize(a).ok() == std::fs::canonicalize(b).ok()
}

#[test]
fn the_schema_refuses_what_the_loader_refuses() {
    let good = std::fs::read_to_string(root().join("deployments/deploy.toml")).unwrap();
    let project = "project = \"fetchml-staging\"\n";
    let cases = [
        (
            project,
            "health_url = \"x\"\n",
            "$.env.staging: unknown field `health_url`",
        ),
        (
            project,
            "engine = \"k8s\"\n",
            "$.env.staging.engine: \"k8s\"",
        ),
        (
            "health_timeout_secs = 120",
            "health_timeout_secs = 0",
            "$.env.staging.health_timeout_secs: 0 is out of range",
        ),
        (
            project,
            "timeouts = { pull = 5 }\n",
            "$.env.staging.timeouts: unknown field `pull`",
        ),
        (
            "keep_previous = \"warm\"",
            "keep_previous = \"cold\"",
            "$.env.staging.proxy.keep_previous",
        ),
        (
            "post_rollback = [",
            "post_rollback = \"notify\"\nxpost_rollback = [",
            "$.env.staging.post_rollback: \"notify\" is not of type \"array\"",
        ),
        (
            project,
            "",
            "$.env.staging: missing required field \"project\"",
        ),
    ];
    for (from, to, want) in cases {
        let to = if to.ends_with('\n') && from == project && !to.is_empty() {
            format!("{project}{to}")
        } else {
            to.to_string()
        };
        let bad = good.replacen(from, &to, 1);
        assert_ne!(bad, good, "{from}");
        let p = problems(&toml_json(&bad, "deploy.toml"));
        assert!(p.iter().any(|l| l.starts_with(want)), "{to}: {p:?}");
        assert!(
            xtask::config::Config::parse(&bad, "deploy.toml").is_err(),
            "the loader accepts {to}"
        );
    }
}

#[test]
fn a_new_key_is_rendered_and_one_without_an_example_is_named() {
    let configs: Vec<Value> = shipped().iter().map(|p| as_json(p)).collect();
    let mut schema = xtask::config::schema();
    schema["$defs"]["Env"]["properties"]["pull"] = serde_json::json!({
        "type": "string",
        "enum": ["always", "missing", "never"],
        "description": "When a deploy pulls\nthe app images.",
        "default": "always"
    });
    let md = render(&schema, &configs);
    let at = md
        .find("### `env.NAME.pull`")
        .expect("the new key is in the reference");
    assert!(
        md[at..].starts_with("### `env.NAME.pull`\n\nWhen a deploy pulls the app images.\n\nType: one of `\"always\"`, `\"missing\"`, `\"never\"`. Required: no. Default: `\"always\"`.\n\n```toml\n[env.NAME]\npull = \"always\"\n```"),
        "{}",
        &md[at..]
    );
    assert!(md.contains(
        "| `pull` | one of `\"always\"`, `\"missing\"`, `\"never\"` | no | `\"always\"` |"
    ));

    schema["$defs"]["Env"]["properties"]["host"] =
        serde_json::json!({ "type": "string", "description": "The docker host." });
    let e = std::panic::catch_unwind(|| render(&schema, &configs)).unwrap_err();
    let e = e.downcast_ref::<String>().unwrap();
    assert!(
        e.starts_with("env.NAME.host: no example") && e.contains("#[schemars(example = ...)]"),
        "{e}"
    );
}
