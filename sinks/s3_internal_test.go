package sinks

import "testing"

// A 1 TiB stream must fit in S3's 10,000 parts at the default part size,
// and no part may be smaller than S3's 5 MiB minimum.
func TestPartSizesFitOneTebibyte(t *testing.T) {
	s := &S3{opt: S3Options{PartSize: 16 << 20, MaxParts: maxParts}}
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

// A provider that allows 1,000 parts still takes a 100 GiB dump: parts
// grow every 80 parts instead.
func TestPartSizesFitMaxParts(t *testing.T) {
	s := &S3{opt: S3Options{PartSize: 16 << 20, MaxParts: 1000}}
	var total int64
	for n := 1; n <= 1000; n++ {
		total += s.partSize(n)
	}
	if total < 100<<30 {
		t.Fatalf("1,000 parts hold %d GiB, less than 100 GiB", total>>30)
	}
	if s.partSize(80) != 16<<20 || s.partSize(81) != 32<<20 {
		t.Fatalf("parts must grow every 80 of 1,000: part 81 is %d MiB", s.partSize(81)>>20)
	}
	huge := &S3{opt: S3Options{PartSize: 5 << 30, MaxParts: maxParts}}
	if huge.partSize(maxParts) != 5<<30 {
		t.Fatal("no part may exceed S3's 5 GiB")
	}
}
