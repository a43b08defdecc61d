// Evaluates CEL expressions as Flux notification-controller v1.9.3 does (fluxcd/pkg/runtime/cel with
// WithCompile, WithOutputType(BoolType), WithStructVariables("res", "req"); req decoded by encoding/json).
// Input: JSON lines {"expr": ..., "req": ...}; output: JSON lines {"result": bool} or {"compile": err} or {"eval": err}.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/fluxcd/pkg/runtime/cel"
	"github.com/google/cel-go/common/types"
)

func main() {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<26)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var c struct {
			Expr string          `json:"expr"`
			Req  json.RawMessage `json:"req"`
		}
		if err := json.Unmarshal(in.Bytes(), &c); err != nil {
			panic(err)
		}
		var req map[string]any
		if err := json.Unmarshal(c.Req, &req); err != nil {
			panic(err)
		}
		e, err := cel.NewExpression(c.Expr, cel.WithCompile(), cel.WithOutputType(types.BoolType), cel.WithStructVariables("res", "req"))
		if err != nil {
			out.Encode(map[string]any{"compile": err.Error()})
			continue
		}
		res := map[string]any{"metadata": map[string]any{"name": "n"}}
		r, err := e.EvaluateBoolean(context.Background(), map[string]any{"res": res, "req": req})
		if err != nil {
			out.Encode(map[string]any{"eval": fmt.Sprint(err)})
			continue
		}
		out.Encode(map[string]any{"result": r})
	}
}
