package main

import (
	"bytes"
	"encoding/json"
	"testing"
)

type bytesBuffer = bytes.Buffer

func checkJSON(t *testing.T, b []byte) {
	t.Helper()
	var rep struct {
		Machine map[string]any   `json:"machine"`
		Results []map[string]any `json:"results"`
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("-json output does not parse: %v\n%s", err, b)
	}
	if rep.Machine["cpu"] == nil || rep.Machine["go_version"] == nil {
		t.Errorf("machine section lacks cpu or go_version: %v", rep.Machine)
	}
	pipelines := 0
	for _, r := range rep.Results {
		for _, k := range []string{"name", "mpps", "ns_per_pkt", "allocs_per_pkt", "gc_cycles", "p50_ns", "p99_ns"} {
			if _, ok := r[k]; !ok {
				t.Errorf("result %v lacks %q", r["name"], k)
			}
		}
		if r["group"] == "pipeline" {
			pipelines++
			if r["mpps"].(float64) <= 0 {
				t.Errorf("%v: mpps %v", r["name"], r["mpps"])
			}
			if e, ok := r["error"]; ok {
				t.Errorf("%v: %v", r["name"], e)
			}
		}
	}
	if want := 4 * 2 * 2; pipelines != want {
		t.Errorf("%d pipeline results, want %d", pipelines, want)
	}
}
