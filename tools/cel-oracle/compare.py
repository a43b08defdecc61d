"""Runs the same CEL cases through Flux's CEL (tools/cel-oracle, cel-go) and hookgate's
(cel/examples/evaluate_lines.rs) and prints every case whose answers differ in kind (true, false, a
compile refusal, an evaluation error). Usage: compare.py ORACLE HOOKGATE [CASES.jsonl]; without a file,
generated cases. Build them with `go build -o /tmp/cel-oracle .` here (Go modules from the Go proxy) and
`cargo build -p hookgate-cel --example evaluate_lines` (target/debug/examples/evaluate_lines)."""

from __future__ import annotations

import json
import random
import subprocess
import sys

PAYLOAD = {"n": 1, "f": 1.5, "big": 9007199254740993, "neg": -3, "s": "héllo", "e": "", "t": True,
           "z": None, "l": [1, 2, 3], "ls": ["a", "b"], "m": {"k": "v", "1": 2}, "nested": {"a": {"b": 1}},
           "mixed": [1, "a", None, [1], {"x": 1}], "head_commit": None, "tag": "a/b:c"}

ATOMS = ["req.n", "req.f", "req.big", "req.neg", "req.s", "req.e", "req.t", "req.z", "req.l", "req.ls", "req.m",
         "req.nested", "req.mixed", "req.missing", "req.nested.a", "req.l[0]", "req.l[req.n]", "req.m['k']",
         "1", "0", "-1", "1u", "1.0", "2.5", "'a'", "''", "true", "false", "null", "[1, 2]", "[]", "{'k': 1}",
         "size(req.s)", "int(req.f)", "uint(req.n)", "double(req.n)", "string(req.f)", "string(req.n)",
         "req.tag.split('/')", "req.ls.first().value()", "-9223372036854775808", "9223372036854775807"]
BINARY = ["==", "!=", "<", "<=", ">", ">=", "+", "-", "*", "/", "%", "&&", "||", "in"]


def generated(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    cases = []
    for _ in range(count):
        a, b, c = rng.choice(ATOMS), rng.choice(ATOMS), rng.choice(ATOMS)
        op, op2 = rng.choice(BINARY), rng.choice(BINARY)
        shape = rng.randrange(6)
        expr = [f"{a} {op} {b}", f"({a} {op} {b}) {op2} {c}", f"{a} {op} ({b} {op2} {c})",
                f"has({a}.x) {op} {b}", f"{a}.exists(x, x {op} {b})", f"!({a} {op} {b})"][shape]
        cases.append({"expr": expr, "req": PAYLOAD})
    return cases


def kind(answer: dict) -> str:
    if "result" in answer:
        return str(answer["result"]).lower()
    return "compile" if "compile" in answer else "eval"


def run(program: str, cases: list[dict]) -> list[dict]:
    lines = "".join(json.dumps(c) + "\n" for c in cases)
    out = subprocess.run([program], input=lines, capture_output=True, text=True, check=True).stdout
    return [json.loads(line) for line in out.splitlines()]


def main() -> int:
    oracle, hookgate = sys.argv[1], sys.argv[2]
    if len(sys.argv) > 3:
        with open(sys.argv[3]) as f:
            cases = [json.loads(line) for line in f if line.strip()]
    else:
        cases = generated(4000, 22)
    differ = 0
    for case, want, got in zip(cases, run(oracle, cases), run(hookgate, cases)):
        if kind(want) != kind(got):
            differ += 1
            print(f"{case['expr']!r}: cel-go {want} / hookgate {got}")
    print(f"{differ} of {len(cases)} differ", file=sys.stderr)
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
