//! [`Output`]: what a handler may return as the task's result.

use serde::Serialize;

/// A value a handler returns on success; the host stores its bytes as the
/// task's result.
pub trait Output {
    /// The result bytes.
    fn into_bytes(self) -> Vec<u8>;
}

impl Output for () {
    fn into_bytes(self) -> Vec<u8> {
        Vec::new()
    }
}

impl Output for Vec<u8> {
    fn into_bytes(self) -> Vec<u8> {
        self
    }
}

impl Output for String {
    fn into_bytes(self) -> Vec<u8> {
        self.into_bytes()
    }
}

impl Output for &'static str {
    fn into_bytes(self) -> Vec<u8> {
        self.as_bytes().to_vec()
    }
}

/// A result serialized as JSON.
///
/// ```
/// use wasq_guest::{Json, Output};
///
/// #[derive(serde::Serialize)]
/// struct Thumb { width: u32 }
///
/// assert_eq!(Json(Thumb { width: 128 }).into_bytes(), br#"{"width":128}"#);
/// ```
#[derive(Debug, Clone)]
pub struct Json<T>(pub T);

impl<T: Serialize> Output for Json<T> {
    fn into_bytes(self) -> Vec<u8> {
        // Serializing plain data into a Vec does not fail; a type whose
        // Serialize impl errors yields `null` rather than a trap.
        serde_json::to_vec(&self.0).unwrap_or_else(|_| b"null".to_vec())
    }
}
