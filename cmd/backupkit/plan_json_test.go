package main

import (
	"encoding/json"
	"testing"

	"github.com/backupkit/backupkit/reconcile"
)

// appendAction writes what encoding/json would, byte for byte.
func TestAppendActionIsJSON(t *testing.T) {
	for _, a := range []actionJSON{
		{Type: reconcile.ActPrune, Database: "app", Storage: "local", Key: "app/20260101_000000.000000000Z.dump", Reason: "not kept by keep_last=1", Code: "retention", Conditional: true},
		{Type: reconcile.ActBackup, Database: "prod.sales%2Eeu", Shown: "prod.sales.eu", Storage: "s3", Reason: `quote " back\\slash <tag> & ünïcode ☃ tab	`, Code: "forced", Forced: true},
		{Type: reconcile.ActCleanup, Database: "d", Storage: "s", Reason: "\x00\x1f", Code: "leftover"},
	} {
		want, _ := json.Marshal(a)
		if got := appendAction(nil, a); string(got) != string(want) {
			t.Errorf("appendAction:\n%s\nwant\n%s", got, want)
		}
	}
}

// appendJSONString quotes every single byte as encoding/json does.
func TestAppendJSONStringEveryByte(t *testing.T) {
	for c := 0; c < 256; c++ {
		s := "a" + string([]byte{byte(c)}) + "b"
		want, _ := json.Marshal(s)
		if got := appendJSONString(nil, s); string(got) != string(want) {
			t.Errorf("byte %#x: got %s, want %s", c, got, want)
		}
	}
}
