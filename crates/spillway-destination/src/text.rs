//! Error text shared by the HTTP clients (the Iceberg REST catalog here, the Lambda Invoke client
//! of the pipeline): what a failed call says, in one line, without unbounded bodies.

/// Longest piece of a response body quoted in an error detail.
pub const DETAIL_PREVIEW: usize = 512;

/// An error and its sources, `: `-separated (reqwest's own message rarely says what failed).
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        let next = e.to_string();
        if !text.contains(&next) {
            text.push_str(": ");
            text.push_str(&next);
        }
        source = e.source();
    }
    text
}

/// The first [`DETAIL_PREVIEW`] bytes of a body as trimmed text, `...` when cut.
pub fn preview(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(DETAIL_PREVIEW)]);
    let text = text.trim();
    if body.len() > DETAIL_PREVIEW { format!("{text}...") } else { text.to_string() }
}
