package sinks

import (
	"testing"
	"time"
)

func TestParseKey(t *testing.T) {
	want := time.Date(2026, 11, 25, 2, 0, 7, 123456789, time.UTC)
	for _, k := range []string{
		"app_db/20261125_020007.123456789Z.dump", "app_db/20261125_020007.123456789Z.dump.gz",
		"app_db/20261125_020007.123456789Z.dump.zst", "app_db/20261125_020007.123456789Z.dump.enc",
		"app_db/20261125_020007.123456789Z.dump.gz.enc", "app_db/20261125_020007.123456789Z.dump.zst.enc",
	} {
		db, ts, ok := ParseKey(k)
		if !ok || db != "app_db" || !ts.Equal(want) {
			t.Errorf("%s: %q %v %v", k, db, ts, ok)
		}
		if Key("app_db", want, k[len("app_db/20261125_020007.123456789Z"):]) != k {
			t.Errorf("Key does not round-trip %s", k)
		}
	}
	for _, k := range []string{
		"20261125_020007.123456789Z.dump", "/20261125_020007.123456789Z.dump",
		"a/b/20261125_020007.123456789Z.dump", "app/20261125_020007.123456789Z.dump.bak",
		"app/20261125_020007.123456789Z.dump.sha256", "app/20261125_020007.123456789Z.dump.gz.sha256",
		"app/20261325_020007.123456789Z.dump", "app/20260231_020007.123456789Z.dump",
		"app/20261125_250007.123456789Z.dump", "app/2026112a_020007.123456789Z.dump",
		"app/20261125-020007.123456789Z.dump", "app/20261125_020007.12345678Z.dump",
		"app/.20261125_020007.123456789Z.dump.tmp-abc", "app/notes.txt", "app/",
	} {
		if _, _, ok := ParseKey(k); ok {
			t.Errorf("%s parsed as a backup", k)
		}
	}
}
