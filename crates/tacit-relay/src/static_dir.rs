//! Static files beside the WebSocket (`--static-dir`): the files under one
//! directory, served at `/` for a demo page (`examples/web`).
//!
//! Only regular files are served: no directory listing (a path ending in
//! `/` serves that directory's `index.html`), no path that leaves the
//! directory. Each path segment is percent-decoded once and refused if it
//! is empty, `.` or `..`, starts with a dot, or holds `/`, `\`, `:` or a
//! control character once decoded; the file found must also resolve,
//! symbolic links followed, to a place inside the directory. Every refusal
//! is a plain 404, like a missing file.

use std::path::{Path, PathBuf};

use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

/// The largest file served, in bytes.
const MAX_FILE_LEN: u64 = 16 * 1024 * 1024;

/// The relative path a request path names, or `None` to refuse it.
pub(crate) fn relative_path(path: &str) -> Option<PathBuf> {
    let rest = path.strip_prefix('/')?;
    let mut out = PathBuf::new();
    let mut segments: Vec<&str> = rest.split('/').collect();
    // "/" and "dir/" name the directory's index.
    if segments.last() == Some(&"") {
        segments.pop();
        segments.push("index.html");
    }
    for segment in segments {
        let decoded = percent_decode(segment)?;
        let refused = decoded.is_empty()
            || decoded.starts_with('.')
            || decoded
                .chars()
                .any(|c| matches!(c, '/' | '\\' | ':') || c.is_control());
        if refused {
            return None;
        }
        out.push(decoded);
    }
    Some(out)
}

/// `%XX` escapes decoded (once), as UTF-8; `None` for a bad escape or
/// bytes that are not UTF-8.
fn percent_decode(segment: &str) -> Option<String> {
    let bytes = segment.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes.get(i + 1..i + 3)?;
            let hex = std::str::from_utf8(hex).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn content_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("wasm") => "application/wasm",
        Some("css") => "text/css; charset=utf-8",
        Some("json") => "application/json",
        Some("png") => "image/png",
        Some("svg") => "image/svg+xml",
        Some("txt" | "ts" | "md") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

/// Serves `uri`'s file from `root`, or 404.
pub(crate) async fn serve(root: &Path, uri: &Uri) -> Response {
    let not_found = || StatusCode::NOT_FOUND.into_response();
    let Some(relative) = relative_path(uri.path()) else {
        return not_found();
    };
    let Ok(root) = tokio::fs::canonicalize(root).await else {
        return not_found();
    };
    let Ok(file) = tokio::fs::canonicalize(root.join(&relative)).await else {
        return not_found();
    };
    if !file.starts_with(&root) {
        return not_found();
    }
    match tokio::fs::metadata(&file).await {
        Ok(m) if m.is_file() && m.len() <= MAX_FILE_LEN => {}
        _ => return not_found(),
    }
    match tokio::fs::read(&file).await {
        Ok(body) => (
            [
                (header::CONTENT_TYPE, content_type(&file)),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body,
        )
            .into_response(),
        Err(_) => not_found(),
    }
}

#[cfg(test)]
mod tests {
    use super::relative_path;
    use std::path::PathBuf;

    #[test]
    fn plain_paths_map_into_the_directory() {
        assert_eq!(relative_path("/"), Some(PathBuf::from("index.html")));
        assert_eq!(
            relative_path("/pkg/tacit_wasm.js"),
            Some(PathBuf::from("pkg/tacit_wasm.js"))
        );
        assert_eq!(
            relative_path("/pkg/"),
            Some(PathBuf::from("pkg/index.html"))
        );
        assert_eq!(relative_path("/a%20b.js"), Some(PathBuf::from("a b.js")));
    }

    #[test]
    fn traversal_and_its_encodings_are_refused() {
        for path in [
            "/..",
            "/../etc/passwd",
            "/pkg/../../etc/passwd",
            "/%2e%2e/etc/passwd",
            "/%2E%2E/etc/passwd",
            "/.%2e/etc/passwd",
            "/pkg/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
            "/..%2fetc%2fpasswd",
            "/..%5cetc",
            "/%5c..%5cetc",
            "/.",
            "/.hidden",
            "//etc/passwd",
            "/pkg//x",
            "/a%00b",
            "/c:%2fwindows",
            "/%zz",
            "/%e2%28",
            "relative",
        ] {
            assert_eq!(relative_path(path), None, "{path}");
        }
    }
}
