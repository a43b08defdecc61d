use serde_json::json;

use super::*;

const FLUX: &[&str] = TARGET_VARIABLES;

/// Flux's `res` for an object with `annotations` (none when empty, as Flux serializes metadata).
fn resource(name: &str, labels: serde_json::Value, annotations: serde_json::Value) -> Value {
    let mut metadata = json!({"name": name, "namespace": "apps", "labels": labels});
    if annotations.as_object().is_some_and(|a| !a.is_empty()) {
        metadata["annotations"] = annotations;
    }
    from_json(
        &json!({"apiVersion": "image.toolkit.fluxcd.io/v1", "kind": "ImageRepository",
                      "metadata": metadata}),
    )
}

fn evaluate(source: &str, res: Value, req: serde_json::Value) -> Result<bool, EvaluationError> {
    Expression::compile(source, FLUX)
        .unwrap_or_else(|e| panic!("{source}: {e}"))
        .evaluate(vec![("res", res), ("req", from_json(&req))])
}

/// Flux's documented `resourceFilter` and `filter` examples (docs/spec/v1/receivers.md), verbatim, and
/// the cases of its own tests.
#[test]
fn flux_documented_filters_run_unchanged() {
    let gar = json!({"action": "INSERT",
        "digest": "us-east1-docker.pkg.dev/my-project/my-repo/hello-world@sha256:6ec128e26cd5",
        "tag": "us-east1-docker.pkg.dev/my-project/my-repo/hello-world:1.1"});
    let annotated = |value: &str| json!({"update-image": value});
    // (case, expression, resource, payload, expected)
    type Case = (
        &'static str,
        &'static str,
        Value,
        serde_json::Value,
        Result<bool, EvaluationError>,
    );
    let cases: Vec<Case> = vec![
        (
            "tag contains the name",
            "req.tag.contains(res.metadata.name)",
            resource("hello-world", json!({}), json!({})),
            gar.clone(),
            Ok(true),
        ),
        (
            "tag does not contain the name",
            "req.tag.contains(res.metadata.name)",
            resource("other", json!({}), json!({})),
            gar.clone(),
            Ok(false),
        ),
        (
            "annotation matches the image of the tag",
            "has(res.metadata.annotations) && req.tag.split('/').last().value().split(\":\").first().value() == res.metadata.annotations['update-image']",
            resource("x", json!({}), annotated("hello-world")),
            gar.clone(),
            Ok(true),
        ),
        (
            "annotation names another image",
            "has(res.metadata.annotations) && req.tag.split('/').last().value().split(\":\").first().value() == res.metadata.annotations['update-image']",
            resource("x", json!({}), annotated("other")),
            gar.clone(),
            Ok(false),
        ),
        (
            "no annotations: has() guards",
            "has(res.metadata.annotations) && req.tag.split('/').last().value().split(\":\").first().value() == res.metadata.annotations['update-image']",
            resource("x", json!({}), json!({})),
            gar.clone(),
            Ok(false),
        ),
        (
            "per-resource label filter",
            "res.metadata.labels['environment'] == 'production'",
            resource("x", json!({"environment": "production"}), json!({})),
            gar.clone(),
            Ok(true),
        ),
        (
            "per-resource label filter, other environment",
            "res.metadata.labels['environment'] == 'production'",
            resource("x", json!({"environment": "staging"}), json!({})),
            gar,
            Ok(false),
        ),
        (
            "Flux's test: name and nested payload field",
            "res.metadata.name == 'test-resource' && req.target.repository == 'hello-world'",
            resource("test-resource", json!({}), json!({})),
            json!({"target": {"repository": "hello-world"}}),
            Ok(true),
        ),
        (
            "Flux's test: a boolean field",
            "req.bool == true",
            resource("x", json!({}), json!({})),
            json!({"bool": true}),
            Ok(true),
        ),
        (
            "Flux's test: split, last, value, startsWith",
            "res.metadata.name == 'test-resource' && req.image.source.split(':').last().value().startsWith('v')",
            resource("test-resource", json!({}), json!({})),
            json!({"image": {"source": "hello-world:v1.0.0"}}),
            Ok(true),
        ),
        (
            "a missing payload field is an error (fails closed)",
            "req.tag.contains(res.metadata.name)",
            resource("x", json!({}), json!({})),
            json!({}),
            Err(EvaluationError("no such key: tag".into())),
        ),
        (
            "a missing annotation is an error",
            "res.metadata.annotations['update-image'] == 'x'",
            resource("x", json!({}), json!({})),
            json!({}),
            Err(EvaluationError("no such key: annotations".into())),
        ),
        (
            "JSON integers compare to CEL integers",
            "req.count == 2 && req.count > 1",
            resource("x", json!({}), json!({})),
            json!({"count": 2}),
            Ok(true),
        ),
        (
            "a bounded comprehension",
            "req.commits.exists(c, c.modified.exists_one(f, f.startsWith('apps/')))",
            resource("x", json!({}), json!({})),
            json!({}),
            Err(EvaluationError("no such key: commits".into())),
        ),
    ];
    let mut failures = Vec::new();
    for (case, source, res, req, expected) in cases {
        // Nested comprehensions are refused: that case checks the refusal instead.
        if source.contains("exists_one") {
            assert!(Expression::compile(source, FLUX).is_err(), "{case}");
            continue;
        }
        let got = evaluate(source, res, req);
        if got != expected {
            failures.push(format!("{case}: want {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn compile_errors_name_what_is_wrong() {
    let deep_parentheses = format!("{}true{}", "(".repeat(13), ")".repeat(13));
    let long = format!("req.a == '{}'", "x".repeat(MAX_SOURCE_BYTES));
    let many_nodes = format!("req.a == [{}]", vec!["1"; MAX_NODES].join(","));
    let deep_chain = format!("req{} == 1", ".a".repeat(40));
    let comprehensions = ["req.a.all(x, x == 1)"; 5].join(" && ");
    let nots = format!("{}true", "!".repeat(13));
    let conditionals = format!("{}true", "true ? true : ".repeat(12));
    // (case, expression, reason)
    let cases: Vec<(&str, &str, &str)> = vec![
        ("empty", " ", "is empty"),
        ("syntax: a missing operand", "req.a ==", "invalid CEL: unexpected end of expression"),
        ("syntax: unterminated string", "req.a == 'x", "invalid CEL: unterminated string at byte 9"),
        ("syntax: a trailing comma in a call", "req.a.startsWith('x',)", "invalid CEL: unexpected token at byte 21"),
        ("syntax: mixed unary operators", "!-req.a", "invalid CEL: unexpected token at byte 1"),
        ("syntax: an integer out of range", "req.a == 9223372036854775808", "invalid CEL: number at byte 9 out of range"),
        ("syntax: optional select", "req?.a == 1", "invalid CEL: optional syntax (?. and [?) is not supported"),
        ("syntax: a comment", "true // yes", "invalid CEL: unexpected token at byte 6"),
        ("syntax: an unknown character", "req.a == #", "invalid CEL: unexpected character at byte 9"),
        ("undeclared variable", "requrest.body.value", "undeclared reference to 'requrest'"),
        ("claims outside OIDC receivers", "claims.sub == 'x'", "undeclared reference to 'claims'"),
        ("unknown function", "req.a.matches('x')", "undeclared reference to 'matches'"),
        ("unknown global function", "timestamp(req.a) == 1", "undeclared reference to 'timestamp'"),
        ("arity", "req.a.startsWith()", "startsWith() called with the wrong number of arguments"),
        ("method as a global", "contains(req.a, 'x')", "contains() called with the wrong number of arguments"),
        ("a string result", "'test'", "must return a boolean, not string"),
        ("an arithmetic result", "req.a + 1", "must return a boolean, not int"),
        ("a list result", "[true]", "must return a boolean, not list(bool)"),
        // cel-go types a payload field `dyn`, and Flux wants `bool`: `req.tag == true` is a boolean.
        ("a payload field result", "req.tag", "must return a boolean, not dyn"),
        ("too long", &long, "is longer than 1024 bytes"),
        ("deep brackets", &deep_parentheses, "nests deeper than 12 levels (brackets, calls or conditionals)"),
        ("many negations", &nots, "has more than 12 unary operators in a row"),
        ("many conditionals", &conditionals, "nests deeper than 12 levels (brackets, calls or conditionals)"),
        ("too many nodes", &many_nodes, "has more than 256 nodes"),
        ("too deep a tree", &deep_chain, "nests deeper than 32 levels"),
        ("nested comprehension", "req.a.exists(x, req.b.exists(y, x == y))", "has a comprehension inside another (quadratic time)"),
        ("map", "req.a.map(x, x + 1).size() > 0", "map() and filter() are not supported (quadratic time): use all(), exists() or exists_one()"),
        ("filter", "size(req.a.filter(x, x > 1)) > 0", "map() and filter() are not supported (quadratic time): use all(), exists() or exists_one()"),
        ("too many comprehensions", &comprehensions, "has more than 4 comprehensions"),
        ("a comprehension variable hiding one", "req.a.all(res, res == 1)", "comprehension variable 'res' hides a variable"),
        ("a message literal", "Foo{a: 1} == req.a", "invalid CEL: message literals are not supported"),
    ];
    let mut failures = Vec::new();
    for (case, source, reason) in cases {
        match Expression::compile(source, FLUX) {
            Ok(_) => failures.push(format!("{case}: compiled")),
            Err(CompileError(got)) if got.starts_with(reason) => {}
            Err(CompileError(got)) => {
                failures.push(format!("{case}: want `{reason}`, got `{got}`"))
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(Expression::compile("claims.sub == 'x'", &["res", "req", "claims"]).is_ok());
}

/// What the interpreter would panic on, or compute without bound, is an error.
#[test]
fn evaluation_is_bounded_and_never_panics() {
    let big = "x".repeat(MAX_BUILT);
    let parts = vec!["a"; MAX_BUILT + 1].join(",");
    // (case, expression, payload, expected)
    let cases: Vec<(&str, &str, serde_json::Value, Result<bool, EvaluationError>)> = vec![
        (
            "a comprehension over a string",
            "req.a.all(x, true)",
            json!({"a": "text"}),
            Err(EvaluationError(
                "a comprehension needs a list or a map, not a string".into(),
            )),
        ),
        (
            "a comprehension over a map",
            "req.a.exists(k, k == 'b')",
            json!({"a": {"b": 1}}),
            Ok(true),
        ),
        (
            "exists_one",
            "req.a.exists_one(x, x == 2)",
            json!({"a": [1, 2, 3]}),
            Ok(true),
        ),
        (
            "+ within the bound",
            "req.a + 'y' != ''",
            json!({"a": "x"}),
            Ok(true),
        ),
        (
            "+ over the bound",
            "req.a + req.a != ''",
            json!({"a": big}),
            Err(EvaluationError(
                "+ builds a value over 16384 bytes or elements".into(),
            )),
        ),
        (
            "split over the bound",
            "req.a.split(',').size() > 0",
            json!({"a": parts}),
            Err(EvaluationError(
                "split() gives more than 16384 parts".into(),
            )),
        ),
        (
            "last of nothing",
            "[].last().value() == 1",
            json!({}),
            Err(EvaluationError("last() of an empty list".into())),
        ),
        (
            // JSON numbers are doubles: int() makes one an int (2^62), whose arithmetic is checked.
            "integer overflow",
            "int(req.a) * 2 > 0",
            json!({"a": 4_611_686_018_427_387_904u64}),
            Err(EvaluationError("integer overflow".into())),
        ),
        (
            "division by zero",
            "1 / int(req.a) == 1",
            json!({"a": 0}),
            Err(EvaluationError("division by zero".into())),
        ),
        (
            "a type error shows no value",
            "req.a < 1",
            json!({"a": "secret-looking-value"}),
            Err(EvaluationError(
                "no such overload: < applied to (string, int)".into(),
            )),
        ),
        (
            // cel-go: an index past the end is an error (cel-interpreter gave null).
            "a huge list index",
            "req.a[9223372036854775807] == 1",
            json!({"a": [1]}),
            Err(EvaluationError("index out of range".into())),
        ),
    ];
    let mut failures = Vec::new();
    for (case, source, req, expected) in cases {
        let expression =
            Expression::compile(source, &["req"]).unwrap_or_else(|e| panic!("{case}: {e}"));
        let got = expression.evaluate(vec![("req", from_json(&req))]);
        if got != expected {
            failures.push(format!("{case}: want {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn reads_are_the_payload_fields_referenced() {
    let fields = |paths: &[&[&str]]| {
        Reads::Fields(
            paths
                .iter()
                .map(|p| p.iter().map(|s| s.to_string()).collect())
                .collect(),
        )
    };
    // (case, expression, what it reads of req)
    let cases: Vec<(&str, &str, Reads)> = vec![
        ("no payload", "res.metadata.name == 'x'", Reads::Nothing),
        (
            "a field",
            "req.tag.contains(res.metadata.name)",
            fields(&[&["tag"]]),
        ),
        (
            "nested",
            "req.target.repository == 'a'",
            fields(&[&["target", "repository"]]),
        ),
        ("has()", "has(req.a.b)", fields(&[&["a", "b"]])),
        (
            "constant index",
            "req['a']['b-c'] == 1",
            fields(&[&["a", "b-c"]]),
        ),
        (
            "computed index ends the path",
            "req.a[res.metadata.name].b == 1",
            fields(&[&["a"]]),
        ),
        (
            "a list index ends the path",
            "req.commits[0].id == 'x'",
            fields(&[&["commits"]]),
        ),
        (
            "several",
            "req.a == 1 || req.b.c == 2",
            fields(&[&["a"], &["b", "c"]]),
        ),
        (
            "a comprehension range",
            "req.commits.exists(c, c.id == 'x')",
            fields(&[&["commits"]]),
        ),
        ("the whole payload", "size(req) > 0", Reads::Whole),
        (
            "a computed top-level key",
            "req[res.metadata.name] == 1",
            Reads::Whole,
        ),
    ];
    for (case, source, reads) in cases {
        let expression =
            Expression::compile(source, FLUX).unwrap_or_else(|e| panic!("{case}: {e}"));
        assert_eq!(expression.reads("req"), reads, "{case}");
    }
}

#[test]
fn pruning_keeps_only_the_paths_read() {
    let payload = json!({"tag": "v1", "secret": "hunter2", "target": {"repository": "r", "token": "t"},
                         "list": [1, 2], "scalar": 5});
    let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // (case, paths, pruned)
    let cases = [
        ("one field", vec![path(&["tag"])], json!({"tag": "v1"})),
        (
            "a nested field only",
            vec![path(&["target", "repository"])],
            json!({"target": {"repository": "r"}}),
        ),
        (
            "an absent field stays absent",
            vec![path(&["missing", "x"])],
            json!({}),
        ),
        // `req.scalar.x` is an error and `has(req.scalar.x)` false on both.
        (
            "through a scalar",
            vec![path(&["scalar", "x"])],
            json!({"scalar": 5}),
        ),
        (
            "a prefix covers a longer path",
            vec![path(&["target", "repository"]), path(&["target"])],
            json!({"target": {"repository": "r", "token": "t"}}),
        ),
        (
            "a list whole",
            vec![path(&["list"])],
            json!({"list": [1, 2]}),
        ),
    ];
    for (case, paths, pruned) in cases {
        assert_eq!(prune(&payload, &paths), pruned, "{case}");
    }
}

/// Expressions made of random CEL fragments, valid or not, over a payload of every JSON type: compiling
/// and evaluating each answers, never panics (a panic kills the Wasm VM): the interpreter panics on some
/// trees (a comprehension over a string), which the compile step must rewrite or refuse.
#[test]
fn generated_expressions_never_panic() {
    const FRAGMENTS: &[&str] = &[
        "req",
        "res",
        ".a",
        ".b",
        ".metadata",
        ".name",
        "[0]",
        "['a']",
        "[",
        "]",
        "(",
        ")",
        "{",
        "}",
        ",",
        ":",
        "?",
        "!",
        "-",
        "+",
        "*",
        "/",
        "%",
        "==",
        "!=",
        "<",
        ">=",
        "&&",
        "||",
        " in ",
        "1",
        "0u",
        "1.5",
        "-9223372036854775807",
        "'x'",
        "\"y\"",
        "true",
        "null",
        "size(",
        ".size()",
        ".contains(",
        ".startsWith(",
        ".split(",
        ".first()",
        ".last()",
        ".value()",
        ".all(x, ",
        ".exists(x, ",
        ".exists_one(x, ",
        ".map(x, ",
        "has(",
        "x",
        "int(",
        "string(",
        "double(",
        "'",
        "\\",
        "9999999999999999999",
        "0x1F",
        "1e3",
        " ",
    ];
    let payload = from_json(
        &json!({"a": [1, "two", 3.5, null, {"b": true}], "b": {"a": "x", "0": 1},
                                    "metadata": {"name": "n"}, "name": 18446744073709551615u64}),
    );
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let (mut compiled, mut evaluated) = (0, 0);
    for _ in 0..60_000 {
        let length = 1 + next() % 12;
        let fragment: String = (0..length)
            .map(|_| FRAGMENTS[(next() % FRAGMENTS.len() as u64) as usize])
            .collect();
        // Also compared to a field: most fragments are not booleans, which Flux's type check refuses.
        for source in [fragment.clone(), format!("({fragment}) == req.b")] {
            let outcome = std::panic::catch_unwind(|| {
                Expression::compile(&source, FLUX).map(|e| {
                    e.evaluate(vec![("res", payload.clone()), ("req", payload.clone())])
                        .is_ok()
                })
            });
            match outcome {
                Err(_) => panic!("panicked on {source:?}"),
                Ok(Ok(ok)) => {
                    compiled += 1;
                    evaluated += usize::from(ok);
                }
                Ok(Err(_)) => {}
            }
        }
    }
    assert!(
        compiled > 500 && evaluated > 100,
        "{compiled} compiled, {evaluated} evaluated"
    );
}

/// Issue 22, item 8: an evaluation error never carries a value of the input. The interpreter formats a
/// wrongly typed argument of `startsWith`, `endsWith`, `split`, `first` and `last` with `{:?}`; the error
/// says its kind. A missing field is named (the expression wrote it); a computed index that misses is null.
#[test]
fn evaluation_errors_never_show_input_values() {
    const VALUE: &str = "secret-looking-value";
    let payload = json!({"a": {"k": VALUE}, "l": [VALUE], "s": "x", "m": {"x": 1}, "key": VALUE});
    let cases = [
        ("startsWith, a map argument", "'x'.startsWith(req.a)"),
        ("startsWith, a list argument", "'x'.startsWith(req.l)"),
        ("endsWith, a map argument", "'x'.endsWith(req.a)"),
        ("split, a map argument", "size('a,b'.split(req.a)) > 0"),
        ("split, a map target", "size(req.a.split(',')) > 0"),
        ("first, a map target", "req.a.first().value() == 'x'"),
        ("last, a map target", "req.a.last().value() == 'x'"),
        ("a computed index that misses", "req.m[req.key] > 0"),
    ];
    for (case, source) in cases {
        let error = evaluate(source, Value::Null, payload.clone()).expect_err(case);
        assert!(
            !error.to_string().contains("secret-looking"),
            "{case}: {error}"
        );
    }
    let error = evaluate("'x'.startsWith(req.a)", Value::Null, payload.clone()).unwrap_err();
    assert_eq!(error.to_string(), "expected string, got map");
    let error = evaluate("req.a.nokey == 'x'", Value::Null, payload).unwrap_err();
    assert_eq!(error.to_string(), "no such key: nokey");
}
