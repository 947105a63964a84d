//! HTTP header fields of a handshake, repeats kept, names compared case-insensitively.

use std::fmt;

/// The header fields of a request or response, in the order received. A field that
/// appears several times keeps every value.
///
/// Stored as one text (every name and value, back to back) and the boundaries of each
/// field: two allocations for the whole set, and two for a copy, however many fields a
/// request has (an accept costs a few dozen allocations otherwise).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    text: String,
    /// Per field: where its name starts, where its value starts (the name's end), and
    /// where the value ends, in `text`.
    fields: Vec<[u32; 3]>,
}

impl Headers {
    /// An empty set of fields.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds the fields from httparse's output. Values that are not UTF-8 (obsolete
    /// Latin-1 text) are converted lossily.
    pub(crate) fn from_httparse(raw: &[httparse::Header<'_>]) -> Self {
        let size = raw.iter().map(|h| h.name.len() + h.value.len()).sum();
        let mut headers = Headers {
            text: String::with_capacity(size),
            fields: Vec::with_capacity(raw.len()),
        };
        for h in raw {
            let value = String::from_utf8_lossy(h.value);
            headers.push_str(h.name, value.trim());
        }
        headers
    }

    /// Appends a field.
    pub fn push(&mut self, name: impl Into<String>, value: impl Into<String>) {
        self.push_str(&name.into(), &value.into());
    }

    fn push_str(&mut self, name: &str, value: &str) {
        // Handshakes are limited to kilobytes: offsets fit in 32 bits.
        let at = |text: &String| u32::try_from(text.len()).expect("headers under 4 GiB");
        let start = at(&self.text);
        self.text.push_str(name);
        let middle = at(&self.text);
        self.text.push_str(value);
        self.fields.push([start, middle, at(&self.text)]);
    }

    fn field(&self, [start, middle, end]: [u32; 3]) -> (&str, &str) {
        let (start, middle, end) = (start as usize, middle as usize, end as usize);
        (&self.text[start..middle], &self.text[middle..end])
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    }

    /// All fields as (name, value), in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.fields.iter().map(|&field| self.field(field))
    }

    /// The number of fields.
    pub fn len(&self) -> usize {
        self.fields.len()
    }

    /// True when there are no fields.
    pub fn is_empty(&self) -> bool {
        self.fields.is_empty()
    }
}

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A header name that is not an HTTP token, or a value with CR, LF or NUL (which would let
/// a caller's data inject headers).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidHeader {
    /// The offending header's name.
    pub name: String,
    /// What is wrong with it.
    pub reason: &'static str,
}

impl fmt::Display for InvalidHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid header {:?}: {}", self.name, self.reason)
    }
}

impl std::error::Error for InvalidHeader {}

fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Checks that `name` is an HTTP token and `value` holds no CR, LF or NUL.
pub(crate) fn check_header(name: &str, value: &str) -> Result<(), InvalidHeader> {
    let name_ok = !name.is_empty() && name.bytes().all(is_token_char);
    let value_ok = !value.bytes().any(|b| matches!(b, b'\r' | b'\n' | 0));
    if !(name_ok && value_ok) {
        return Err(InvalidHeader {
            name: name.to_owned(),
            reason: "bad name or CR/LF/NUL in the value",
        });
    }
    Ok(())
}

/// Appends `name: value\r\n` to `out` after checking both.
pub(crate) fn write_header(
    out: &mut Vec<u8>,
    name: &str,
    value: &str,
) -> Result<(), InvalidHeader> {
    check_header(name, value)?;
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeats_kept_and_names_case_insensitive() {
        let mut h = Headers::new();
        h.push("X-A", "1");
        h.push("x-a", "2");
        h.push("Other", "3");
        assert_eq!(h.get("X-a"), Some("1"));
        assert_eq!(h.get_all("X-A").collect::<Vec<_>>(), ["1", "2"]);
        assert_eq!(h.len(), 3);
        assert_eq!(
            h.iter().collect::<Vec<_>>(),
            [("X-A", "1"), ("x-a", "2"), ("Other", "3")]
        );
        assert_eq!(h.get("missing"), None);
        let mut empty_value = Headers::new();
        empty_value.push("X-Empty", "");
        empty_value.push("Y", "y");
        assert_eq!(empty_value.get("x-empty"), Some(""));
        assert_eq!(empty_value.get("y"), Some("y"));
    }

    proptest::proptest! {
        // Whatever is pushed comes back in order, and a lookup finds the first field of
        // that name in any case.
        #[test]
        fn fields_come_back_as_pushed(
            fields in proptest::collection::vec(("[A-Za-z-]{0,8}", "\\PC{0,12}"), 0..12)
        ) {
            let mut headers = Headers::new();
            for (name, value) in &fields {
                headers.push(name.as_str(), value.as_str());
            }
            let back: Vec<(&str, &str)> = headers.iter().collect();
            let pushed: Vec<(&str, &str)> =
                fields.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
            proptest::prop_assert_eq!(&back, &pushed);
            for (name, _) in &fields {
                let first = fields.iter().find(|(n, _)| n.eq_ignore_ascii_case(name));
                let upper = name.to_ascii_uppercase();
                proptest::prop_assert_eq!(headers.get(&upper), first.map(|(_, v)| v.as_str()));
            }
            proptest::prop_assert_eq!(headers.clone(), headers);
        }
    }

    #[test]
    fn header_injection_refused() {
        let mut out = Vec::new();
        assert!(write_header(&mut out, "X-Ok", "fine").is_ok());
        assert!(write_header(&mut out, "X-Bad", "a\r\nSet-Cookie: x").is_err());
        assert!(write_header(&mut out, "Bad Name", "v").is_err());
        assert!(write_header(&mut out, "", "v").is_err());
        assert_eq!(out, b"X-Ok: fine\r\n");
    }
}
