package sinks

import "testing"

func capacity(s *S3, parts int) int64 {
	var total int64
	for n := 1; n <= parts; n++ {
		total += s.partSize(n)
	}
	return total
}

// Multi-TiB dumps fit in S3's 10,000 parts at the default part size; no
// part is smaller than S3's 5 MiB minimum or larger than its 5 GiB
// maximum; the first tenth of the parts keep the configured size, so
// memory stays at part size × (concurrency + 1) for the first 12 GiB.
func TestPartSizes(t *testing.T) {
	s := &S3{opt: S3Options{PartSize: 12 << 20, MaxParts: maxParts}}
	for n := 1; n <= maxParts; n++ {
		if p := s.partSize(n); p < minPartSize || p > maxPartSize {
			t.Fatalf("part %d is %d bytes", n, p)
		}
	}
	if c := capacity(s, maxParts); c < 10<<40 {
		t.Fatalf("10,000 parts hold %d GiB, less than 10 TiB", c>>30)
	}
	if s.partSize(1) != 12<<20 || s.partSize(1000) != 12<<20 || s.partSize(1001) != 24<<20 || s.partSize(maxParts) != maxPartSize {
		t.Fatal("parts must start at the configured size, double every 1,000 parts, and stop at 5 GiB")
	}
	if c := capacity(s, 1000); c < 11<<30 {
		t.Fatalf("the first 1,000 parts hold %d GiB at 12 MiB", c>>30)
	}
}

// A provider that allows 1,000 parts still takes a 1 TiB dump: parts
// double every 100 parts instead.
func TestPartSizesFitMaxParts(t *testing.T) {
	s := &S3{opt: S3Options{PartSize: 12 << 20, MaxParts: 1000}}
	if c := capacity(s, 1000); c < 1<<40 {
		t.Fatalf("1,000 parts hold %d GiB, less than 1 TiB", c>>30)
	}
	if s.partSize(100) != 12<<20 || s.partSize(101) != 24<<20 {
		t.Fatalf("parts must double every 100 of 1,000: part 101 is %d MiB", s.partSize(101)>>20)
	}
}
