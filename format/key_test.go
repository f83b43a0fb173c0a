package format

import (
	"testing"
	"time"
)

func TestParseKey(t *testing.T) {
	want := time.Date(2026, 11, 25, 2, 0, 7, 123456789, time.UTC)
	for k, ext := range map[string]Ext{
		"app_db/20261125_020007.123456789Z.dump":         {None, Unencrypted, false},
		"app_db/20261125_020007.123456789Z.dump.gz":      {Gzip, Unencrypted, false},
		"app_db/20261125_020007.123456789Z.dump.zst":     {Zstd, Unencrypted, false},
		"app_db/20261125_020007.123456789Z.dump.enc":     {None, Enc, false},
		"app_db/20261125_020007.123456789Z.dump.gz.enc":  {Gzip, Enc, false},
		"app_db/20261125_020007.123456789Z.dump.zst.enc": {Zstd, Enc, false},
		"app_db/20261125_020007.123456789Z.dump.zst.age": {Zstd, Age, false},
		"app_db/20261125_020007.123456789Z.sql.gz":       {Gzip, Unencrypted, true},
		"app_db/20261125_020007.123456789Z.sql":          {None, Unencrypted, true},
	} {
		n, ok := ParseKey(k)
		if !ok || n.Database != "app_db" || !n.Time.Equal(want) || n.Ext != ext {
			t.Errorf("%s: %+v %v", k, n, ok)
		}
		if Key("app_db", want, ext) != k {
			t.Errorf("Key does not round-trip %s: %s", k, Key("app_db", want, ext))
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
		"app/20261125_020007.123456789Z.dump.enc.gz", "../20261125_020007.123456789Z.dump",
		"app/20261125_020007.123456789Z.dump.gz.gz", "app/20261125_020007.123456789Z.sq",
		"app/20261125_020007.123456789Z.sqlite",
	} {
		if _, ok := ParseKey(k); ok {
			t.Errorf("%s parsed as a backup", k)
		}
	}
}

func TestSidecarLine(t *testing.T) {
	sum := "ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef0123456789"
	got, err := ParseSum([]byte(SumLine(sum, "app/x.dump.gz")))
	if err != nil || got != "abcdef0123456789abcdef0123456789abcdef0123456789abcdef0123456789" {
		t.Fatalf("%q %v", got, err)
	}
	for _, bad := range []string{"", "abc  x", sum[:63] + "g  x"} {
		if _, err := ParseSum([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestDrillKeys(t *testing.T) {
	key := "app/20261125_020007.123456789Z.dump.gz"
	at := time.Date(2026, 11, 29, 5, 0, 3, 0, time.UTC)
	for _, ok := range []bool{true, false} {
		k := DrillKey(key, at, ok)
		b, m, valid := ParseDrillKey(k)
		if !valid || b != key || !m.Time.Equal(at) || m.OK != ok || m.Key != k {
			t.Fatalf("%s: %q %+v %v", k, b, m, valid)
		}
		if _, isBackup := ParseKey(k); isBackup {
			t.Fatalf("a drill result %s parses as a backup", k)
		}
	}
	for _, k := range []string{key + ".drill.x.ok.json", key + ".drill.20261129_050003.000000000Z.maybe.json", "app/notes.drill.20261129_050003.000000000Z.ok.json"} {
		if _, _, ok := ParseDrillKey(k); ok {
			t.Errorf("%s parsed as a drill result", k)
		}
	}
}

func TestDBNameEncoding(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"sales", "sales"},
		{"Sales-EU_2", "Sales-EU_2"},
		{"sales.eu", "sales%2Eeu"},
		{"_globals", "%5Fglobals"},
		{"a b/c", "a%20b%2Fc"},
		{"100%", "100%25"},
		{"..", "%2E%2E"},
		{"dbname=x", "dbname%3Dx"},
		{"ö", "%C3%B6"},
		// The alphabet's edges stay as they are (a folder's name must
		// not change between versions), their neighbours do not.
		{"azAZ09-_", "azAZ09-_"},
		{"`{@[/:", "%60%7B%40%5B%2F%3A"},
	} {
		got := EncodeDBName(tc.in)
		if got != tc.want {
			t.Errorf("EncodeDBName(%q) = %q, want %q", tc.in, got, tc.want)
		}
		back, ok := DecodeDBName(got)
		if !ok || back != tc.in {
			t.Errorf("DecodeDBName(%q) = %q, %v; want %q", got, back, ok, tc.in)
		}
		if _, ok := ParseKey(DiscoveredName("prod", tc.in) + "/20260101_000000.000000000Z.dump"); !ok {
			t.Errorf("a backup of discovered %q does not parse as a key", tc.in)
		}
	}
	for _, bad := range []string{"", "%", "%2", "%2e", "%zz", "a.b", "_x", "%61"} {
		if d, ok := DecodeDBName(bad); ok {
			t.Errorf("DecodeDBName(%q) = %q, accepted; want refused", bad, d)
		}
	}
	if got := ShowName("prod", "prod.sales%2Eeu"); got != "prod.sales.eu" {
		t.Errorf("ShowName = %q", got)
	}
	if got := ShowName("prod", "prod._globals"); got != "prod._globals" {
		t.Errorf("ShowName globals = %q", got)
	}
}
