package restore

import (
	"reflect"
	"testing"

	"github.com/backupkit/backupkit/format"
)

func TestSplitData(t *testing.T) {
	toc := []string{
		";",
		"; Archive created at 2026-11-26 02:00:00 UTC",
		"215; 1259 16390 TABLE public accounts app",
		"3350; 0 16390 TABLE DATA public accounts app",
		"3351; 0 16396 TABLE DATA public branches app",
		"3352; 0 16399 TABLE DATA public prose app",
		"3353; 0 0 SEQUENCE SET public invoice_no app",
		"3354; 0 16402 TABLE DATA public tellers app",
		"3355; 2613 16405 BLOB - 16405 app",
		"3200; 2606 16410 CONSTRAINT public accounts accounts_pkey app",
		"",
	}
	rows := map[string]int64{"public.accounts": 5000000, "public.prose": 2000000, "public.tellers": 500, "public.branches": 50}
	got := splitData(toc, 2, rows)
	want := [][]string{
		{toc[2], toc[3], toc[6], toc[8], toc[9]}, // the largest, and every other entry, in archive order
		{toc[4], toc[5], toc[7]},                 // the next largest, and the small ones
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("split\n got %q\nwant %q", got, want)
	}
	// More jobs than tables: no empty lists; without row counts the
	// tables are shared out in turn.
	if got := splitData(toc[:5], 8, nil); len(got) != 2 || len(got[0]) != 2 || len(got[1]) != 1 {
		t.Fatalf("split %q", got)
	}
}

// Wide rows: by bytes, one table of few wide rows outweighs one of many
// narrow rows; a manifest without sizes falls back to rows.
func TestTableSizes(t *testing.T) {
	toc := []string{
		"10; 0 1 TABLE DATA public docs app",
		"11; 0 2 TABLE DATA public events app",
		"12; 0 3 TABLE DATA public tags app",
	}
	m := &format.Manifest{
		Tables:     map[string]int64{"public.docs": 1000, "public.events": 900000, "public.tags": 800000},
		TableBytes: map[string]int64{"public.docs": 900 << 20, "public.events": 40 << 20, "public.tags": 30 << 20},
	}
	if got, want := splitData(toc, 2, tableSizes(m)), [][]string{{toc[0]}, {toc[1], toc[2]}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("by bytes: %q, want docs alone", got)
	}
	m.TableBytes = nil
	if got, want := splitData(toc, 2, tableSizes(m)), [][]string{{toc[1]}, {toc[0], toc[2]}}; !reflect.DeepEqual(got, want) {
		t.Fatalf("by rows: %q, want events alone", got)
	}
}
