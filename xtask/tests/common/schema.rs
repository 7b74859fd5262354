//! A JSON Schema check for the schemas this project ships
//! (docs/output.schema.json, docs/deploy.schema.json): exactly the
//! keywords they use, as JSON Schema defines them (`required`,
//! `properties` and `additionalProperties` constrain objects only), and a
//! panic on any other, so a schema cannot silently outgrow the check.

use serde_json::Value;

/// Problems of `v` against `schema`, one line each, paths from `$`.
pub fn validate(schema: &Value, v: &Value, at: &str) -> Vec<String> {
    validate_in(schema, schema, v, at)
}

fn type_ok(want: &Value, v: &Value) -> bool {
    let one = |t: &str| match t {
        "object" => v.is_object(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "null" => v.is_null(),
        "array" => v.is_array(),
        "boolean" => v.is_boolean(),
        other => panic!("schema type {other} is not checked here"),
    };
    match want {
        Value::String(t) => one(t),
        Value::Array(ts) => ts.iter().any(|t| one(t.as_str().unwrap())),
        other => panic!("bad type {other}"),
    }
}

/// Problems of `v` against `schema` (within `root`, for `$ref`).
fn validate_in(root: &Value, schema: &Value, v: &Value, at: &str) -> Vec<String> {
    let mut out = Vec::new();
    let obj = schema.as_object().unwrap();
    for (k, s) in obj {
        match k.as_str() {
            "$schema" | "title" | "description" | "default" | "examples" | "format" | "$defs"
            | "then" => {}
            "type" => {
                if !type_ok(s, v) {
                    out.push(format!("{at}: {v} is not of type {s}"));
                }
            }
            "minimum" | "maximum" => {
                if let (Some(n), Some(lim)) = (v.as_f64(), s.as_f64()) {
                    if (k == "minimum" && n < lim) || (k == "maximum" && n > lim) {
                        out.push(format!("{at}: {v} is out of range ({k} {s})"));
                    }
                }
            }
            "enum" => {
                if !s.as_array().unwrap().contains(v) {
                    out.push(format!("{at}: {v} is not one of {s}"));
                }
            }
            "const" => {
                if s != v {
                    out.push(format!("{at}: {v} is not {s}"));
                }
            }
            "required" if v.is_object() => {
                for r in s.as_array().unwrap() {
                    if v.get(r.as_str().unwrap()).is_none() {
                        out.push(format!("{at}: missing required field {r}"));
                    }
                }
            }
            "properties" if v.is_object() => {
                for (name, sub) in s.as_object().unwrap() {
                    if let Some(field) = v.get(name) {
                        out.extend(validate_in(root, sub, field, &format!("{at}.{name}")));
                    }
                }
            }
            "additionalProperties" if v.is_object() => {
                let known = obj.get("properties").and_then(Value::as_object);
                for (name, field) in v.as_object().unwrap() {
                    if known.is_some_and(|p| p.contains_key(name)) {
                        continue;
                    }
                    match s {
                        Value::Bool(true) => {}
                        Value::Bool(false) => out.push(format!("{at}: unknown field `{name}`")),
                        sub => out.extend(validate_in(root, sub, field, &format!("{at}.{name}"))),
                    }
                }
            }
            "required" | "properties" | "additionalProperties" => {}
            "items" => {
                for (i, item) in v.as_array().into_iter().flatten().enumerate() {
                    out.extend(validate_in(root, s, item, &format!("{at}[{i}]")));
                }
            }
            "allOf" => {
                for sub in s.as_array().unwrap() {
                    out.extend(validate_in(root, sub, v, at));
                }
            }
            "anyOf" | "oneOf" => {
                let fits = s
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|sub| validate_in(root, sub, v, at).is_empty())
                    .count();
                if fits == 0 || (k == "oneOf" && fits > 1) {
                    out.push(format!("{at}: {v} fits {fits} of the {k} choices"));
                }
            }
            "if" => {
                if validate_in(root, s, v, at).is_empty() {
                    if let Some(then) = schema.get("then") {
                        out.extend(validate_in(root, then, v, at));
                    }
                }
            }
            "$ref" => out.extend(validate_in(root, resolve(root, s), v, at)),
            other => panic!("schema keyword {other} is not checked by this test"),
        }
    }
    out
}

/// The `$defs` entry a `$ref` names.
pub fn resolve<'a>(root: &'a Value, r: &Value) -> &'a Value {
    let name = r.as_str().unwrap().strip_prefix("#/$defs/").unwrap();
    &root["$defs"][name]
}
