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
}
