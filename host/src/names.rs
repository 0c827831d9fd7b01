//! Names a producer chooses: task types, task ids and queue names, and the
//! rules they follow. A leaf: it imports nothing of wasq's.

/// The longest task id, task type or queue name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// Why a name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// The name is empty.
    #[error("{what} is empty")]
    Empty {
        /// What the name is of (`task type`, `queue name`, ...).
        what: String,
    },
    /// The name is longer than [`MAX_NAME_LEN`] bytes.
    #[error("{what} is {len} bytes long; the limit is {MAX_NAME_LEN}")]
    TooLong {
        /// What the name is of.
        what: String,
        /// Its length in bytes.
        len: usize,
    },
    /// The name holds control characters.
    #[error("{what} {name:?} contains control characters")]
    Control {
        /// What the name is of.
        what: String,
        /// The name.
        name: String,
    },
    /// A queue name holds braces or whitespace.
    #[error(
        "queue name {0:?} may not contain braces or whitespace (it becomes the key hash tag {{{0}}})"
    )]
    NotAHashTag(String),
}

/// A task type or task id (`what` says which): not empty, at most
/// [`MAX_NAME_LEN`] bytes, no control characters.
///
/// ```
/// use wasq::names::check_name;
/// assert!(check_name("task type", "notifications:email").is_ok());
/// assert!(check_name("task id", "").is_err());
/// ```
pub fn check_name(what: &str, name: &str) -> Result<(), NameError> {
    if name.is_empty() {
        return Err(NameError::Empty { what: what.into() });
    }
    if name.len() > MAX_NAME_LEN {
        return Err(NameError::TooLong {
            what: what.into(),
            len: name.len(),
        });
    }
    if name.chars().any(char::is_control) {
        return Err(NameError::Control {
            what: what.into(),
            name: name.into(),
        });
    }
    Ok(())
}

/// A queue name: as [`check_name`], and without braces or whitespace,
/// since the name becomes the `{queue}` hash tag of every key.
///
/// ```
/// use wasq::names::check_queue_name;
/// assert!(check_queue_name("images").is_ok());
/// assert!(check_queue_name("a{b}").is_err());
/// assert!(check_queue_name("").is_err());
/// ```
pub fn check_queue_name(name: &str) -> Result<(), NameError> {
    check_name("queue name", name)?;
    if name.contains(['{', '}']) || name.chars().any(char::is_whitespace) {
        return Err(NameError::NotAHashTag(name.into()));
    }
    Ok(())
}
