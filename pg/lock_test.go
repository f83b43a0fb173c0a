package pg_test

import (
	"context"
	"testing"

	"github.com/backupkit/backupkit/internal/testenv"
	"github.com/backupkit/backupkit/pg"
)

// Once Release has returned, the lock is free: a backup that starts right
// after another one ended finds it so. (Closing the session alone frees
// it only when the server's backend has exited, a moment later.)
func TestReleasedLockIsFreeAtOnce(t *testing.T) {
	_, c := maintenance(t)
	ctx := context.Background()
	other, err := pg.OpenSession(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close(ctx)
	key := "release-test-" + testenv.RandHex(4)
	for i := range 100 {
		l, ok, err := pg.TryLock(ctx, c, key)
		if err != nil || !ok {
			t.Fatalf("round %d: lock not taken: %v", i, err)
		}
		if ok, err := other.TryLock(ctx, key); err != nil || ok {
			t.Fatalf("round %d: another session took a held lock (%v)", i, err)
		}
		if err := l.Release(ctx); err != nil {
			t.Fatal(err)
		}
		ok, err = other.TryLock(ctx, key)
		if err != nil || !ok {
			t.Fatalf("round %d: the lock was still held right after Release returned (%v)", i, err)
		}
		if err := other.Unlock(ctx, key); err != nil {
			t.Fatal(err)
		}
	}
}
