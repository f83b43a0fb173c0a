package restore

import (
	"fmt"
	"testing"

	"github.com/backupkit/backupkit/format"
)

// TestPostDataReady: a post-data entry is ready once the jobs loading
// its tables have ended and the post-data entries it depends on have
// run (or run with it); entries of no section wait for the end.
func TestPostDataReady(t *testing.T) {
	e := func(id, section int, desc string, deps ...int) format.ArchiveEntry {
		return format.ArchiveEntry{DumpID: id, Section: section, Desc: desc, Deps: deps}
	}
	info := &format.ArchiveInfo{Entries: []format.ArchiveEntry{
		e(1, format.SectionPreData, "TABLE"), e(2, format.SectionPreData, "TABLE"),
		e(3, format.SectionData, "TABLE DATA", 1), e(4, format.SectionData, "TABLE DATA", 2),
		e(10, format.SectionData, "SEQUENCE SET"),
		e(5, format.SectionPostData, "CONSTRAINT", 1), e(6, format.SectionPostData, "CONSTRAINT", 2),
		e(7, format.SectionPostData, "FK CONSTRAINT", 5), // on a's key only
		e(8, 1, "ACL", 1), e(9, format.SectionPostData, "COMMENT", 8),
		e(11, format.SectionPostData, "INDEX", 1, 10), // waits for the sequence's job too
	}}
	lists := [][]string{
		{"1; 0 0 TABLE public a o", "3; 0 0 TABLE DATA public a o", "10; 0 0 SEQUENCE SET public s o", "5; 0 0 CONSTRAINT public a a_pkey o"},
		{"4; 0 0 TABLE DATA public b o"},
	}
	p := newPostData(info, lists)
	for _, c := range []struct {
		ended []int
		done  []int
		want  string
	}{
		{nil, nil, "[]"},
		{[]int{1}, nil, "[6]"},           // b loaded: b's key; not 7 (a's key not built)
		{[]int{0}, nil, "[5 7 11]"},      // a loaded: a's key and what waits for it
		{nil, []int{5}, "[7]"},           // a's key built: the key on it
		{[]int{0, 1}, nil, "[5 6 7 11]"}, // never 9: it waits for an ACL
		{[]int{0, 1}, []int{5, 6}, "[7 11]"},
	} {
		p.done = map[int]bool{}
		for _, id := range c.done {
			p.done[id] = true
		}
		ended := map[int]bool{}
		for _, j := range c.ended {
			ended[j] = true
		}
		if got := fmt.Sprint(p.ready(ended)); got != c.want {
			t.Errorf("ended %v, done %v: ready %s, want %s", c.ended, c.done, got, c.want)
		}
	}
	// Running entries are not ready, nor is what waits for them.
	p.done = map[int]bool{}
	p.running = map[int]bool{5: true}
	if got := fmt.Sprint(p.ready(map[int]bool{0: true, 1: true})); got != "[6 11]" {
		t.Errorf("5 running: ready %s, want [6 11]", got)
	}
	p.running = map[int]bool{}

	toc := []string{";", "; Archive", "5; 0 0 CONSTRAINT public a a_pkey o", "6; 0 0 CONSTRAINT public b b_pkey o", "9; 0 0 COMMENT x"}
	if got := listOf(toc, map[int]bool{5: true}, false); got != "5; 0 0 CONSTRAINT public a a_pkey o\n;6; 0 0 CONSTRAINT public b b_pkey o\n;9; 0 0 COMMENT x\n" {
		t.Errorf("list of 5:\n%s", got)
	}
	if got := listOf(toc, map[int]bool{5: true}, true); got != ";\n; Archive\n;5; 0 0 CONSTRAINT public a a_pkey o\n6; 0 0 CONSTRAINT public b b_pkey o\n9; 0 0 COMMENT x\n" {
		t.Errorf("list but 5:\n%s", got)
	}
}

// TestPostDataSplit: ready entries are dealt to batches that may run at
// once; an entry goes with what it depends on, and one that would need
// two batches (or a held-back entry) waits, as does what depends on it.
func TestPostDataSplit(t *testing.T) {
	e := func(id int, deps ...int) format.ArchiveEntry {
		return format.ArchiveEntry{DumpID: id, Section: format.SectionPostData, Deps: deps}
	}
	p := newPostData(&format.ArchiveInfo{Entries: []format.ArchiveEntry{
		e(1), e(2), e(3, 1), e(4), e(5, 1, 2), e(6, 5), e(7, 3),
	}}, nil)
	for _, c := range []struct {
		ids  []int
		n    int
		want string
	}{
		{[]int{1, 2, 3, 4, 5, 6, 7}, 2, "[[1 3 7] [2 4]]"}, // 5 needs both batches; 6 needs 5
		{[]int{1, 2, 3, 4, 5, 6, 7}, 1, "[[1 2 3 4 5 6 7]]"},
		{[]int{1, 2, 4}, 3, "[[1] [2] [4]]"},
		{[]int{1, 2, 4}, 0, "[]"},
		{nil, 2, "[]"},
	} {
		if got := fmt.Sprint(p.split(c.ids, c.n)); got != c.want {
			t.Errorf("split %v in %d: %s, want %s", c.ids, c.n, got, c.want)
		}
	}
}
