//! A job's facts: what the stdout of a successful run of a job with an `inventory:` block says, as rows of fields.
//! Pure: the job-facts projector (`projector::JobFacts`) calls [`parse`] on each result and stores what it returns.
//!
//! The script prints one JSON object (one row) or an array of objects (a row each). Every top-level field is kept,
//! not only those the manifest names today, so a manifest that later shows another column needs no new run:
//! strings as they are, numbers and booleans as printed, `null` as empty, anything nested as compact JSON. All of it
//! bounded: a row count, fields per row, and the length of names and values.

use std::collections::BTreeMap;

/// Rows one result may give.
pub const MAX_ROWS: usize = 1_000;
/// Fields kept per row (the first, by name).
pub const MAX_FIELDS: usize = 64;
/// Longest field name kept, in characters; a longer name is left out.
pub const MAX_FIELD_CHARS: usize = 64;
/// Longest value kept, in characters.
pub const MAX_VALUE_CHARS: usize = 1024;

/// One row of facts: field -> value.
pub type FactRow = BTreeMap<String, String>;

/// The rows `stdout` holds, or why it holds none (the message shown on the PC's facts).
pub fn parse(stdout: &str, truncated: bool) -> Result<Vec<FactRow>, String> {
    let text = stdout.trim_start_matches('\u{feff}').trim();
    if text.is_empty() {
        return Err("the script printed nothing; an inventory job prints one JSON object or an array".into());
    }
    let value: serde_json::Value = serde_json::from_str(text).map_err(|err| {
        let cut = if truncated { " (its output was cut at the inline limit)" } else { "" };
        format!("stdout is not JSON{cut}: {err}")
    })?;
    let objects = match value {
        serde_json::Value::Object(object) => vec![object],
        serde_json::Value::Array(items) => {
            if items.len() > MAX_ROWS {
                return Err(format!("stdout is an array of {} rows; at most {MAX_ROWS}", items.len()));
            }
            items
                .into_iter()
                .enumerate()
                .map(|(i, item)| match item {
                    serde_json::Value::Object(object) => Ok(object),
                    other => Err(format!("row {i} is {}, not an object", kind(&other))),
                })
                .collect::<Result<_, _>>()?
        }
        other => return Err(format!("stdout is {}, not an object or an array of objects", kind(&other))),
    };
    Ok(objects.into_iter().map(row).collect())
}

fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

fn row(object: serde_json::Map<String, serde_json::Value>) -> FactRow {
    object
        .into_iter()
        .filter(|(name, _)| {
            (1..=MAX_FIELD_CHARS).contains(&name.chars().count()) && !name.chars().any(char::is_control)
        })
        .take(MAX_FIELDS)
        .map(|(name, value)| {
            let text = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null => String::new(),
                other => other.to_string(),
            };
            // NUL cannot be stored in PostgreSQL text; other control characters are kept as they came.
            (name, text.chars().filter(|c| *c != '\0').take(MAX_VALUE_CHARS).collect())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_object_is_one_row_and_an_array_is_many() {
        let rows =
            parse(r#"{"version":"1.2.0","path":"C:\\kanade\\client.exe","ok":true,"n":3,"x":null}"#, false).unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0]["version"], "1.2.0");
        assert_eq!(rows[0]["path"], "C:\\kanade\\client.exe");
        assert_eq!((rows[0]["ok"].as_str(), rows[0]["n"].as_str(), rows[0]["x"].as_str()), ("true", "3", ""));

        let rows = parse("\u{feff}\r\n[{\"a\":1},{\"a\":2,\"b\":{\"c\":[1]}}]\r\n", false).unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1]["b"], r#"{"c":[1]}"#, "nested values are kept as compact JSON");
        assert!(parse("[]", false).unwrap().is_empty());
    }

    #[test]
    fn what_is_not_the_promised_json_says_why() {
        for (stdout, needle) in [
            ("", "printed nothing"),
            ("   \n", "printed nothing"),
            ("version=1.2", "not JSON"),
            ("42", "a number"),
            ("\"text\"", "a string"),
            ("[1, 2]", "row 0 is a number"),
            ("[{}, []]", "row 1 is an array"),
        ] {
            let err = parse(stdout, false).unwrap_err();
            assert!(err.contains(needle), "{stdout:?}: {err}");
        }
        assert!(parse("{\"a\":", true).unwrap_err().contains("cut at the inline limit"));
        let many = format!("[{}]", vec!["{}"; MAX_ROWS + 1].join(","));
        assert!(parse(&many, false).unwrap_err().contains("at most 1000"));
    }

    #[test]
    fn hostile_output_is_bounded() {
        let fields: Vec<String> = (0..200).map(|i| format!("\"f{i:03}\":\"{}\"", "v".repeat(5_000))).collect();
        let long_name = format!("\"{}\":1", "n".repeat(MAX_FIELD_CHARS + 1));
        let rows = parse(&format!("{{{},{long_name},\"nul\":\"a\\u0000b\",\"\":1}}", fields.join(",")), false).unwrap();
        assert_eq!(rows[0].len(), MAX_FIELDS);
        assert!(rows[0].values().all(|v| v.chars().count() <= MAX_VALUE_CHARS));
        assert!(!rows[0].keys().any(|k| k.is_empty() || k.len() > MAX_FIELD_CHARS));
        let markup = parse(r#"{"name":"<script>alert(1)</script>"}"#, false).unwrap();
        assert_eq!(markup[0]["name"], "<script>alert(1)</script>", "markup is text; the dashboard shows it as such");
    }
}
