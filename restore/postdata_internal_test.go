package restore

import (
	"fmt"
	"testing"

	"github.com/backupkit/backupkit/format"
)

// TestPostDataReady: a post-data entry is ready once the jobs loading
// its tables have ended and the post-data entries it depends on have
// run (or run with it). An entry of no section is in the section of the
// entry before it: a comment after post-data entries is one too; one
// that depends on an entry restored with the data, but by no job of its
// own, waits for the end.
func TestPostDataReady(t *testing.T) {
	e := func(id, section int, desc string, deps ...int) format.ArchiveEntry {
		return format.ArchiveEntry{DumpID: id, Section: section, Desc: desc, Deps: deps}
	}
	info := &format.ArchiveInfo{Entries: []format.ArchiveEntry{
		e(1, format.SectionPreData, "TABLE"), e(2, format.SectionPreData, "TABLE"),
		e(12, format.SectionNone, "ACL", 1), // pre-data by position
		e(3, format.SectionData, "TABLE DATA", 1), e(4, format.SectionData, "TABLE DATA", 2),
		e(10, format.SectionData, "SEQUENCE SET"),
		e(13, format.SectionNone, "COMMENT"), // data by position, in no job's list
		e(5, format.SectionPostData, "CONSTRAINT", 1, 12), e(6, format.SectionPostData, "CONSTRAINT", 2),
		e(7, format.SectionPostData, "FK CONSTRAINT", 5), // on a's key only
		e(14, format.SectionPostData, "TRIGGER", 13),
		e(8, format.SectionNone, "COMMENT", 5),        // post-data by position
		e(11, format.SectionPostData, "INDEX", 1, 10), // waits for the sequence's job too
	}}
	lists := [][]string{
		{"1; 0 0 TABLE public a o", "3; 0 0 TABLE DATA public a o", "10; 0 0 SEQUENCE SET public s o", "5; 0 0 CONSTRAINT public a a_pkey o"},
		{"4; 0 0 TABLE DATA public b o"},
	}
	p := newPostData(info, lists)
	for _, c := range []struct {
		ended   []int
		done    []int
		running []int
		want    string
	}{
		{nil, nil, nil, "[]"},
		{[]int{1}, nil, nil, "[6]"},             // b loaded: b's key; not 7 (a's key not built)
		{[]int{0}, nil, nil, "[5 7 8 11]"},      // a loaded: a's key and what waits for it
		{nil, []int{5}, nil, "[7 8]"},           // a's key built: the key on it, its comment
		{[]int{0, 1}, nil, nil, "[5 6 7 8 11]"}, // never 14: it waits for the end
		{[]int{0, 1}, []int{5, 6}, nil, "[7 8 11]"},
		{[]int{0, 1}, nil, []int{5}, "[6 11]"}, // running: not ready, nor what waits for it
	} {
		p.done, p.running = map[int]bool{}, map[int]bool{}
		for _, id := range c.done {
			p.done[id] = true
		}
		for _, id := range c.running {
			p.running[id] = true
		}
		ended := map[int]bool{}
		for _, j := range c.ended {
			ended[j] = true
		}
		if got := fmt.Sprint(p.ready(ended)); got != c.want {
			t.Errorf("ended %v, done %v, running %v: ready %s, want %s", c.ended, c.done, c.running, got, c.want)
		}
	}
	p.done = map[int]bool{5: true, 6: true, 7: true, 8: true, 11: true}
	if got := fmt.Sprint(p.left(), len(p.rest()), p.rest()[14]); got != "true 1 true" {
		t.Errorf("left, rest: %s, want the trigger alone", got)
	}
	toc := []string{";", "; Archive", "5; 0 0 CONSTRAINT public a a_pkey o", "6; 0 0 CONSTRAINT public b b_pkey o", "9; 0 0 COMMENT x"}
	if got := listOf(toc, map[int]bool{5: true, 9: true}); got != "5; 0 0 CONSTRAINT public a a_pkey o\n;6; 0 0 CONSTRAINT public b b_pkey o\n9; 0 0 COMMENT x\n" {
		t.Errorf("list of 5 and 9:\n%s", got)
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

// TestPostDataLeft: what is left for the last run is a post-data entry
// not built, or an entry of no section after the first post-data entry
// (pg_restore counts it in post-data); an entry of no section before it
// belongs to an earlier section, and an archive without sections always
// leaves pg_restore's post-data section to run.
func TestPostDataLeft(t *testing.T) {
	e := func(id, section int) format.ArchiveEntry { return format.ArchiveEntry{DumpID: id, Section: section} }
	for _, c := range []struct {
		entries []format.ArchiveEntry
		done    []int
		want    bool
	}{
		{[]format.ArchiveEntry{e(1, format.SectionPreData), e(2, format.SectionData), e(3, format.SectionPostData)}, []int{3}, false},
		{[]format.ArchiveEntry{e(1, format.SectionPreData), e(2, format.SectionData), e(3, format.SectionPostData)}, nil, true},
		{[]format.ArchiveEntry{e(1, format.SectionPreData), e(9, format.SectionNone), e(3, format.SectionPostData)}, []int{3}, false},
		{[]format.ArchiveEntry{e(1, format.SectionPreData), e(3, format.SectionPostData), e(9, format.SectionNone)}, []int{3}, true},
		{[]format.ArchiveEntry{e(1, format.SectionPreData), e(3, format.SectionPostData), e(9, format.SectionNone)}, []int{3, 9}, false},
		{[]format.ArchiveEntry{e(1, format.SectionPreData), e(2, 0)}, nil, true}, // no sections: an old archive
	} {
		p := newPostData(&format.ArchiveInfo{Entries: c.entries}, nil)
		for _, id := range c.done {
			p.done[id] = true
		}
		if got := p.left(); got != c.want {
			t.Errorf("%v, done %v: left %v, want %v", c.entries, c.done, got, c.want)
		}
	}
}
