//! `--proxy-selector`, read at start-up: the label selector (the API server's string syntax) that picks
//! hookgate's own proxy pods, whose addresses alone are confirmed ([`super::confirm::ProxyPods`]). An empty
//! selector picks every pod of `--proxy-namespace`, so it is refused, as is one the API server would refuse
//! (the watch would then fail forever, and no proxy be confirmed). [`ProxySelector::unpinned`] names the
//! Envoy Gateway labels it leaves open, for a warning.

use hookgate_protocol::kubernetes::{is_label_key, is_label_value};

/// The label Envoy Gateway gives each proxy pod: the name of the Gateway it serves.
pub const OWNING_GATEWAY_NAME: &str = "gateway.envoyproxy.io/owning-gateway-name";
/// The label Envoy Gateway gives each proxy pod: the namespace of the Gateway it serves. Without it a
/// selector picks the proxies of every Gateway of that name, whichever namespace (tenant) created it.
pub const OWNING_GATEWAY_NAMESPACE: &str = "gateway.envoyproxy.io/owning-gateway-namespace";

/// A checked `--proxy-selector`.
#[derive(Debug)]
pub struct ProxySelector {
    text: String,
    requirements: Vec<Requirement>,
}

#[derive(Debug)]
struct Requirement {
    key: String,
    /// Whether it admits exactly one value of `key` (`key=v`, `key==v`, `key in (v)`).
    pins_one_value: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum SelectorError {
    #[error(
        "--proxy-selector is empty: it would pick every pod of --proxy-namespace and confirm each as \
         hookgate's proxy; give the labels of hookgate's Gateway's proxy pods, e.g. \
         {OWNING_GATEWAY_NAME}=<Gateway>,{OWNING_GATEWAY_NAMESPACE}=<its namespace>"
    )]
    Empty,
    #[error(
        "--proxy-selector `{selector}` is not a label selector: requirement {index}: {reason}"
    )]
    Invalid {
        selector: String,
        /// 1-based, in the order written.
        index: usize,
        reason: String,
    },
}

impl ProxySelector {
    /// Reads `text` as the API server reads a label selector: requirements separated by commas, each
    /// `key`, `!key`, `key=value`, `key==value`, `key!=value`, `key in (v1,v2)`, `key notin (v1,v2)`,
    /// `key>n` or `key<n`, keys and values as Kubernetes labels have them.
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        if text.trim().is_empty() {
            return Err(SelectorError::Empty);
        }
        let requirements = split_requirements(text)
            .enumerate()
            .map(|(n, part)| {
                requirement(part).map_err(|reason| SelectorError::Invalid {
                    selector: text.into(),
                    index: n + 1,
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            text: text.into(),
            requirements,
        })
    }

    /// The selector as given, for the API server.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The labels Envoy Gateway gives a proxy pod's Gateway that the selector does not pin to one value.
    pub fn unpinned(&self) -> Vec<&'static str> {
        [OWNING_GATEWAY_NAME, OWNING_GATEWAY_NAMESPACE]
            .into_iter()
            .filter(|label| {
                !self
                    .requirements
                    .iter()
                    .any(|r| r.key == *label && r.pins_one_value)
            })
            .collect()
    }
}

/// The requirements of `text`, split at the commas outside parentheses.
fn split_requirements(text: &str) -> impl Iterator<Item = &str> {
    let mut depth = 0usize;
    text.split(move |c| {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ => {}
        }
        c == ',' && depth == 0
    })
}

/// What ends a key (the API server's lexer's special characters).
fn ends_key(c: char) -> bool {
    c.is_whitespace() || matches!(c, '!' | '=' | '<' | '>' | ',' | '(' | ')')
}

/// One requirement, or why the API server would refuse it.
fn requirement(part: &str) -> Result<Requirement, String> {
    let part = part.trim();
    if part.is_empty() {
        return Err("empty (a comma too many?)".into());
    }
    if let Some(key) = part.strip_prefix('!') {
        return label_key(key.trim()).map(|key| Requirement {
            key,
            pins_one_value: false,
        });
    }
    let split = part.find(ends_key).unwrap_or(part.len());
    let (key, rest) = part.split_at(split);
    let key = label_key(key)?;
    let rest = rest.trim_start();
    let pins_one_value = if rest.is_empty() {
        false
    } else if let Some(value) = ["==", "!=", "="]
        .iter()
        .find_map(|op| rest.strip_prefix(op).map(|v| (*op, v.trim())))
    {
        label_value(value.1)?;
        value.0 != "!="
    } else if let Some(number) = rest.strip_prefix(['<', '>']) {
        number
            .trim()
            .parse::<i64>()
            .map_err(|_| format!("`{}` is not a whole number", number.trim()))?;
        false
    } else if let Some(set) = keyword(rest, "in") {
        value_set(set)? == 1
    } else if let Some(set) = keyword(rest, "notin") {
        value_set(set)?;
        false
    } else {
        return Err(format!(
            "`{rest}` after key `{key}`: expected =, ==, !=, in, notin, < or >"
        ));
    };
    Ok(Requirement {
        key,
        pins_one_value,
    })
}

