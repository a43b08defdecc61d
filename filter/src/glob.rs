//! Glob matching for ref filters: `*` matches any run of characters (slashes included, so `release/*`
//! matches `release/1.2/hotfix`), `?` matches one character, everything else matches itself.

pub fn glob_matches(pattern: &str, text: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let text: Vec<char> = text.chars().collect();
    // Iterative matcher with single-star backtracking: linear memory, no recursion on attacker input.
    let (mut p, mut t) = (0usize, 0usize);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, t));
                p += 1;
            }
            Some(&c) if c == '?' || c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    p = sp + 1;
                    t = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::glob_matches;

    #[test]
    fn globs() {
        assert!(glob_matches("main", "main"));
        assert!(!glob_matches("main", "maint"));
        assert!(glob_matches("release/*", "release/1.2/hotfix"));
        assert!(!glob_matches("release/*", "releases/1"));
        assert!(glob_matches("v*.*.*", "v1.22.3"));
        assert!(!glob_matches("v*.*.*", "v1.22"));
        assert!(glob_matches("v?", "v1"));
        assert!(!glob_matches("v?", "v12"));
        assert!(glob_matches("*", ""));
        assert!(glob_matches("a*b*c", "aXXbYYbc"));
    }
}
