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

/// What cel-interpreter panicked on, or computed without bound, is an error.
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
    let object = json!({"tag": "v1", "secret": "hunter2", "target": {"repository": "r", "token": "t"},
                         "list": [1, 2], "scalar": 5});
    let list = json!([1]);
    let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    // (case, payload, paths, pruned)
    let cases = [
        (
            "one field",
            &object,
            vec![path(&["tag"])],
            json!({"tag": "v1"}),
        ),
        (
            "a nested field only",
            &object,
            vec![path(&["target", "repository"])],
            json!({"target": {"repository": "r"}}),
        ),
        (
            "an absent field stays absent",
            &object,
            vec![path(&["missing", "x"])],
            json!({}),
        ),
        // `req.scalar.x` is an error and `has(req.scalar.x)` false whatever the scalar: nothing of it
        // is forwarded.
        (
            "through a scalar",
            &object,
            vec![path(&["scalar", "x"])],
            json!({"scalar": 0}),
        ),
        (
            "through a list, nothing of it",
            &object,
            vec![path(&["list", "x"])],
            json!({"list": []}),
        ),
        (
            "through a string, nothing of it",
            &object,
            vec![path(&["tag", "x"])],
            json!({"tag": ""}),
        ),
        (
            "a prefix covers a longer path",
            &object,
            vec![path(&["target", "repository"]), path(&["target"])],
            json!({"target": {"repository": "r", "token": "t"}}),
        ),
        (
            "a list whole",
            &object,
            vec![path(&["list"])],
            json!({"list": [1, 2]}),
        ),
        // `has(req.a)` is an error on a list, false on `{}`: the list stays a list.
        ("a list at the top", &list, vec![path(&["a"])], json!([])),
    ];
    for (case, payload, paths, pruned) in cases {
        assert_eq!(prune(payload, &paths), pruned, "{case}");
    }
}

/// Expressions made of random CEL fragments, valid or not, over a payload of every JSON type: compiling
/// and evaluating each answers, never panics (a panic kills the Wasm VM; cel-interpreter, which ran them
/// before, panicked on a comprehension over a string).
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

/// Issue 22, item 8: an evaluation error never carries a value of the input. cel-interpreter formatted a
/// wrongly typed argument of `startsWith`, `endsWith`, `split`, `first` and `last` with `{:?}`; the error
/// says its kind. A missing field is named (the expression wrote it); a computed key that misses is not.
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

