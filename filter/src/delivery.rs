//! One webhook delivery as the filter sees it: method, headers and the complete body.

/// Request headers with lowercase names. Values are raw bytes: a provider header that is not UTF-8 is
/// treated as absent by [`Headers::get`], never as a reason to panic.
#[derive(Clone, Debug, Default)]
pub struct Headers(Vec<(String, Vec<u8>)>);

impl Headers {
    pub fn new<N: AsRef<str>, V: AsRef<[u8]>>(pairs: impl IntoIterator<Item = (N, V)>) -> Self {
        Self(
            pairs
                .into_iter()
                .map(|(n, v)| (n.as_ref().to_ascii_lowercase(), v.as_ref().to_vec()))
                .collect(),
        )
    }

    /// Takes `pairs` as they are, lowercasing the names in place (Envoy's already are): no copy.
    pub fn from_owned(mut pairs: Vec<(String, Vec<u8>)>) -> Self {
        for (name, _) in &mut pairs {
            name.make_ascii_lowercase();
        }
        Self(pairs)
    }

    /// The first value of header `name` (any case) as text, if present and UTF-8.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }

    /// The first of `names` that is present.
    pub fn first_of(&self, names: &[&str]) -> Option<&str> {
        names.iter().find_map(|name| self.get(name))
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.0.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }
}

/// What a provider inspects to verify and interpret a delivery.
#[derive(Clone, Copy, Debug)]
pub struct Delivery<'a> {
    pub headers: &'a Headers,
    pub body: &'a [u8],
    /// The host's clock, unix seconds, for providers whose signatures carry a timestamp.
    pub now: u64,
    /// The claims of the ID token Envoy's JWT filter verified, for receivers whose senders prove
    /// themselves with one ([`crate::id_token`]); `None` for the others.
    pub claims: Option<&'a serde_json::Map<String, serde_json::Value>>,
}

#[cfg(test)]
mod tests {
    use super::Headers;

    #[test]
    fn owned_and_borrowed_pairs_read_alike() {
        let pairs = [
            ("X-Hub-Signature-256", &b"sha256=00"[..]),
            (":path", b"/hook/a"),
            ("bad", b"\xff"),
        ];
        let owned = Headers::from_owned(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_vec()))
                .collect(),
        );
        let borrowed = Headers::new(pairs);
        for headers in [&owned, &borrowed] {
            assert_eq!(headers.get("x-hub-signature-256"), Some("sha256=00"));
            assert_eq!(headers.get(":PATH"), Some("/hook/a"));
            assert_eq!(
                headers.get("bad"),
                None,
                "a value that is not UTF-8 is absent"
            );
            assert_eq!(headers.get("missing"), None);
        }
        assert!(owned.iter().eq(borrowed.iter()));
        assert_eq!(
            owned.iter().next().map(|(n, _)| n),
            Some("x-hub-signature-256")
        );
    }
}
