package repo

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/backupkit/backupkit/format"
)

// TestSortNewestFirst checks the in-place permutation against a stable
// sort: newest first, equal times in listing order.
func TestSortNewestFirst(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 3, 10, 1000, 5000} {
		bs := make([]Backup, n)
		for i := range bs {
			// Few distinct times, so ties are common; times that differ
			// only in their nanoseconds, and times before 1970.
			base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			if r.IntN(4) == 0 {
				base = time.Date(1901, 1, 1, 0, 0, 0, 0, time.UTC)
			}
			at := base.Add(time.Duration(r.IntN(n/3+1))*time.Hour + time.Duration(r.IntN(3))*333_333_333)
			bs[i] = Backup{Name: format.Name{Database: "app", Time: at}, Key: fmt.Sprint(i)}
		}
		want := slices.Clone(bs)
		slices.SortStableFunc(want, func(a, b Backup) int { return b.Time.Compare(a.Time) })
		sortNewestFirst(bs)
		for i := range bs {
			if bs[i].Key != want[i].Key {
				t.Fatalf("n=%d: position %d holds %s (%v), want %s (%v)", n, i, bs[i].Key, bs[i].Time, want[i].Key, want[i].Time)
			}
		}
	}
}
