//! Text that comes from a guest, made safe to store and print: bounded in
//! size, with control characters escaped, so a guest can neither bloat a
//! task hash nor forge a line of the worker's log or output.

/// Most bytes kept of a message a guest gives the host (an error, a panic
/// message): the head, then how much was cut.
pub const MAX_MESSAGE: usize = 4096;

/// `text` cut to [`MAX_MESSAGE`] bytes (at a character boundary), saying
/// how many bytes were cut.
///
/// ```
/// use wasq::runtime::cap_message;
/// let long = "x".repeat(10_000);
/// let capped = cap_message(&long);
/// assert!(capped.len() < 4200 && capped.ends_with("(5904 more bytes cut)"));
/// assert_eq!(cap_message("short"), "short");
/// ```
pub fn cap_message(text: &str) -> String {
    if text.len() <= MAX_MESSAGE {
        return text.to_owned();
    }
    let mut end = MAX_MESSAGE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}… ({} more bytes cut)", &text[..end], text.len() - end)
}

/// `text` with every control character (newline, CR, tab, ESC, ...) written
/// as an escape (`\n`, `\r`, `\t`, `\u{1b}`), so that it prints on one line
/// and sends no terminal sequence.
///
/// ```
/// use wasq::runtime::escape_control;
/// assert_eq!(escape_control("a\nb\u{1b}[31m"), "a\\nb\\u{1b}[31m");
/// assert_eq!(escape_control("héllo"), "héllo");
/// ```
pub fn escape_control(text: &str) -> std::borrow::Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return text.into();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out.into()
}

/// A guest's message as the host keeps it: capped, then escaped.
///
/// ```
/// assert_eq!(wasq::runtime::guest_text::sanitize("done\n\u{1b}[2K"), "done\\n\\u{1b}[2K");
/// ```
pub fn sanitize(text: &str) -> String {
    escape_control(&cap_message(text)).into_owned()
}