/// What follows the word `word` (followed by whitespace or `(`) at the start of `rest`.
fn keyword<'a>(rest: &'a str, word: &str) -> Option<&'a str> {
    rest.strip_prefix(word)
        .filter(|after| after.starts_with(|c: char| c.is_whitespace() || c == '('))
        .map(str::trim_start)
}

/// The number of values of `(v1,v2,...)`, each a label value.
fn value_set(set: &str) -> Result<usize, String> {
    let inner = set
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("`{set}`: expected values in parentheses, `(v1,v2)`"))?;
    if inner.trim().is_empty() {
        return Err("no values in the parentheses".into());
    }
    let values: Vec<&str> = inner.split(',').map(str::trim).collect();
    for value in &values {
        label_value(value)?;
    }
    Ok(values.len())
}

fn label_key(key: &str) -> Result<String, String> {
    if is_label_key(key) {
        Ok(key.into())
    } else {
        Err(format!(
            "`{key}` is not a label key (an optional DNS subdomain and `/`, then at most 63 of \
             A-Z a-z 0-9 - _ . beginning and ending alphanumeric)"
        ))
    }
}

fn label_value(value: &str) -> Result<(), String> {
    if is_label_value(value) {
        Ok(())
    } else {
        Err(format!(
            "`{value}` is not a label value (at most 63 of A-Z a-z 0-9 - _ . beginning and ending \
             alphanumeric)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAME: &str = OWNING_GATEWAY_NAME;
    const NAMESPACE: &str = OWNING_GATEWAY_NAMESPACE;

    /// (case, selector, the Envoy Gateway labels left unpinned) for selectors the API server accepts.
    #[test]
    fn selectors_are_read_as_the_api_server_reads_them() {
        let both = format!("{NAME}=eg,{NAMESPACE}=envoy-gateway-system");
        let cases: Vec<(&str, String, Vec<&str>)> = vec![
            ("the manifests' selector", both.clone(), vec![]),
            ("with ==", format!("{NAME}==eg,{NAMESPACE}==eg-ns"), vec![]),
            (
                "with spaces",
                format!(" {NAME} = eg , {NAMESPACE} in ( eg-ns ) "),
                vec![],
            ),
            ("the name alone", format!("{NAME}=eg"), vec![NAMESPACE]),
            ("the namespace alone", format!("{NAMESPACE}=ns"), vec![NAME]),
            (
                "two namespaces",
                format!("{NAME}=eg,{NAMESPACE} in (a,b)"),
                vec![NAMESPACE],
            ),
            (
                "the namespace excluded, not pinned",
                format!("{NAME}=eg,{NAMESPACE}!=tenant"),
                vec![NAMESPACE],
            ),
            (
                "the namespace only required to exist",
                format!("{NAME}=eg,{NAMESPACE}"),
                vec![NAMESPACE],
            ),
            (
                "other labels",
                "app.kubernetes.io/name=envoy,!canary,tier notin (a,b),rank>2,x=".into(),
                vec![NAME, NAMESPACE],
            ),
        ];
        for (case, text, unpinned) in cases {
            match ProxySelector::parse(&text) {
                Ok(selector) => {
                    assert_eq!(selector.as_str(), text, "{case}");
                    assert_eq!(selector.unpinned(), unpinned, "{case}");
                }
                Err(error) => panic!("{case}: {error}"),
            }
        }
    }

    /// (case, selector, what the refusal says) for selectors refused at start-up.
    #[test]
    fn empty_and_malformed_selectors_are_refused_saying_why() {
        for (case, text, says) in [
            ("empty", "", "is empty: it would pick every pod"),
            ("blank", "  ", "is empty"),
            ("a trailing comma", "a=b,", "requirement 2: empty"),
            ("two commas", "a=b,,c=d", "requirement 2: empty"),
            ("no key", "=b", "requirement 1: `` is not a label key"),
            ("a bad key", "a@b=c", "`a@b` is not a label key"),
            ("a bad value", "a=b@c", "`b@c` is not a label value"),
            (
                "a value with a space",
                "a=b c",
                "`b c` is not a label value",
            ),
            ("two keys", "a b", "`b` after key `a`"),
            (
                "in without parentheses",
                "a in b",
                "expected values in parentheses",
            ),
            ("in with no values", "a in ()", "no values"),
            (
                "an unclosed set",
                "a in (b,c",
                "expected values in parentheses",
            ),
            (
                "a comparison with no number",
                "a>b",
                "`b` is not a whole number",
            ),
            (
                "a negation with a value",
                "!a=b",
                "`a=b` is not a label key",
            ),
            (
                "a key too long",
                &format!("{}=b", "k".repeat(64)),
                "is not a label key",
            ),
        ] {
            match ProxySelector::parse(text) {
                Ok(selector) => panic!("{case}: accepted {selector:?}"),
                Err(error) => assert!(error.to_string().contains(says), "{case}: {error}"),
            }
        }
    }
}
