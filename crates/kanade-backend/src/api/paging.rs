//! What every list shares: its `limit`, and its opaque keyset cursor (`kanade_shared::api::{encode,decode}_cursor`)
//! read back into the list's typed sort key. A cursor that is not one this list handed out is a 400
//! `invalid_cursor`, never a wrong page.

use kanade_shared::api::{DEFAULT_PAGE_LIMIT, KeyPart, MAX_PAGE_LIMIT, decode_cursor, encode_cursor};

use super::{ApiError, ErrorCode};

/// The lists, as their cursors name them.
pub const AGENTS: &str = "agents";
pub const AGENTS_BY_CPU: &str = "agents_by_cpu";
pub const AGENTS_BY_MEMORY: &str = "agents_by_memory";
pub const RESULTS: &str = "results";
pub const AUDIT: &str = "audit";
pub const EXECUTIONS: &str = "executions";
pub const TARGETS: &str = "targets";
pub const SOFTWARE_TITLES: &str = "software_titles";
pub const SOFTWARE: &str = "software";
pub const INVENTORY_CHANGES: &str = "inventory_changes";
pub const HARDWARE: &str = "hardware";
pub const JOB_FACTS: &str = "job_facts";
pub const ENROLL_TOKENS: &str = "enroll_tokens";
pub const ENROLLMENTS: &str = "enrollments";

/// Longest text part a cursor may carry: longer than any id (64) or audit event id the backend stores.
const MAX_KEY_TEXT: usize = 256;

/// A page's size: 1 to [`MAX_PAGE_LIMIT`], [`DEFAULT_PAGE_LIMIT`] when not given.
pub fn limit(raw: Option<u32>) -> Result<u32, ApiError> {
    let limit = raw.unwrap_or(DEFAULT_PAGE_LIMIT);
    if !(1..=MAX_PAGE_LIMIT).contains(&limit) {
        return Err(ApiError::bad_request(
            ErrorCode::InvalidQuery,
            format!("limit `{limit}` is not between 1 and {MAX_PAGE_LIMIT}"),
        ));
    }
    Ok(limit)
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(ErrorCode::InvalidCursor, message)
}

fn parts(list: &str, raw: Option<&str>) -> Result<Option<Vec<KeyPart>>, ApiError> {
    match raw.filter(|r| !r.is_empty()) {
        None => Ok(None),
        Some(raw) => decode_cursor(list, raw).map(Some).map_err(|err| invalid(err.to_string())),
    }
}

fn text<T, E: std::fmt::Display>(part: KeyPart, parse: impl Fn(String) -> Result<T, E>) -> Result<T, ApiError> {
    match part {
        KeyPart::Text(text) if text.len() <= MAX_KEY_TEXT => {
            parse(text).map_err(|err| invalid(format!("cursor does not hold a position of this list: {err}")))
        }
        _ => Err(invalid("cursor does not hold a position of this list")),
    }
}

/// A list ordered by one id (agents and targets by pc id): the id the page starts after.
pub fn after_id<T, E: std::fmt::Display>(
    list: &str,
    raw: Option<&str>,
    parse: impl Fn(String) -> Result<T, E>,
) -> Result<Option<T>, ApiError> {
    let Some(parts) = parts(list, raw)? else { return Ok(None) };
    match <[KeyPart; 1]>::try_from(parts) {
        Ok([id]) => text(id, parse).map(Some),
        Err(_) => Err(invalid("cursor does not hold a position of this list")),
    }
}

/// A list ordered newest first by (time in ms, unique id): the key the page starts before.
pub fn before_time_id<T, E: std::fmt::Display>(
    list: &str,
    raw: Option<&str>,
    parse: impl Fn(String) -> Result<T, E>,
) -> Result<Option<(i64, T)>, ApiError> {
    let Some(parts) = parts(list, raw)? else { return Ok(None) };
    match <[KeyPart; 2]>::try_from(parts) {
        Ok([KeyPart::Int(ms), id]) => Ok(Some((ms, text(id, parse)?))),
        _ => Err(invalid("cursor does not hold a position of this list")),
    }
}

/// A list with a key of its own shape: the key's parts, `count` of them, each text at most [`MAX_KEY_TEXT`] long;
/// the list reads their kinds itself (a part of the wrong kind is its `invalid_cursor` too, through [`wrong`]).
pub fn key_parts(list: &str, raw: Option<&str>, count: usize) -> Result<Option<Vec<KeyPart>>, ApiError> {
    let Some(parts) = parts(list, raw)? else { return Ok(None) };
    let fits = |part: &KeyPart| !matches!(part, KeyPart::Text(text) if text.len() > MAX_KEY_TEXT);
    if parts.len() != count || !parts.iter().all(fits) {
        return Err(wrong());
    }
    Ok(Some(parts))
}

/// The refusal of a cursor whose key does not have this list's shape.
pub fn wrong() -> ApiError {
    invalid("cursor does not hold a position of this list")
}

pub fn next_key(list: &str, next: Option<Vec<KeyPart>>) -> Option<String> {
    next.map(|key| encode_cursor(list, key))
}

pub fn next_id(list: &str, next: Option<String>) -> Option<String> {
    next.map(|id| encode_cursor(list, vec![KeyPart::Text(id)]))
}

pub fn next_time_id(list: &str, next: Option<(i64, impl ToString)>) -> Option<String> {
    next.map(|(ms, id)| encode_cursor(list, vec![KeyPart::Int(ms), KeyPart::Text(id.to_string())]))
}

/// Any text: an audit event id is whatever the event carried (NUL stripped), only its length is bounded.
pub fn any_text(text: String) -> Result<String, std::convert::Infallible> {
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kanade_shared::PcId;

    #[test]
    fn a_cursor_holds_only_its_own_lists_key() {
        let agents = next_id(AGENTS, Some("pc-1".into())).unwrap();
        assert_eq!(after_id(AGENTS, Some(&agents), PcId::new).unwrap(), Some(PcId::new("pc-1").unwrap()));
        // Another list's cursor, or the right list with a key of the wrong shape, is refused.
        assert!(after_id(TARGETS, Some(&agents), PcId::new).is_err());
        let shaped = encode_cursor(AGENTS, vec![KeyPart::Int(1)]);
        assert!(after_id(AGENTS, Some(&shaped), PcId::new).is_err());
        let bad_id = encode_cursor(AGENTS, vec![KeyPart::Text("PC 1; DROP".into())]);
        assert!(after_id(AGENTS, Some(&bad_id), PcId::new).is_err());
        let long = encode_cursor(AUDIT, vec![KeyPart::Int(1), KeyPart::Text("x".repeat(MAX_KEY_TEXT + 1))]);
        assert!(before_time_id(AUDIT, Some(&long), any_text).is_err());
        let audit = next_time_id(AUDIT, Some((-1, "e"))).unwrap();
        assert_eq!(before_time_id(AUDIT, Some(&audit), any_text).unwrap(), Some((-1, "e".to_owned())));
        assert_eq!(after_id(AGENTS, Some(""), PcId::new).unwrap(), None, "an empty cursor is the first page");
    }

    #[test]
    fn limits_are_bounded() {
        assert_eq!(limit(None).unwrap(), DEFAULT_PAGE_LIMIT);
        assert_eq!(limit(Some(1)).unwrap(), 1);
        assert_eq!(limit(Some(MAX_PAGE_LIMIT)).unwrap(), MAX_PAGE_LIMIT);
        assert!(limit(Some(0)).is_err());
        assert!(limit(Some(MAX_PAGE_LIMIT + 1)).is_err());
    }
}
