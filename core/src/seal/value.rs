//! [`SecretValue`]: the one type that holds a plaintext secret value.

use std::fmt;

use zeroize::Zeroizing;

/// A plaintext secret value (a password, a token, a certificate's private key...).
///
/// The bytes are wiped from memory when the value is dropped, and `Debug`/`Display` print
/// `[REDACTED]`, so a value that reaches a log line or an error message by accident shows
/// nothing. There is deliberately no `Serialize` and no `Clone`: a value leaves this type
/// only through [`SecretValue::expose`], which call sites can grep for.
pub struct SecretValue(Zeroizing<Vec<u8>>);

impl SecretValue {
    /// Takes ownership of `bytes` without copying them.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The plaintext bytes. Name chosen so every read of a secret reads as deliberate.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }

    /// The plaintext as UTF-8 text; the error names only the byte offset, never content.
    pub fn expose_str(&self) -> Result<&str, std::str::Utf8Error> {
        std::str::from_utf8(&self.0)
    }

    /// Length in bytes (not secret: ciphertext length reveals it anyway).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when the value holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<u8>> for SecretValue {
    fn from(bytes: Vec<u8>) -> Self {
        Self::new(bytes)
    }
}

impl From<String> for SecretValue {
    fn from(text: String) -> Self {
        // `into_bytes` moves the buffer, so no unwiped copy of the text is left behind.
        Self::new(text.into_bytes())
    }
}

impl From<&str> for SecretValue {
    fn from(text: &str) -> Self {
        Self::new(text.as_bytes().to_vec())
    }
}

impl From<&[u8]> for SecretValue {
    fn from(bytes: &[u8]) -> Self {
        Self::new(bytes.to_vec())
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

impl fmt::Display for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[REDACTED]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting_never_shows_the_value() {
        let value = SecretValue::from("hunter2-password");
        for shown in [
            format!("{value}"),
            format!("{value:?}"),
            format!("{value:#?}"),
            format!("{:>30}", value),
            format!("{:?}", Some(&value)),
            format!("{:?}", vec![&value]),
        ] {
            assert!(!shown.contains("hunter2"), "leaked in {shown:?}");
            assert!(shown.contains("[REDACTED]"), "{shown:?}");
        }
    }

    #[test]
    fn constructors_keep_the_bytes() {
        assert_eq!(SecretValue::from("abc").expose(), b"abc");
        assert_eq!(SecretValue::from(String::from("abc")).expose_str(), Ok("abc"));
        assert_eq!(SecretValue::from(vec![0u8, 255]).expose(), &[0, 255]);
        assert_eq!(SecretValue::from(&b"\x01"[..]).len(), 1);
        assert!(SecretValue::new(Vec::new()).is_empty());
    }

    #[test]
    fn non_utf8_is_an_error_that_hides_the_bytes() {
        let value = SecretValue::from(vec![b's', b'3', 0xff, b'x']);
        let err = value.expose_str().unwrap_err();
        assert_eq!(err.valid_up_to(), 2);
        assert!(!err.to_string().contains("s3"));
    }
}
