//! Evaluates JSON lines `{"expr": …, "req": …}` as a target filter (`res` is `{"metadata": {"name":
//! "n"}}`) and prints `{"result": bool}`, `{"compile": why}` or `{"eval": why}` for each: the same
//! protocol as tools/cel-oracle (Flux's CEL, cel-go), to compare the two answer by answer.

use std::io::{BufRead, Write};

use hookgate_cel::{from_json, Expression, TARGET_VARIABLES};
use serde_json::{json, Value};

fn main() {
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let Ok(line) = line else { break };
        let Ok(case) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        let source = case["expr"].as_str().unwrap_or_default();
        let answer = match Expression::compile(source, TARGET_VARIABLES) {
            Err(e) => json!({"compile": e.to_string()}),
            Ok(expression) => {
                let res = from_json(&json!({"metadata": {"name": "n"}}));
                match expression.evaluate(vec![("res", res), ("req", from_json(&case["req"]))]) {
                    Ok(result) => json!({"result": result}),
                    Err(e) => json!({"eval": e.to_string()}),
                }
            }
        };
        let _ = writeln!(out, "{answer}");
    }
}
