//! JSON results: pretty-printed by serde_json, newline-terminated, written
//! atomically.

use std::path::Path;

use serde::Serialize;

use super::{write_atomic, ReportError};

/// `value` as pretty-printed JSON with a trailing newline.
pub fn to_json_string<T: Serialize + ?Sized>(value: &T) -> Result<String, serde_json::Error> {
    let mut s = serde_json::to_string_pretty(value)?;
    s.push('\n');
    Ok(s)
}

/// Write `value` as pretty-printed JSON to `path`, atomically.
pub fn write_json<T: Serialize + ?Sized>(path: &Path, value: &T) -> Result<(), ReportError> {
    let s = to_json_string(value).map_err(|source| ReportError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    write_atomic(path, s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn roundtrips_and_rejects_non_string_keys() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("r.json");
        let v = serde_json::json!({"acc": 0.5, "layers": [1, 2]});
        write_json(&p, &v).unwrap();
        let back: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(back, v);
        let mut bad = BTreeMap::new();
        bad.insert((1, 2), 3);
        let e = write_json(&p, &bad).unwrap_err().to_string();
        assert!(e.contains("r.json") && e.contains("JSON"), "{e}");
        // The earlier file is intact.
        assert!(std::fs::read_to_string(&p).unwrap().contains("acc"));
    }
}
