package sinks

import "testing"

// A 1 TiB stream must fit in S3's 10,000 parts at the default part size,
// and no part may be smaller than S3's 5 MiB minimum.
func TestPartSizesFitOneTebibyte(t *testing.T) {
	s := &S3{opt: S3Options{PartSize: 16 << 20}}
	var total int64
	for n := 1; n <= maxParts; n++ {
		if s.partSize(n) < minPartSize {
			t.Fatalf("part %d is %d bytes", n, s.partSize(n))
		}
		total += s.partSize(n)
	}
	if total < 1<<40 {
		t.Fatalf("10,000 parts hold %d GiB, less than 1 TiB", total>>30)
	}
	if s.partSize(1) != 16<<20 || s.partSize(800) != 16<<20 || s.partSize(801) != 32<<20 {
		t.Fatal("parts must start at the configured size and grow every 800 parts")
	}
}
