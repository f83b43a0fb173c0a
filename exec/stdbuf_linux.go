package exec

import (
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
)

// pg_dump writes its archive through stdio, whose buffer for a pipe is
// the pipe's st_blksize: 4 KiB, so a dump of 1 GiB is 262,144 writes,
// each waking the pipeline's reader. coreutils' libstdbuf (what stdbuf(1)
// preloads) sets the buffer before pg_dump's main runs; with a megabyte
// it is 1,024 writes. The archive's bytes are the same either way.
const dumpStdoutBuffer = 1 << 20

// libstdbufPaths are where coreutils installs libstdbuf (Debian, Ubuntu,
// Fedora and Alpine; Arch; a build from source).
var libstdbufPaths = []string{
	"/usr/libexec/coreutils/libstdbuf.so",
	"/usr/lib/coreutils/libstdbuf.so",
	"/usr/local/libexec/coreutils/libstdbuf.so",
}

// libstdbuf is the first of paths that only root can have written: a
// regular file owned by root, not writable by its group or others, in a
// folder that is the same. Anything else is never preloaded into a
// process that holds the database's password.
func libstdbuf(paths []string) string {
	for _, p := range paths {
		// A link is judged by what it points to, and where that is.
		real, err := filepath.EvalSymlinks(p)
		if err == nil && rootOnly(real, false) && rootOnly(filepath.Dir(real), true) {
			return real
		}
	}
	return ""
}

func rootOnly(path string, dir bool) bool {
	fi, err := os.Stat(path)
	if err != nil || fi.IsDir() != dir || (!dir && !fi.Mode().IsRegular()) {
		return false
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	return ok && st.Uid == 0 && fi.Mode().Perm()&0o022 == 0
}

// bufferedStdout is what a dump's environment gains so pg_dump writes
// its stdout in megabytes: nothing where libstdbuf is not installed (or
// not root's), and then pg_dump writes 4 KiB at a time as before.
var bufferedStdout = sync.OnceValue(func() []string {
	p := libstdbuf(libstdbufPaths)
	if p == "" {
		return nil
	}
	return []string{"LD_PRELOAD=" + p, "_STDBUF_O=" + strconv.Itoa(dumpStdoutBuffer)}
})