/// What cel-go answers, as Flux v1.9.3 runs it, hookgate answers (issue 22, item 4). Every expected
/// answer is cel-go's: `tools/cel-oracle` (fluxcd/pkg/runtime v0.110.1's `cel.NewExpression` with Flux's
/// options, cel-go v0.27.0, the payload decoded by `encoding/json`) ran each case; `Refused` is its
/// compile (type check) error, `Fails` an evaluation error. The facts behind them, in cel-go's source:
/// `interpreter/interpretable.go` (`evalOr`, `evalAnd`: an error on either side is absorbed),
/// `common/types/string.go` (`Size` counts runes), `common/types/{double,int}.go` (`Equal`, `Compare`
/// across numeric types, no mixed `Add`), `common/types/list.go` (`IndexOrError` takes an integral
/// double), `interpreter/attributes.go` (`refQualify`: `has()` of a scalar's field is false),
/// `interpreter/decorators.go` (`x in []` is the constant false).
#[test]
fn expressions_answer_as_cel_go_answers() {
    #[derive(Debug, PartialEq)]
    enum Answer {
        True,
        False,
        /// cel-go's type check refuses it.
        Refused,
        /// An evaluation error.
        Fails,
    }
    use Answer::*;
    let payload = json!({"s": "héllo", "jp": "日本", "n": 1, "f": 1.5, "nf": -1.5, "neg": -3, "huge": 1e19,
        "i": 1, "h": 0.5, "i2": 5, "big": 9007199254740993u64, "mil": 1000000, "m7": 12345678, "small": 1e-05,
        "l": [1, 2, 3], "obj": {"a": 1}, "m2": {"1": "v"}, "k": 1, "head_commit": null, "z": null, "t": true,
        "tag": "a/b:c", "mix": [1, {"a": 1}], "mix2": [1, {"a": 2}], "x": 2, "frac": 0.1});
    // (case, expression, cel-go's answer)
    let cases: &[(&str, &str, Answer)] = &[
        (
            "|| absorbs an error on its left",
            "req.ref == 'x' || true",
            True,
        ),
        (
            "|| absorbs an error on its right",
            "true || req.ref == 'x'",
            True,
        ),
        (
            "&& absorbs an error on its left",
            "req.ref == 'x' && false",
            False,
        ),
        (
            "&& absorbs an error on its right",
            "false && req.ref == 'x'",
            False,
        ),
        (
            "|| of an error and false is the error",
            "req.ref == 'x' || false",
            Fails,
        ),
        (
            "&& of an error and true is the error",
            "req.ref == 'x' && true",
            Fails,
        ),
        ("|| absorbs a non-boolean operand", "req.s || true", True),
        (
            "exists absorbs an error on one element",
            "req.mix.exists(x, x.a == 1)",
            True,
        ),
        (
            "all: a false element beats an error",
            "req.mix2.all(x, x.a == 1)",
            False,
        ),
        (
            "all: an error when no element is false",
            "req.mix.all(x, x.a == 1)",
            Fails,
        ),
        (
            "exists_one: an error stays",
            "req.mix.exists_one(x, x.a == 1)",
            Fails,
        ),
        ("! of an error", "!(req.ref == 'x')", Fails),
        (
            "a conditional on an error",
            "(req.ref == 'x') ? true : false",
            Fails,
        ),
        ("size() counts code points", "size(req.s) == 5", True),
        ("size() of CJK", "req.jp.size() == 2", True),
        ("size() of a literal", "size('€') == 1", True),
        ("a JSON number equals an int", "req.n == 1", True),
        ("a JSON number equals a uint", "req.n == 1u", True),
        ("a JSON number equals a double", "req.n == 1.0", True),
        ("1.5 is not 1", "req.f == 1", False),
        (
            "cross-type ordering",
            "req.n > 0 && req.f < 2 && req.n <= 1u",
            True,
        ),
        ("no mixed arithmetic: double + int", "req.n + 1 == 2", Fails),
        ("double + double", "req.n + 1.0 == 2.0", True),
        ("int() then int arithmetic", "int(req.n) + 1 == 2", True),
        (
            "int() truncates",
            "int(req.f) == 1 && int(req.nf) == -1",
            True,
        ),
        ("int() out of range", "int(req.huge) == 0", Fails),
        ("uint() of a negative", "uint(req.neg) == 0u", Fails),
        ("a double list index", "req.l[req.i] == 2", True),
        ("a fractional list index", "req.l[req.h] == 2", Fails),
        ("an index past the end", "req.l[req.i2] == 2", Fails),
        (
            "a big integer is a double",
            "req.big == 9007199254740993",
            True,
        ),
        ("string() of a double", "string(req.f) == '1.5'", True),
        (
            "string() of an integral double",
            "string(req.n) == '1'",
            True,
        ),
        ("string() of a million", "string(req.mil) == '1e+06'", True),
        (
            "string() of 12345678",
            "string(req.m7) == '1.2345678e+07'",
            True,
        ),
        ("string() of 0.00001", "string(req.small) == '1e-05'", True),
        ("string() of 0.1", "string(req.frac) == '0.1'", True),
        ("in a list of doubles", "1 in req.l", True),
        ("in a map's keys", "'a' in req.obj", True),
        ("an int is no string key", "1 in req.m2", False),
        ("in a literal list", "req.x in [1, 2]", True),
        ("an error in [] is false", "req.ref in []", False),
        ("list equality across numbers", "req.l == [1, 2, 3]", True),
        ("map equality", "req.obj == {'a': 1}", True),
        (
            "a map index of another key type",
            "req.m2[req.k] == 'v'",
            Fails,
        ),
        ("has() of null's field", "has(req.head_commit.id)", False),
        ("has() of a string's field", "has(req.s.x)", False),
        ("has() of a list's field", "has(req.l.x)", Fails),
        ("has() under a missing field", "has(req.missing.x)", Fails),
        ("has() of a present field", "has(req.obj.a)", True),
        ("a string index", "req.s[0] == 'h'", Fails),
        ("a literal string index", "'abc'[0] == 'a'", Refused),
        (
            "the int overflow of a literal string index",
            "'abc'[9223372036854775807] == 'a'",
            Refused,
        ),
        (
            "negating the least int",
            "-(-9223372036854775808) < 0",
            Fails,
        ),
        ("the least int literal", "-9223372036854775808 < 0", True),
        (
            "int addition overflows",
            "9223372036854775807 + 1 > 0",
            Fails,
        ),
        ("a double negation is dropped", "--req.n == 1", True),
        ("a field is not a boolean", "req.t", Refused),
        ("a field compared to true", "req.t == true", True),
        ("a mixed list literal", "[1, 'a'] == req.l", Refused),
        ("int == double literals", "1 == 1.0", Refused),
        ("int < double literals", "1 < 1.5", True),
        ("strings order", "'a' < 'b'", True),
        (
            "split('') splits code points",
            "req.s.split('') == ['h', 'é', 'l', 'l', 'o']",
            True,
        ),
        (
            "split, last, value",
            "req.tag.split('/').last().value() == 'b:c'",
            True,
        ),
        (
            "first() of an empty list",
            "req.tag.split('/').first().value() == 'a' && [].first().value() == 1",
            Fails,
        ),
        ("contains('')", "req.tag.contains('')", True),
        ("int division by zero", "1 / 0 == 0", Fails),
        ("double division by zero", "1.0 / 0.0 > 0.0", True),
        ("int modulo sign", "5 % -3 == 2 && -7 / 2 == -3", True),
        (
            "a comprehension over a double",
            "req.f.exists(x, true)",
            Fails,
        ),
        (
            "a comprehension over a map's keys",
            "req.obj.exists(k, k == 'a')",
            True,
        ),
        ("null equals null", "req.z == null && null == req.z", True),
        ("a number is not null", "req.n == null", False),
        ("all over doubles", "req.l.all(x, x > 0)", True),
        ("uint arithmetic underflows", "1u - 2u > 0u", Fails),
        (
            "int of a string",
            "int('12') == 12 && double('1.5') == 1.5 && uint('7') == 7u",
            True,
        ),
        (
            "the conditional's branches",
            "req.n == 1 ? req.t : false",
            Refused,
        ),
        ("a double map key", "{1: 'a'}[1.0] == 'a'", Refused),
        ("an int map key", "{1: 'a'}[req.k] == 'a'", True),
    ];
    let mut failures = Vec::new();
    for (case, source, expected) in cases {
        let got = match Expression::compile(source, FLUX) {
            Err(_) => Refused,
            Ok(e) => match e.evaluate(vec![("res", Value::Null), ("req", from_json(&payload))]) {
                Ok(true) => True,
                Ok(false) => False,
                Err(_) => Fails,
            },
        };
        if got != *expected {
            failures.push(format!(
                "{case}: `{source}`: cel-go {expected:?}, hookgate {got:?}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Issue 22, item 9: one evaluation does at most [`BUDGET`] steps, whatever the expression and input. The
/// first case is 10^10 comparisons without the budget (minutes); each of these is quadratic in its input.
#[test]
fn evaluation_work_is_bounded_by_the_budget() {
    let zeros = json!({"a": vec![0; 100_000]});
    let long = json!({"a": vec![0; 10_000], "s": "x".repeat(1 << 20), "m": (0..10_000)
        .map(|i| (i.to_string(), json!(i))).collect::<serde_json::Map<_, _>>()});
    let mut c = vec![0; 10_000];
    c[9_999] = 1;
    let differing_last = json!({"a": vec![0; 10_000], "b": vec![0; 10_000], "c": c});
    let long_text = json!({"a": vec![0; 300], "s": "x".repeat(1 << 20), "t": "x".repeat(16_000)});
    let long_needle = json!({"a": vec![0; 100], "s": "x".repeat(1 << 20),
        "n": format!("{}y", "x".repeat((1 << 20) - 2))});
    // (case, expression, payload)
    let cases = [
        ("in, inside exists", "req.a.exists(x, 1 in req.a)", &zeros),
        ("list ==, inside all", "req.a.all(x, req.a == req.a)", &long),
        (
            "map ==, inside exists",
            "req.a.exists(x, req.m != req.m)",
            &long,
        ),
        (
            "contains, inside exists",
            "req.a.exists(x, req.s.contains('y'))",
            &long,
        ),
        (
            "size, inside exists_one",
            "req.a.exists_one(x, size(req.s) == 0)",
            &long,
        ),
        // Work done before the first step was charged (an attacker's review): each ran inside the budget
        // for seconds to minutes on a larger input.
        (
            "list != of equal lengths differing last, inside all",
            "req.a.all(x, req.b != req.c)",
            &differing_last,
        ),
        (
            "a long map-literal key, inside all",
            "req.a.all(x, size({req.s: 1}) == 1)",
            &long_text,
        ),
        (
            "a long split separator, inside all",
            "req.a.all(x, size('a'.split(req.s)) == 1)",
            &long_text,
        ),
        (
            "split into code points, inside all",
            "req.a.all(x, size(req.t.split('')) > 0)",
            &long_text,
        ),
        (
            "contains of a long needle, inside all",
            "req.a.all(x, !req.s.contains(req.n))",
            &long_needle,
        ),
    ];
    let over = EvaluationError(format!("exceeded its evaluation budget of {BUDGET} steps"));
    let mut failures = Vec::new();
    for (case, source, payload) in cases {
        let started = std::time::Instant::now();
        let got = evaluate(source, Value::Null, payload.clone());
        if got != Err(over.clone()) {
            failures.push(format!("{case}: {got:?}"));
        }
        // A debug build, and loose: the end-to-end test holds the real bound (1 s through Envoy).
        if started.elapsed().as_secs() >= 10 {
            failures.push(format!("{case}: took {:?}", started.elapsed()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The budget leaves room for Flux's documented filters on the largest payload a receiver takes
/// (`bodyLimit` up to 32 MiB): a tag of 32 MiB.
#[test]
fn flux_documented_filters_run_on_the_largest_payload() {
    let tag = format!(
        "us-east1-docker.pkg.dev/my-project/my-repo/{}hello-world:1.1",
        "x".repeat(32 << 20)
    );
    let annotation = "has(res.metadata.annotations) && req.tag.split('/').last().value().split(\":\").first().value() == res.metadata.annotations['update-image']";
    let named = |name: &str| {
        resource(
            name,
            json!({}),
            json!({"update-image": "x".repeat(32 << 20) + "hello-world"}),
        )
    };
    let payload = json!({"tag": tag});
    assert_eq!(
        evaluate(
            "req.tag.contains(res.metadata.name)",
            named("hello-world"),
            payload.clone()
        ),
        Ok(true)
    );
    assert_eq!(evaluate(annotation, named("x"), payload), Ok(true));
}

/// Issue 22, item 12: every integer operation and index is checked (overflow checks are on in this
/// build: the interpreter panicked on the first three); the answer is an evaluation error, or cel-go's
/// compile refusal where its type check refuses the expression.
#[test]
fn overflow_is_an_error_never_a_panic() {
    let payload = json!({"s": "abc", "l": [1, 2], "huge": 1e19, "n": 1});
    let refused = || Err(None);
    let fails = |message: &str| Err(Some(EvaluationError(message.into())));
    // (case, expression, expected: Ok(answer), Err(None) refused at compile, Err(Some(error)))
    type Expected = Result<bool, Option<EvaluationError>>;
    let cases: Vec<(&str, &str, Expected)> = vec![
        (
            "negating the least int",
            "-(-9223372036854775808) < 0",
            fails("integer overflow"),
        ),
        (
            "negating the least int, computed",
            "-(-9223372036854775807 - 1) < 0",
            fails("integer overflow"),
        ),
        (
            "a string literal at the largest index (cel-go: no index on strings)",
            "'abc'[9223372036854775807] == 'a'",
            refused(),
        ),
        (
            "a payload string at the largest index",
            "req.s[9223372036854775807] == 'a'",
            fails("cannot index a string"),
        ),
        (
            "a list at the largest index",
            "req.l[9223372036854775807] == 1",
            fails("index out of range"),
        ),
        (
            "a list at the least index",
            "req.l[-9223372036854775808] == 1",
            fails("index out of range"),
        ),
        (
            "a list at a double past the int range",
            "req.l[req.huge] == 1",
            fails("index out of range"),
        ),
        (
            "the least int literal",
            "-9223372036854775808 < 0",
            Ok(true),
        ),
        (
            "int +",
            "9223372036854775807 + int(req.n) > 0",
            fails("integer overflow"),
        ),
        (
            "int -",
            "-9223372036854775808 - int(req.n) < 0",
            fails("integer overflow"),
        ),
        (
            "int *",
            "9223372036854775807 * 2 > 0",
            fails("integer overflow"),
        ),
        (
            "int / -1",
            "-9223372036854775808 / -1 > 0",
            fails("integer overflow"),
        ),
        (
            "int % -1",
            "-9223372036854775808 % -1 == 0",
            fails("integer overflow"),
        ),
        (
            "uint +",
            "18446744073709551615u + 1u > 0u",
            fails("unsigned integer overflow"),
        ),
        ("uint -", "0u - 1u > 0u", fails("unsigned integer overflow")),
        (
            "int() of a double past the range",
            "int(req.huge) > 0",
            fails("integer overflow"),
        ),
        (
            "uint() of a negative int",
            "uint(-1) > 0u",
            fails("unsigned integer overflow"),
        ),
        (
            "size() plus the largest int",
            "size(req.s) + 9223372036854775807 > 0",
            fails("integer overflow"),
        ),
    ];
    let mut failures = Vec::new();
    for (case, source, expected) in cases {
        let got = match std::panic::catch_unwind(|| Expression::compile(source, FLUX)) {
            Err(_) => Err(Some(EvaluationError("panicked".into()))),
            Ok(Err(_)) => Err(None),
            Ok(Ok(e)) => std::panic::catch_unwind(|| {
                e.evaluate(vec![("res", Value::Null), ("req", from_json(&payload))])
            })
            .unwrap_or_else(|_| Err(EvaluationError("panicked".into())))
            .map_err(Some),
        };
        if got != expected {
            failures.push(format!("{case}: want {expected:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Issue 22, item 14: an expression answers the same on the payload pruned to the paths it reads as on
/// the whole payload (both true, both false, or both an error).
#[test]
fn pruned_payloads_answer_as_the_whole_payload() {
    let deletion = json!({"ref": "refs/heads/gone", "deleted": true, "head_commit": null,
        "repository": {"name": "webapp", "owner": {"login": "o"}}, "commits": [], "size": 3, "tags": ["a"]});
    let push = json!({"ref": "refs/heads/main", "head_commit": {"id": "abc", "message": "m"},
        "repository": {"name": "webapp"}, "commits": [{"id": "abc"}], "size": 3, "tags": []});
    // A payload that is not an object at the top: every field read is an error on it.
    let listed = json!([{"skip": true}]);
    let expressions = [
        "has(req.head_commit.id)",
        "has(req.head_commit)",
        "req.head_commit.id == 'abc'",
        "req.head_commit == null",
        "has(req.head_commit.id) && req.head_commit.id != ''",
        "!has(req.head_commit.id) || req.head_commit.id.startsWith('a')",
        "has(req.repository.owner.login)",
        "req.repository.owner.login == 'o'",
        "has(req.missing.x)",
        "has(req.missing)",
        "has(req.size.x)",
        "has(req.tags.x)",
        "req.tags.x == 1",
        "req.size.x == 1",
        "req.commits.exists(c, c.id == 'abc')",
        "size(req.repository) == 1",
        "req.repository == {'name': 'webapp'}",
        "has(req.repository.name) && has(req.repository.owner)",
        "req.ref.endsWith('/main') || has(req.head_commit.id)",
        "!has(req.skip)",
    ];
    let mut failures = Vec::new();
    for source in expressions {
        let expression =
            Expression::compile(source, FLUX).unwrap_or_else(|e| panic!("{source}: {e}"));
        let Reads::Fields(paths) = expression.reads("req") else {
            panic!("{source}: reads no fields");
        };
        let payloads = [("deletion", &deletion), ("push", &push), ("list", &listed)];
        for (name, payload) in payloads {
            let answer = |req: &serde_json::Value| {
                expression
                    .evaluate(vec![("res", Value::Null), ("req", from_json(req))])
                    .map_err(|_| "an error")
            };
            let (whole, pruned) = (answer(payload), answer(&prune(payload, &paths)));
            if whole != pruned {
                failures.push(format!(
                    "{source} on a {name}: whole {whole:?}, pruned {pruned:?}"
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// The same over generated payloads (nested objects, nulls, scalars, lists, absent keys) and paths.
#[test]
fn pruning_keeps_answers_on_generated_payloads() {
    let mut state: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move |n: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % n
    };
    const KEYS: [&str; 3] = ["a", "b", "c"];
    fn generate(depth: u32, next: &mut dyn FnMut(u64) -> u64) -> serde_json::Value {
        match if depth == 0 { next(4) } else { next(6) } {
            0 => serde_json::Value::Null,
            1 => json!(next(3)),
            2 => json!("a"),
            3 => json!([next(2)]),
            _ => {
                let mut object = serde_json::Map::new();
                for key in KEYS {
                    if next(3) != 0 {
                        object.insert(key.to_string(), generate(depth - 1, next));
                    }
                }
                serde_json::Value::Object(object)
            }
        }
    }
    let mut failures = Vec::new();
    for _ in 0..3_000 {
        let payload = json!({"a": generate(3, &mut next), "b": generate(2, &mut next)});
        let path: Vec<&str> = (0..1 + next(3)).map(|_| KEYS[next(3) as usize]).collect();
        let field = format!("req.{}", path.join("."));
        let expressions = [
            format!("has({field})"),
            format!("{field} == null"),
            format!("{field} == 1"),
            format!("size({field}) > 0"),
            format!("has({field}) || {field} == 'a'"),
        ];
        for source in &expressions {
            let expression =
                Expression::compile(source, FLUX).unwrap_or_else(|e| panic!("{source}: {e}"));
            let Reads::Fields(paths) = expression.reads("req") else {
                continue;
            };
            let answer = |req: &serde_json::Value| {
                expression
                    .evaluate(vec![("res", Value::Null), ("req", from_json(req))])
                    .map_err(|_| "an error")
            };
            let pruned = prune(&payload, &paths);
            if answer(&payload) != answer(&pruned) {
                failures.push(format!("{source} on {payload}: pruned {pruned}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} differ, first: {:?}",
        failures.len(),
        failures.first()
    );
}
