//! [`ConfigError`]: what is wrong with a config file, and where.

use std::fmt;
use std::path::PathBuf;

/// A config file that cannot be read or is invalid.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A syntax error, an unknown key or a bad value.
    #[error("{}: {message}", Location { path: path.as_ref(), line: *line, column: *column, key })]
    Invalid {
        /// The file, when the config came from one.
        path: Option<PathBuf>,
        /// 1-based line (0 when unknown).
        line: usize,
        /// 1-based column (0 when unknown).
        column: usize,
        /// The dotted key, e.g. `tasks."images:resize".memory` (empty for
        /// syntax errors).
        key: String,
        /// What is wrong.
        message: String,
    },
}

struct Location<'a> {
    path: Option<&'a PathBuf>,
    line: usize,
    column: usize,
    key: &'a str,
}

impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.path {
            Some(path) => write!(f, "{}", path.display())?,
            None => f.write_str("config")?,
        }
        if self.line > 0 {
            write!(f, ", line {}", self.line)?;
            if self.column > 0 {
                write!(f, ", column {}", self.column)?;
            }
        }
        if !self.key.is_empty() {
            write!(f, ", key `{}`", self.key)?;
        }
        Ok(())
    }
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let column = before.rfind('\n').map_or(offset, |nl| offset - nl - 1) + 1;
    (line, column)
}

/// A TOML key, quoted when it is not bare.
pub(crate) fn toml_key(key: &str) -> String {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        key.to_owned()
    } else {
        format!("{key:?}")
    }
}

/// A serde path as a dotted TOML key path.
pub(crate) fn toml_path(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for segment in path.iter() {
        match segment {
            Segment::Seq { index } => out.push_str(&format!("[{index}]")),
            Segment::Map { key } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(&toml_key(key));
            }
            Segment::Enum { variant } => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(variant);
            }
            Segment::Unknown => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn line_and_column_are_one_based() {
        let text = "a = 1\nbb = 2\n";
        assert_eq!(line_col(text, 0), (1, 1));
        assert_eq!(line_col(text, 6), (2, 1));
        assert_eq!(line_col(text, 9), (2, 4));
    }

    #[test]
    fn keys_are_quoted_only_when_needed() {
        assert_eq!(toml_key("runtime"), "runtime");
        assert_eq!(toml_key("images:resize"), "\"images:resize\"");
    }
}
