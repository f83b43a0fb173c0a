package main

import (
	"strings"
	"testing"
)

func TestTargetRow(t *testing.T) {
	for _, tc := range []struct {
		med     float64
		want    string
		verdict string
	}{
		{med: 1.0516, want: "1.052×", verdict: "MISSED"},
		{med: 1.0484, want: "1.048×", verdict: "met"},
		{med: 1.05, want: "1.05×", verdict: "met"},
		{med: 1.14, want: "1.14×", verdict: "MISSED"},
		{med: 0.98, want: "0.98×", verdict: "met"},
	} {
		got := line{what: "x", unit: "×", limit: 1.05, med: tc.med, lo: tc.med, hi: tc.med}.row()
		cols := strings.Split(got, "|")
		if len(cols) != 7 {
			t.Fatalf("%v: %q is not a table row of five columns", tc.med, got)
		}
		if m := strings.TrimSpace(cols[2]); m != tc.want {
			t.Errorf("%v: median shown as %q, want %q", tc.med, m, tc.want)
		}
		if v := strings.TrimSpace(cols[5]); v != tc.verdict {
			t.Errorf("%v: verdict %q, want %q", tc.med, v, tc.verdict)
		}
	}
}
