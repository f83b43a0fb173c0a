package restore

import (
	"strconv"
	"strings"

	"github.com/backupkit/backupkit/format"
)

// postData schedules a --jobs restore's post-data entries (indexes,
// constraints, triggers, and the comments and grants on them) as early
// as the data jobs allow: an entry may run once every table it depends
// on is loaded (the job loading it has ended) and every post-data entry
// it depends on has run, while other jobs still copy, as pg_restore -j
// does. What is left runs at the end.
//
// An entry's section is the one pg_restore gives it: pg_dump's, or for
// an entry of no section (a comment, an ACL) the section of the entry
// before it in the archive. pg_restore works that out again over the
// entries of a --use-list moved to the front, so the runs here list
// post-data entries only and pass no --section: a comment listed alone
// would otherwise count as data, and be skipped.
type postData struct {
	entries []format.ArchiveEntry
	byID    map[int]int  // dump id → index in entries
	section map[int]int  // dump id → its section, as pg_restore counts it
	jobOf   map[int]int  // dump id of a TABLE or a data entry → its job
	done    map[int]bool // post-data entries that ran
	running map[int]bool // post-data entries being built
	// unsectioned: an archive older than sections (or one that names a
	// section pg_restore does not know): nothing is built early, and
	// pg_restore's own post-data section runs at the end.
	unsectioned bool
}

// newPostData maps each data entry (and the table of each TABLE DATA
// entry) to the job whose list (of splitData) holds it.
func newPostData(info *format.ArchiveInfo, lists [][]string) *postData {
	p := &postData{entries: info.Entries, byID: map[int]int{}, section: map[int]int{}, jobOf: map[int]int{}, done: map[int]bool{}, running: map[int]bool{}}
	cur := format.SectionPreData
	for i, e := range info.Entries {
		p.byID[e.DumpID] = i
		switch e.Section {
		case format.SectionNone:
		case format.SectionPreData, format.SectionData, format.SectionPostData:
			cur = e.Section
		default:
			p.unsectioned = true
		}
		p.section[e.DumpID] = cur
	}
	for job, list := range lists {
		for _, id := range listIDs(list) {
			i, ok := p.byID[id]
			if !ok || info.Entries[i].Section != format.SectionData {
				continue // the first list has every other entry too
			}
			p.jobOf[id] = job
			if e := info.Entries[i]; e.Desc == "TABLE DATA" {
				for _, d := range e.Deps {
					p.jobOf[d] = job // the table it loads
				}
			}
		}
	}
	return p
}

// ready returns the post-data entries neither run nor running that may
// run now that the jobs in ended have ended, in archive order (which
// pg_dump sorts so that an entry comes after what it depends on). An
// entry may depend on one returned before it: they must run in order.
func (p *postData) ready(ended map[int]bool) []int {
	if p.unsectioned {
		return nil
	}
	chosen := map[int]bool{}
	var out []int
	for _, e := range p.entries {
		if p.section[e.DumpID] != format.SectionPostData || p.done[e.DumpID] || p.running[e.DumpID] {
			continue
		}
		ok := true
		for _, d := range e.Deps {
			_, known := p.byID[d]
			if job, isData := p.jobOf[d]; isData {
				ok = ended[job]
			} else if !known {
				continue // not in the archive
			} else if sec := p.section[d]; sec == format.SectionPostData {
				ok = p.done[d] || chosen[d]
			} else if sec != format.SectionPreData {
				ok = false // restored with data, by no job of its own: left for the end
			}
			if !ok {
				break
			}
		}
		if ok {
			chosen[e.DumpID] = true
			out = append(out, e.DumpID)
		}
	}
	return out
}

// left says whether a post-data entry has not run (or, unsectioned,
// whether there is any: pg_restore's post-data section then runs).
func (p *postData) left() bool { return p.unsectioned || len(p.rest()) > 0 }

// rest returns the post-data entries that have not run.
func (p *postData) rest() map[int]bool {
	out := map[int]bool{}
	for _, e := range p.entries {
		if p.section[e.DumpID] == format.SectionPostData && !p.done[e.DumpID] {
			out[e.DumpID] = true
		}
	}
	return out
}

// split shares ready entries (of ready) out to at most n batches that
// can run at once: each entry goes with the post-data entries of ids it
// depends on, an entry that depends on two batches waits for a later
// round (as does what depends on it), and the others are dealt to the
// batch with the fewest entries. Each batch keeps the order of ids.
func (p *postData) split(ids []int, n int) [][]int {
	if n < 1 || len(ids) == 0 {
		return nil
	}
	batches := make([][]int, n)
	in := map[int]int{} // id → its batch, or -1 when it waits
	for _, id := range ids {
		b := -1
		for _, d := range p.entries[p.byID[id]].Deps {
			db, ok := in[d]
			switch {
			case !ok:
			case db < 0 || (b >= 0 && b != db):
				b = -2 // depends on two batches, or on one that waits
			case b == -1:
				b = db
			}
			if b == -2 {
				break
			}
		}
		if b == -2 {
			in[id] = -1
			continue
		}
		if b < 0 {
			b = 0
			for i := range batches {
				if len(batches[i]) < len(batches[b]) {
					b = i
				}
			}
		}
		in[id] = b
		batches[b] = append(batches[b], id)
	}
	var out [][]int
	for _, b := range batches {
		if len(b) > 0 {
			out = append(out, b)
		}
	}
	return out
}

// listOf returns the lines of toc (a pg_restore --list) with every
// entry but those in ids commented out, and no comment lines.
func listOf(toc []string, ids map[int]bool) string {
	var b strings.Builder
	for _, line := range toc {
		id, ok := lineID(line)
		if !ok {
			continue
		}
		if !ids[id] {
			b.WriteByte(';')
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	return b.String()
}

// listIDs returns the dump ids of the entries of a pg_restore --list.
func listIDs(list []string) []int {
	var ids []int
	for _, line := range list {
		if id, ok := lineID(line); ok {
			ids = append(ids, id)
		}
	}
	return ids
}

// lineID reads the dump id a pg_restore --list line starts with ("123;
// 1259 16390 TABLE public t owner"); comments have none.
func lineID(line string) (int, bool) {
	line = strings.TrimSpace(line)
	if line == "" || strings.HasPrefix(line, ";") {
		return 0, false
	}
	id, _, _ := strings.Cut(line, ";")
	n, err := strconv.Atoi(strings.TrimSpace(id))
	return n, err == nil
}
